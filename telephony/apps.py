from django.apps import AppConfig


class TelephonyConfig(AppConfig):
    name = "telephony"
    verbose_name = "Phone numbers"
    default_auto_field = "django.db.models.BigAutoField"
