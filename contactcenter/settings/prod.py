"""Production: every secret must come from the environment; the process refuses to start without it."""

from contactcenter.env import env_required

from .base import *  # noqa: F403
from .base import DATABASES, env, env_bool, env_int, env_list

DEBUG = False
SECRET_KEY = env_required("SECRET_KEY")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS") or [env_required("ALLOWED_HOSTS")]
SITE_URL = env_required("SITE_URL").rstrip("/")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS") or [SITE_URL]
env_required("DATABASE_URL")
REDIS_URL = env_required("REDIS_URL")
# Under ASGI every request runs in its own thread, so persistent connections pile up until
# Postgres refuses new clients (measured by bench/voice_turns.py). Open one per request instead, or
# put pgbouncer in front and raise this.
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# A per-process pool (psycopg_pool, Django 5.1+): a request borrows an open connection and gives it
# back at the end, instead of a new Postgres backend per request. DB_POOL_MAX per process, so web
# processes x DB_POOL_MAX + workers must stay under Postgres' max_connections.
if env_bool("DB_POOL", "True") and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps the connections; Django must not
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("DB_POOL_MIN", 2),
        "max_size": env_int("DB_POOL_MAX", 10),
        "timeout": 10,
    }

# Freeze the warm heap so full garbage collections stop walking it (contactcenter/heap.py: 40-90 ms
# pauses every few hundred requests otherwise).
GC_FREEZE = env_bool("GC_FREEZE", "True")

EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_required("EMAIL_HOST")
DEFAULT_FROM_EMAIL = env_required("DEFAULT_FROM_EMAIL")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

VONAGE_SIGNATURE_SECRET = env_required("VONAGE_SIGNATURE_SECRET")
VONAGE_APPLICATION_ID = env_required("VONAGE_APPLICATION_ID")
VONAGE_PRIVATE_KEY = env_required("VONAGE_PRIVATE_KEY")
STRIPE_SECRET_KEY = env_required("STRIPE_SECRET_KEY")
STRIPE_WEBHOOK_SECRET = env_required("STRIPE_WEBHOOK_SECRET")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", "True")
SECURE_REDIRECT_EXEMPT = [r"^healthz(/live)?$"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", "True")
SECURE_CONTENT_TYPE_NOSNIFF = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
