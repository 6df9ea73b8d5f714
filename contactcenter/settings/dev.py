"""`make run`: one process on SQLite (unless DATABASE_URL says otherwise), console email, demo data."""

from .base import *  # noqa: F403
from .base import env, env_bool

DEBUG = env_bool("DEBUG", "True")
EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
# A documented, non-secret development value: Vonage never signs with it, the simulator does.
VONAGE_SIGNATURE_SECRET = env("VONAGE_SIGNATURE_SECRET", "dev-vonage-signature-secret-not-for-production")
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
SWITCHBOARD_DEMO_DATA = True
LOGGING["root"]["level"] = env("LOG_LEVEL", "INFO")  # noqa: F405
