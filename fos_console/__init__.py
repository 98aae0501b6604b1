from __future__ import annotations

from fos_console.celery import app as celery_app

__all__ = ["celery_app"]
