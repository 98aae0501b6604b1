"""The Celery task behind comparison runs (routing/tasks.py holds the backend probes).

`routing.apps.RoutingConfig.ready()` imports this module, since autodiscovery only looks in
tasks.py.
"""

from __future__ import annotations

from celery import shared_task

from routing import comparisons


# acks_late: a worker killed mid-run leaves the message to be delivered again, and the
# delivery finds the cells already done (see routing.comparisons). No automatic retry: a run
# records its own failure, and an operator resumes it from the page.
@shared_task(name="routing.run_comparison", acks_late=True, ignore_result=True, soft_time_limit=3300, time_limit=3600)
def run_comparison_task(run_id: int) -> str:
    return comparisons.execute_run(run_id=run_id)
