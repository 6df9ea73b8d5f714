from django.apps import AppConfig


class FlowsConfig(AppConfig):
    name = "flows"
    verbose_name = "Scripts and routing"
    default_auto_field = "django.db.models.BigAutoField"
