from django.apps import AppConfig


class TelephonyConfig(AppConfig):
    name = "telephony"
    verbose_name = "Phone numbers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from telephony.onboarding import phone_step
        from tenants.hooks import onboarding_step

        onboarding_step(phone_step)
