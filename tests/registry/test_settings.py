"""Settings are read once per process, so each case starts a fresh interpreter."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]

# Everything settings.py reads, so the developer's own environment cannot leak into a case.
SETTINGS_VARS = (
    "DEBUG",
    "FOS_TESTING",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "DATABASE_URL",
    "CONN_MAX_AGE",
    "REDIS_URL",
    "CACHE_KEY_PREFIX",
    "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "LOG_LEVEL",
)

SHOW = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'db': s.DATABASES['default']['ENGINE'], 'cache': s.CACHES['default']['BACKEND'], "
    "'eager': s.CELERY_TASK_ALWAYS_EAGER, 'broker': s.CELERY_BROKER_URL, 'debug': s.DEBUG, 'testing': s.TESTING}))"
)


def python(*args: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    # DJANGO_ALLOW_ASYNC_UNSAFE too: the browser tests set it for their session, and
    # `check --deploy` rightly warns about it.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in SETTINGS_VARS and not k.startswith("FOS_") and k != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
    env["DJANGO_SETTINGS_MODULE"] = "fos_console.settings"
    env.update(env_vars)
    return subprocess.run(
        [sys.executable, *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("variable", "env_vars"),
    [
        ("DEBUG", {"DEBUG": "maybe"}),
        ("DATABASE_URL", {"DEBUG": "1", "DATABASE_URL": "nonsense://x"}),
        ("REDIS_URL", {"DEBUG": "1", "REDIS_URL": "http://x"}),
        ("SECRET_KEY", {"DEBUG": "0", "FOS_TESTING": "0", "ALLOWED_HOSTS": "example.com"}),
        ("ALLOWED_HOSTS", {"DEBUG": "0", "FOS_TESTING": "0", "SECRET_KEY": "x" * 50}),
        ("FOS_BREAKER_FAILURE_THRESHOLD", {"DEBUG": "1", "FOS_BREAKER_FAILURE_THRESHOLD": "many"}),
        ("FOS_ROUTE_LOG_RETENTION_DAYS", {"DEBUG": "1", "FOS_ROUTE_LOG_RETENTION_DAYS": "3"}),
    ],
)
def test_it_stops_at_start_on_a_bad_value_naming_the_variable(variable: str, env_vars: dict[str, str]) -> None:
    result = python("-c", "import django; django.setup()", **env_vars)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr.strip().splitlines()[-1]


def test_it_defaults_to_the_embedded_setup() -> None:
    result = python("-c", SHOW, DEBUG="1")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "db": "django.db.backends.sqlite3",
        "cache": "django.core.cache.backends.locmem.LocMemCache",
        "eager": True,
        "broker": "memory://",
        "debug": True,
        "testing": False,
    }


def test_it_scales_out_with_database_and_redis_urls() -> None:
    result = python(
        "-c",
        SHOW,
        DEBUG="0",
        FOS_TESTING="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="example.com",
        DATABASE_URL="postgres://fos:pw@db.internal:5432/fos",
        REDIS_URL="redis://cache.internal:6379/0",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "db": "django.db.backends.postgresql",
        "cache": "django.core.cache.backends.redis.RedisCache",
        "eager": False,
        "broker": "redis://cache.internal:6379/0",
        "debug": False,
        "testing": False,
    }


def test_it_passes_the_deployment_checks_in_production() -> None:
    result = python(
        "manage.py",
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="0",
        FOS_TESTING="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
