from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Load the demo businesses, agency and logins once (dev settings only)."

    def handle(self, *args, **options):
        if not settings.SWITCHBOARD_DEMO_DATA:
            raise CommandError("Demo data is only loaded with dev settings (contactcenter.settings.dev).")
        from contactcenter.demo import load_demo

        created = load_demo()
        self.stdout.write("Demo data loaded." if created else "Demo data already present.")
