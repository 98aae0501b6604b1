from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from registry.models import Backend, Capability, PolicyRevision, Route
from registry.policy import record_revision
from routing.planner import forget_snapshot


def clear_cache() -> None:
    """Empty the project's cache. On Redis only the keys under the cache's own prefix go: the
    database may also be the Celery broker, whose queues cache.clear() would flush with them."""
    client_of = getattr(getattr(cache, "_cache", None), "get_client", None)
    if client_of is None:
        cache.clear()
        return
    client = client_of(write=True)
    keys = list(client.scan_iter(match=cache.make_key("*"), count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    """Each test starts with an empty cache (breaker state, the revision number) and no
    in-process policy snapshot: the database behind both is rolled back between tests."""
    clear_cache()
    forget_snapshot()
    yield
    clear_cache()
    forget_snapshot()


@pytest.fixture
def eager_celery() -> Iterator[None]:
    """Run queued tasks in-process, as the embedded default does. Under CI with Redis the
    settings queue them to a broker, and a view test has no worker to run them (a real worker
    is tested in tests/routing/test_comparisons.py)."""
    from fos_console.celery import app as celery_app

    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


InstallPolicy = Callable[..., PolicyRevision]


@pytest.fixture
def install_policy(db: None) -> InstallPolicy:
    """Write backends and capabilities straight through the ORM, make the listed routes active
    in order, and record a revision, as an operator's edit would."""

    def install(*, backends: dict[str, dict[str, Any]], capabilities: dict[str, dict[str, Any]]) -> PolicyRevision:
        for slug, fields in backends.items():
            Backend.objects.update_or_create(slug=slug, defaults=fields)
        for slug, fields in capabilities.items():
            fields = dict(fields)
            routes = fields.pop("routes")
            capability, _ = Capability.objects.update_or_create(slug=slug, defaults=fields)
            capability.routes.update(status=Route.Status.RETIRED)
            for position, backend_slug in enumerate(routes):
                Route.objects.create(
                    capability=capability,
                    backend=Backend.objects.get(slug=backend_slug),
                    position=position,
                    status=Route.Status.ACTIVE,
                )
        return record_revision(author="test", summary="test policy")

    return install


PASSWORD = "pw-for-tests"


def _user_in(username: str, group: str | None) -> Any:
    from django.contrib.auth import get_user_model

    from registry.roles import ensure_roles

    groups = ensure_roles()
    user = get_user_model().objects.create_user(username=username, password=PASSWORD)
    if group:
        user.groups.add(groups[group])
    return user


@pytest.fixture
def operator(db: None) -> Any:
    """A member of the operators group: may change policy."""
    return _user_in("olivia-operator", "operators")


@pytest.fixture
def reviewer(db: None) -> Any:
    """A member of the reviewers group: may look, and approve routes."""
    return _user_in("rita-reviewer", "reviewers")


@pytest.fixture
def outsider(db: None) -> Any:
    """Signed in, in no group: may only look."""
    return _user_in("oscar-outsider", None)


@pytest.fixture
def client_for(db: None) -> Callable[[Any], Client]:
    """client_for(user): a test client signed in as `user`."""

    def make(user: Any) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last: Playwright's sync API keeps an event loop running in the main thread
    for the rest of the session, which asyncio.run() in other tests cannot share."""
    items.sort(key=lambda item: "/tests/browser/" in str(item.path).replace("\\", "/"))
