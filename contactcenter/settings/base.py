"""Settings shared by every mode. Everything that differs between machines comes from the environment.

dev.py (``make run``), test.py (``make test``) and prod.py import this module and override a few values.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url

from contactcenter.env import env, env_bool, env_int, env_list

BASE_DIR = Path(__file__).resolve().parent.parent.parent

SECRET_KEY = env("SECRET_KEY", "dev-only-not-secret-switchboard")
DEBUG = env_bool("DEBUG", "False")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")
SITE_URL = (env("SITE_URL", "http://127.0.0.1:8000") or "").rstrip("/")

INSTALLED_APPS = [
    "daphne",  # must precede staticfiles so runserver is the ASGI one
    "contactcenter.admin_config.SwitchboardAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our static files, not a CDN
    "django_scopes",
    "django_celery_beat",
    "allauth",
    "allauth.account",
    "contactcenter",
    "tenants",
    "flows",
    "conversations",
    "telephony",
    "agents",
    "reports",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "contactcenter.logging.RequestLogMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "tenants.middleware.TenantScopeMiddleware",
]

ROOT_URLCONF = "contactcenter.urls"
ASGI_APPLICATION = "contactcenter.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tenants.context_processors.tenancy",
            ],
        },
    },
]

# --- Database: SQLite by default (make run / make test on a fresh machine), DATABASE_URL otherwise.
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("DB_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the embedded worker thread read while the web thread writes.
    DATABASES["default"].setdefault("OPTIONS", {})["init_command"] = "PRAGMA journal_mode=WAL;"
    DATABASES["default"]["OPTIONS"]["timeout"] = 20
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # psycopg prepares a statement it has run this many times on a connection (Django turns this off by
    # default). Only the call turn's statements can be prepared: they bind their parameters server-side
    # (contactcenter/sql.py); Django's own queries bind client-side and are never prepared. Set it empty
    # behind a pooler that cannot keep prepared statements (pgbouncer < 1.21 in transaction mode).
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
        env_int("DB_PREPARE_THRESHOLD", 5) if env("DB_PREPARE_THRESHOLD", "5") != "" else None
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer, Celery broker and cache when REDIS_URL is set; in-process otherwise.
REDIS_URL = env("REDIS_URL") or ""
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 defaults to a 5 s socket timeout, the same as channels_redis's blocking read:
            # idle consoles were disconnected (bench/escalation_push.py). Let the blocking read wait.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                "prefix": env("CHANNELS_PREFIX", "switchboard"),
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "contactcenter.cache.RedisCache",  # one connection pool per process
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env("CACHE_PREFIX", "switchboard"),
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery: the broker is Redis when configured, else the in-memory transport of the embedded worker.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# contactcenter/heap.py: freeze the warm heap in long-running processes (on in production).
GC_FREEZE = env_bool("GC_FREEZE", "False")
# The callback dispatch beat's period, and how far ahead each run looks for callbacks falling due before
# the next run (each gets a short trigger at its due second; the beat stays the guarantee).
CALLBACK_DISPATCH_SECONDS = float(env("CALLBACK_DISPATCH_SECONDS", "60") or 60)
CELERY_BEAT_SCHEDULE: dict = {
    "agents-offers-expire": {"task": "agents.tasks.offers_expire", "schedule": 5.0},
    "agents-presence-sweep": {"task": "agents.tasks.presence_sweep", "schedule": 10.0},
    "agents-queue-announce": {"task": "agents.tasks.queue_announce", "schedule": 30.0},
    "agents-callbacks-dispatch": {"task": "agents.tasks.callbacks_dispatch", "schedule": CALLBACK_DISPATCH_SECONDS},
    "agents-voicemail-email-sweep": {"task": "agents.tasks.voicemail_email_sweep", "schedule": 60.0},
    "tenants-expire-invitations": {
        "task": "tenants.tasks.invitations_expire",
        "schedule": 3600.0,
    },
    # Reports (reports/tasks.py): every business's local today each hour; the nightly rollup runs hourly
    # too and acts once per business after its local midnight; the weekly digest on Monday 07:00 local.
    "reports-rollup-today": {"task": "reports.tasks.rollup_today", "schedule": 3600.0},
    "reports-rollup-nightly": {"task": "reports.tasks.rollup_closed_days", "schedule": 3600.0},
    "reports-weekly-digest": {"task": "reports.tasks.digests_send", "schedule": 3600.0},
}

# --- Auth and accounts (django-allauth, email login, mandatory verification).
AUTH_USER_MODEL = "tenants.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_ADAPTER = "tenants.adapters.AccountAdapter"
ACCOUNT_FORMS = {"signup": "tenants.forms.BusinessSignupForm"}
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Switchboard] "
ACCOUNT_RATE_LIMITS = {
    "signup": env("RATE_LIMIT_SIGNUP", "10/h/ip"),
    "login": env("RATE_LIMIT_LOGIN", "30/m/ip"),
    "login_failed": env("RATE_LIMIT_LOGIN_FAILED", "10/m/ip,5/5m/key"),
    "reset_password": env("RATE_LIMIT_RESET_PASSWORD", "5/m/ip,3/h/key"),
    "reset_password_from_key": "20/m/ip",
    "confirm_email": "1/3m/key",
    "change_password": "5/m/user",
}
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/app/"
ACCOUNT_LOGOUT_REDIRECT_URL = "/"

# --- Email: console in dev, SMTP from the environment in prod.
EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", "True")
# A hung mail server must not hold a voicemail e-mail claim (or a worker) for minutes.
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "Switchboard <noreply@switchboard.local>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Vonage and Stripe credentials (used by the telephony and billing apps).
VONAGE_APPLICATION_ID = env("VONAGE_APPLICATION_ID", "")
VONAGE_PRIVATE_KEY = env("VONAGE_PRIVATE_KEY", "")
VONAGE_SIGNATURE_SECRET = env("VONAGE_SIGNATURE_SECRET", "")
VONAGE_API_KEY = env("VONAGE_API_KEY", "")
VONAGE_CLIENT = env("VONAGE_CLIENT", "") or ("vonage" if VONAGE_APPLICATION_ID else "fake")
VONAGE_SIGNATURE_MAX_AGE = env_int("VONAGE_SIGNATURE_MAX_AGE", 300)
# A webhook turn that takes longer than this answers with the apology NCCO (Vonage waits about 5 s).
VONAGE_TURN_BUDGET_SECONDS = float(env("VONAGE_TURN_BUDGET_SECONDS", "3.5") or 3.5)
# Worker threads per web process for the Vonage webhooks' database and engine work (telephony/asgi.py).
# Two: a turn is mostly CPU under one GIL, so more threads only contend (docs/benchmarks.md, 4 vs 2), and
# the second keeps turns going while one waits on the database or is stuck on it.
WEBHOOK_THREADS = env_int("WEBHOOK_THREADS", 2)
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY", "")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET", "")
STRIPE_PRICE_ID = env("STRIPE_PRICE_ID", "")

# --- Web chat: messages per minute accepted for one site (all its visitors, across processes).
CHAT_SITE_MESSAGES_PER_MINUTE = env_int("CHAT_SITE_MESSAGES_PER_MINUTE", 600)
CHAT_IP_CONNECTS_PER_MINUTE = env_int("CHAT_IP_CONNECTS_PER_MINUTE", 20)
CHAT_IP_MESSAGES_PER_MINUTE = env_int("CHAT_IP_MESSAGES_PER_MINUTE", 120)

# --- API.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "contactcenter.api.exception_handler",
    "DEFAULT_THROTTLE_RATES": {"anon": "60/min", "user": "600/min"},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Switchboard API",
    "DESCRIPTION": "Tenants, members, invitations, API keys and agency coverage. "
    "Authenticate with a session or an `Authorization: Api-Key <key>` header.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "TenantStatusEnum": "tenants.models.TenantStatus",
        "RoleEnum": "tenants.models.Role",
        "AgencyRoleEnum": "tenants.models.AgencyRole",
        "CoverageModeEnum": "tenants.models.CoverageMode",
        "ApiAccessEnum": "tenants.models.ApiAccess",
    },
}

# --- i18n / time.
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files.
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

# --- Logging: one JSON line per record, with the request id and tenant id where there is one.
LOG_LEVEL = env("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "contactcenter.logging.ContextFilter"}},
    "formatters": {"json": {"()": "contactcenter.logging.JsonFormatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["context"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "celery": {"level": "WARNING"},
    },
}

SWITCHBOARD_DEMO_DATA = False
