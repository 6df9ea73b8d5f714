from django.apps import AppConfig


class ContactCenterConfig(AppConfig):
    """Holds the project-wide commands (serve, load_demo); no models."""

    name = "contactcenter"
    verbose_name = "Switchboard"
