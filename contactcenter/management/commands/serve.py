"""`manage.py serve`: the whole product in one process (ASGI server + Celery worker + beat)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve HTTP and websockets with daphne, with an in-process Celery worker and beat."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-celery", action="store_true", help="Do not start the in-process worker/beat.")

    def handle(self, *args, host: str, port: int, no_celery: bool, **options):
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server

        from contactcenter.asgi import application
        from contactcenter.celery import app as celery_app
        from contactcenter.embedded import start_embedded_celery

        embedded = None
        if not no_celery:
            embedded = start_embedded_celery(celery_app)
            broker = "Redis" if settings.REDIS_URL else "in-memory"
            self.stdout.write(f"Celery worker and beat running in this process ({broker} broker).")
        db = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        layer = "Redis" if settings.REDIS_URL else "in-memory"
        self.stdout.write(
            self.style.SUCCESS(f"Switchboard on http://{host}:{port}/  (database: {db}, channel layer: {layer})")
        )
        if settings.SWITCHBOARD_DEMO_DATA:
            from contactcenter.demo import DEMO_PASSWORD, demo_logins

            self.stdout.write(f"Demo logins (password {DEMO_PASSWORD}):")
            for email, what in demo_logins():
                self.stdout.write(f"  {email:24} {what}")
        try:
            Server(
                application=application,
                endpoints=build_endpoint_description_strings(host=host, port=port),
                signal_handlers=True,
            ).run()
        finally:
            if embedded is not None:
                embedded.stop()
