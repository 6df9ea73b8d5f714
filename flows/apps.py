from django.apps import AppConfig


class FlowsConfig(AppConfig):
    name = "flows"
    verbose_name = "Scripts and routing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.exceptions import ImproperlyConfigured

        from flows.nlu_tokens import capacity_from_env

        try:  # a bad value stops the process at start, not a caller's turn later
            capacity_from_env()
        except ValueError as exc:
            raise ImproperlyConfigured(str(exc)) from None

        from flows.onboarding import create_starter_script, script_step
        from tenants.hooks import on_tenant_created, onboarding_step

        on_tenant_created(create_starter_script)
        onboarding_step(script_step)

        from flows import signals

        signals.connect()
