"""Settings for FOS Console, configured by environment variables.

Unset, everything falls back to the embedded default: a SQLite file in the project folder,
Django's local-memory cache, and Celery tasks executed eagerly in-process. Production is the
same file with DATABASE_URL, REDIS_URL and SECRET_KEY set. A bad value stops the process at
start with a message that names the variable.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()


def _bool(name: str, default: bool) -> bool:
    raw = env.str(name, default="")
    if raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean: use true or false")


def _int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.str(name, default="")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


DEBUG = _bool("DEBUG", False)
# Under pytest the suite gets fast hashers and plain-HTTP cookies without extra set-up.
TESTING = _bool("FOS_TESTING", "pytest" in sys.modules)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if DEBUG or TESTING:
        SECRET_KEY = "insecure-development-key-do-not-use-in-production"
    else:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"] if (DEBUG or TESTING) else [])
if not DEBUG and not TESTING and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is off")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "registry",
    "routing",
    "tickets",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves static/ in production too (make serve), with far-future caching of hashed names.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "fos_console.urls"

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
                "registry.roles.console_context",
            ],
        },
    },
]

WSGI_APPLICATION = "fos_console.wsgi.application"
ASGI_APPLICATION = "fos_console.asgi.application"

try:
    DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
except Exception as exc:  # django-environ raises several types for a malformed URL
    raise ImproperlyConfigured(f"DATABASE_URL is not a usable database URL: {exc}") from None
# django-environ passes an unknown scheme through as the engine's name, which would fail later
# with a message that does not name the variable.
if DATABASES["default"].get("ENGINE") not in set(environ.Env.DB_SCHEMES.values()):
    raise ImproperlyConfigured("DATABASE_URL names an unknown database scheme")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the console read while the router writes route logs.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault(
        "init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;"
    )
    DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
    # A file, not Django's shared in-memory database, so tests that route calls from many
    # threads at once meet SQLite's real locking.
    # One file per test process, so runs side by side do not share it.
    DATABASES["default"]["TEST"] = {"NAME": str(Path(tempfile.gettempdir()) / f"fos-test-{os.getpid()}.sqlite3")}
else:
    # Persistent connections save a round trip per request; tests close theirs after each use.
    DATABASES["default"].setdefault("CONN_MAX_AGE", _int("CONN_MAX_AGE", 0 if TESTING else 60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(f"REDIS_URL must start with redis://, rediss:// or unix://, not {REDIS_URL.split(':')[0]!r}")
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="fos"),
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_TASK_ALWAYS_EAGER = False
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "fos-console",
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }
    CELERY_BROKER_URL = "memory://"
    CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
# Without a broker, comparison runs go to a thread of the web process, so the page answers at
# once and shows progress; tests run them inside the request, where the test's data is visible.
FOS_COMPARISONS_IN_THREAD = _bool("FOS_COMPARISONS_IN_THREAD", CELERY_TASK_ALWAYS_EAGER and not TESTING)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# For `celery -A fos_console beat`. A run that waited past the next one is dropped, not piled up.
CELERY_BEAT_SCHEDULE = {
    "roll-up-route-logs": {"task": "routing.tasks.roll_up_recent", "schedule": 60.0, "options": {"expires": 55}},
    "prune-expired": {"task": "routing.tasks.prune_expired", "schedule": 3600.0, "options": {"expires": 3000}},
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# collectstatic gathers files here for `make serve`; in development and tests WhiteNoise finds
# them where they are.
STATIC_ROOT = None if DEBUG or TESTING else BASE_DIR / "staticfiles"
WHITENOISE_USE_FINDERS = DEBUG or TESTING
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or TESTING
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/console/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if not DEBUG:
    SECURE_SSL_REDIRECT = _bool("SECURE_SSL_REDIRECT", not TESTING)
    SESSION_COOKIE_SECURE = _bool("SESSION_COOKIE_SECURE", not TESTING)
    CSRF_COOKIE_SECURE = _bool("CSRF_COOKIE_SECURE", not TESTING)
    SECURE_HSTS_SECONDS = _int("SECURE_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

def _float(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.str(name, default="")
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None
    if not value >= minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


# Routing.
FOS_BREAKER_FAILURE_THRESHOLD = _int("FOS_BREAKER_FAILURE_THRESHOLD", 5, minimum=1)
FOS_BREAKER_COOLDOWN_S = _float("FOS_BREAKER_COOLDOWN_S", 30.0, minimum=0.01)
FOS_INPUT_PREVIEW_CHARS = _int("FOS_INPUT_PREVIEW_CHARS", 200, minimum=0)
# How long a process reuses what it read of shared state (policy revision number, breaker
# state) before asking the cache again; its own changes are seen at once. 0: ask every call.
FOS_SHARED_STATE_TTL_S = _float("FOS_SHARED_STATE_TTL_S", 0.25)

# Service API.
FOS_MAX_REQUEST_BYTES = _int("FOS_MAX_REQUEST_BYTES", 1_048_576, minimum=1024)
FOS_DEFAULT_RATE_LIMIT_PER_MINUTE = _int("FOS_DEFAULT_RATE_LIMIT_PER_MINUTE", 0)  # 0: no limit
FOS_IDEMPOTENCY_TTL_S = _int("FOS_IDEMPOTENCY_TTL_S", 24 * 3600, minimum=1)
# Route logs older than this many days are deleted every hour (manage.py prune_route_logs);
# 0 keeps them all. At least 8: the dashboard reads the last 7 days from them.
FOS_ROUTE_LOG_RETENTION_DAYS = _int("FOS_ROUTE_LOG_RETENTION_DAYS", 0, minimum=0)
if 0 < FOS_ROUTE_LOG_RETENTION_DAYS < 8:
    raise ImproperlyConfigured(
        f"FOS_ROUTE_LOG_RETENTION_DAYS={FOS_ROUTE_LOG_RETENTION_DAYS} must be 0 (keep all) or at least 8 days"
    )
# Django refuses bodies above this before our own check could answer 413 as JSON.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(FOS_MAX_REQUEST_BYTES, 2_621_440)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}
