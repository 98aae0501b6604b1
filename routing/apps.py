from __future__ import annotations

from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing"

    def ready(self) -> None:
        # Celery's autodiscovery finds routing/tasks.py only; comparison runs live apart.
        from routing import comparison_tasks  # noqa: F401
