from django.apps import AppConfig


class FlowsConfig(AppConfig):
    name = "flows"
    verbose_name = "Scripts and routing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from flows.onboarding import create_starter_script, script_step
        from tenants.hooks import on_tenant_created, onboarding_step

        on_tenant_created(create_starter_script)
        onboarding_step(script_step)

        from flows import signals

        signals.connect()
