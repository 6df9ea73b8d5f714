"""`make test`: SQLite + in-memory layers on a fresh machine; Postgres/Redis when their URLs are set."""

from .base import *  # noqa: F403
from .base import env

SECRET_KEY = "test-not-secret"
DEBUG = False
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
VONAGE_SIGNATURE_SECRET = "test-vonage-signature-secret-0123456789abcdef"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only; never in prod
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Tasks run inline unless a test starts a real worker (tests/test_embedded.py does).
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BEAT_SCHEDULER = "celery.beat:Scheduler"
# Keep test runs from sharing Redis keys with a dev server on the same Redis.
CHANNEL_LAYERS["default"].get("CONFIG", {})["prefix"] = "switchboard-test"  # noqa: F405
CACHES["default"]["KEY_PREFIX"] = "switchboard-test"  # noqa: F405
LOGGING["root"]["level"] = env("LOG_LEVEL", "WARNING")  # noqa: F405
