"""The routing app's console pages: dashboard, route log, one route, backends and probes, and a
capability's dry run and try-it boxes. Access by role, methods, HTMX fragments, validation."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest
from django.template.defaultfilters import floatformat
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from registry.models import Backend
from routing import breaker, probe, rollup, run
from routing.models import Attempt, RollupHour, RouteLog
from tests.routing.test_executor import TRIAGE, classify, http_backend

XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2"><b hx-get="/console/backends/" hx-trigger="load">x</b>'


@pytest.fixture
def policy(sim: Any, install_policy: Any) -> Any:
    return install_policy(
        backends={
            "llama": http_backend(sim, "ollama", "answer=billing"),
            "frontier": http_backend(sim, "openai", "answer=urgent", locality="hosted"),
            "triage": TRIAGE,
        },
        capabilities={
            "classify": classify(["llama", "frontier", "triage"]),
            "private": classify(["llama", "triage"], privacy="local_only"),
        },
    )


@pytest.fixture
def as_operator(client_for: Callable[[Any], Client], operator: Any) -> Client:
    return client_for(operator)


HTMX = {"HX-Request": "true"}


def make_log(**fields: Any) -> RouteLog:
    values: dict[str, Any] = {
        "created_at": timezone.now(),
        "caller": "billing-app",
        "capability": "classify",
        "intent": "classification",
        "privacy": "hosted_allowed",
        "policy_revision": 1,
        "outcome": "primary",
        "backend": "llama",
        "fallback_eligible": True,
        "fallback_used": False,
        "reasons": ["llama (primary): kept (local, ollama)", "llama: answered, verification passed"],
        "verification": {"passed": True, "detail": "one of 3 values"},
        "input_sha256": "a" * 64,
        "input_chars": 20,
        "latency_ms": 120.0,
        "cost_usd": Decimal("0.0001"),
    }
    values.update(fields)
    return RouteLog.objects.create(**values)


def text(response: Any) -> str:
    return response.content.decode()


# --- access, methods, fragments ---------------------------------------------------------------

PAGES = [
    ("routing:dashboard", {}),
    ("routing:route-log", {}),
    ("routing:route", {"pk": 1}),
    ("routing:backends", {}),
    ("routing:probe-result", {"task_id": "0" * 32}),
]
ACTIONS = [
    ("routing:dry-run", {"slug": "classify"}),
    ("routing:try-it", {"slug": "classify"}),
    ("routing:backend-probe", {"slug": "llama"}),
]


@pytest.mark.parametrize(("name", "kwargs"), PAGES + ACTIONS)
def test_it_sends_anonymous_visitors_to_sign_in(client: Client, db: None, name: str, kwargs: dict[str, Any]) -> None:
    url = reverse(name, kwargs=kwargs)
    for method in (client.get, client.post):
        response = method(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize(("name", "kwargs"), PAGES)
def test_it_answers_405_to_a_post_on_a_page(as_operator: Client, policy: Any, name: str, kwargs: dict[str, Any]) -> None:
    assert as_operator.post(reverse(name, kwargs=kwargs)).status_code == 405


@pytest.mark.parametrize(("name", "kwargs"), ACTIONS)
def test_it_answers_405_to_a_get_on_an_action(as_operator: Client, policy: Any, name: str, kwargs: dict[str, Any]) -> None:
    assert as_operator.get(reverse(name, kwargs=kwargs)).status_code == 405


@pytest.mark.parametrize("role", ["operator", "reviewer", "outsider"])
@pytest.mark.parametrize("name", ["routing:dashboard", "routing:route-log", "routing:backends"])
def test_it_shows_every_page_to_every_signed_in_role(
    request: pytest.FixtureRequest, client_for: Callable[[Any], Client], policy: Any, role: str, name: str
) -> None:
    response = client_for(request.getfixturevalue(role)).get(reverse(name))
    assert response.status_code == 200
    assert "<html" in text(response)


@pytest.mark.parametrize(
    ("role", "dry_run", "try_it", "probe_status"),
    [("operator", 200, 200, 302), ("reviewer", 200, 403, 403), ("outsider", 403, 403, 403)],
)
def test_it_lets_each_role_act_only_as_allowed(
    request: pytest.FixtureRequest,
    client_for: Callable[[Any], Client],
    policy: Any,
    sim: Any,
    role: str,
    dry_run: int,
    try_it: int,
    probe_status: int,
) -> None:
    client = client_for(request.getfixturevalue(role))
    assert client.post(reverse("routing:dry-run", kwargs={"slug": "classify"}), {"input": "hi"}).status_code == dry_run
    assert client.post(reverse("routing:try-it", kwargs={"slug": "classify"}), {"input": "hi"}).status_code == try_it
    assert client.post(reverse("routing:backend-probe", kwargs={"slug": "llama"})).status_code == probe_status
    if try_it == 403:
        assert RouteLog.objects.count() == 0
        assert sim.calls() == 0


def test_it_offers_the_probe_button_to_operators_only(client_for: Callable[[Any], Client], policy: Any, operator: Any, reviewer: Any) -> None:
    probe_url = reverse("routing:backend-probe", kwargs={"slug": "llama"})
    assert probe_url in text(client_for(operator).get(reverse("routing:backends")))
    page = text(client_for(reviewer).get(reverse("routing:backends")))
    assert probe_url not in page and "Probe" not in page


@pytest.mark.parametrize(
    ("url", "fragment_id"),
    [("/console/", "dashboard-body"), ("/console/routes/", "route-table")],
)
def test_it_answers_htmx_with_the_fragment_and_a_plain_request_with_the_page(
    as_operator: Client, policy: Any, url: str, fragment_id: str
) -> None:
    full = text(as_operator.get(url))
    fragment = text(as_operator.get(url, headers=HTMX))
    assert "<html" in full and f'id="{fragment_id}"' in full
    assert "<html" not in fragment
    assert fragment.lstrip().startswith(("<div", "<section")) and f'id="{fragment_id}"' in fragment
    restored = text(as_operator.get(url, headers={**HTMX, "HX-History-Restore-Request": "true"}))
    assert "<html" in restored


# --- dashboard --------------------------------------------------------------------------------


def test_it_tells_a_new_console_to_import_a_policy(as_operator: Client) -> None:
    page = text(as_operator.get("/console/"))
    assert "no routes yet: import a policy or add one" in page
    assert "no calls in this window" in page


def test_it_shows_per_capability_figures_for_the_window(as_operator: Client, policy: Any) -> None:
    now = timezone.now()
    for latency in (100, 200, 300, 400):
        make_log(latency_ms=latency, cost_usd=Decimal("0.001"), created_at=now - timedelta(minutes=5))
    make_log(outcome="fallback", backend="triage", fallback_used=True, latency_ms=500, created_at=now - timedelta(minutes=5))
    make_log(outcome="failed", backend="", latency_ms=900, created_at=now - timedelta(minutes=5))
    make_log(created_at=now - timedelta(hours=3))  # outside the 1h window
    response = as_operator.get("/console/?window=1h")
    data = response.context["data"]
    (row,) = [c for c in data.capabilities if c.slug == "classify"]
    assert (row.calls, row.fallbacks, row.failures) == (6, 1, 1)
    assert row.cost == Decimal("0.0042")
    assert row.p50_ms == pytest.approx(350.0)
    assert row.p95_ms == pytest.approx(800.0)
    page = text(response)
    assert "16.7%" in page  # fallback and failure rates
    assert "no calls in this window" not in page
    assert "<svg" in page and "<title" in page and 'role="img"' in page
    # The private capability had no calls but is in the policy.
    assert any(c.slug == "private" and c.calls == 0 for c in data.capabilities)


def test_it_shows_backend_health_and_circuit_state(as_operator: Client, policy: Any, settings: Any) -> None:
    settings.FOS_BREAKER_FAILURE_THRESHOLD = 1
    entry = make_log(outcome="fallback", backend="triage", fallback_used=True)
    Attempt.objects.create(route_log=entry, index=0, backend="llama", locality="local", adapter="ollama", status="error", error_class="timeout", latency_ms=5)
    Attempt.objects.create(route_log=entry, index=1, backend="triage", locality="local", adapter="tool", status="ok", latency_ms=1)
    breaker.record_failure("llama", error_class="timeout", previous=breaker.BreakerState("closed"))
    data = as_operator.get("/console/").context["data"]
    health = {b.slug: b for b in data.backends}
    assert (health["llama"].attempts, health["llama"].errors, health["llama"].circuit.state) == (1, 1, "open")
    assert (health["triage"].attempts, health["triage"].errors, health["triage"].circuit.state) == (1, 0, "closed")
    assert health["frontier"].attempts == 0


def test_it_reads_whole_hours_from_the_rollup_and_a_call_made_now_at_once(as_operator: Client, policy: Any) -> None:
    now = timezone.now()
    make_log(created_at=now - timedelta(hours=5), latency_ms=200, cost_usd=Decimal("0.002"))
    response = as_operator.get("/console/?window=24h")
    # The view rolled up the hours that had ended, and read them from the rollup.
    assert RollupHour.objects.get(hour=rollup.hour_of(now - timedelta(hours=5))).is_final()
    assert response.context["data"].percentiles_estimated
    assert "estimated from hourly histograms, within 2.5%" in text(response)
    make_log(latency_ms=100, cost_usd=Decimal("0.001"))
    data = as_operator.get("/console/?window=24h").context["data"]
    (row,) = [c for c in data.capabilities if c.slug == "classify"]
    assert (row.calls, row.cost) == (2, Decimal("0.003"))
    assert data.buckets[-1].counts["primary"] == 1
    exact = as_operator.get("/console/?window=1h")
    assert not exact.context["data"].percentiles_estimated
    assert "hourly histograms" not in text(exact)


def test_it_explains_an_unknown_window(as_operator: Client, policy: Any) -> None:
    response = as_operator.get("/console/?window=bogus")
    assert response.status_code == 400
    assert "Unknown window" in text(response) and "&#x27;bogus&#x27;" in text(response)
    fragment = as_operator.get("/console/?window=bogus", headers=HTMX)
    assert fragment.status_code == 200 and "Unknown window" in text(fragment)


# --- route log --------------------------------------------------------------------------------


def test_it_lists_route_logs_newest_first_without_loading_their_reasons(as_operator: Client, policy: Any) -> None:
    old = make_log(created_at=timezone.now() - timedelta(minutes=2), caller="old-app")
    new = make_log(caller="new-app")
    response = as_operator.get("/console/routes/")
    entries = response.context["page"].entries
    assert [e.pk for e in entries] == [new.pk, old.pk]
    assert "reasons" in entries[0].get_deferred_fields()
    page = text(response)
    assert page.index("new-app") < page.index("old-app")
    assert reverse("routing:route", kwargs={"pk": new.pk}) in page


def test_it_filters_by_capability_outcome_backend_caller_and_time(as_operator: Client, policy: Any) -> None:
    now = timezone.now()
    a = make_log(capability="classify", outcome="primary", backend="llama", caller="app-a", created_at=now - timedelta(minutes=1))
    b = make_log(capability="private", outcome="failed", backend="", caller="app-b", created_at=now - timedelta(hours=2))
    c = make_log(capability="classify", outcome="fallback", backend="triage", caller="app-b", created_at=now - timedelta(days=2))

    def ids(query: str) -> list[int]:
        response = as_operator.get(f"/console/routes/?{query}")
        assert response.status_code == 200, text(response)
        return [e.pk for e in response.context["page"].entries]

    assert ids("capability=classify") == [a.pk, c.pk]
    assert ids("outcome=failed") == [b.pk]
    assert ids("backend=triage") == [c.pk]
    assert ids("caller=app-b") == [b.pk, c.pk]
    assert ids("window=1h") == [a.pk]
    assert ids("window=24h&caller=app-b") == [b.pk]
    since = (now - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    until = (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    assert ids(f"since={since}&until={until}") == [c.pk]
    # A capability no longer in the policy can still be looked up.
    assert ids("capability=retired-one") == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("outcome=bogus", "Select a valid choice"),
        ("cursor=not-a-cursor", "start again from the newest entries"),
        ("cursor=1.2.3", "start again from the newest entries"),
        ("cursor=-5.1", "start again from the newest entries"),
        ("capability=%3Cscript%3E", "Select a valid choice"),
        ("since=yesterday", "Enter a valid date/time"),
        ("window=1h&since=2024-01-01T00:00", "not both"),
        ("since=2024-01-02T00:00&until=2024-01-01T00:00", "Must be later than since"),
    ],
)
def test_it_explains_bad_filters_instead_of_failing(as_operator: Client, policy: Any, query: str, message: str) -> None:
    response = as_operator.get(f"/console/routes/?{query}")
    assert response.status_code == 400
    assert message in text(response)
    fragment = as_operator.get(f"/console/routes/?{query}", headers=HTMX)
    assert fragment.status_code == 200 and message in text(fragment) and "<html" not in text(fragment)
    assert "<script>" not in text(response)


def test_it_pages_by_keyset_without_skipping_or_repeating_rows_that_share_a_time(
    as_operator: Client, policy: Any
) -> None:
    moment = timezone.now().replace(microsecond=0)
    expected = []
    for offset in range(5):  # five timestamps, 27 rows each: pages break inside ties
        for _ in range(27):
            expected.append(make_log(created_at=moment - timedelta(seconds=offset)).pk)
    expected.sort(key=lambda pk: (-RouteLog.objects.get(pk=pk).created_at.timestamp(), -pk))
    seen: list[int] = []
    url = "/console/routes/?capability=classify"
    pages = 0
    while url:
        response = as_operator.get(url)
        assert response.status_code == 200
        page = response.context["page"]
        seen += [e.pk for e in page.entries]
        pages += 1
        match = re.search(r'href="(/console/routes/\?[^"]*cursor=[^"]+)"', text(response))
        url = match.group(1).replace("&amp;", "&") if match else ""
        assert ("capability=classify" in url) if url else page.older is None
    assert pages == 3
    assert seen == expected


def test_it_polls_the_table_only_when_live_tail_is_on(as_operator: Client, policy: Any) -> None:
    quiet = text(as_operator.get("/console/routes/", headers=HTMX))
    assert 'hx-trigger="routeLogged from:body"' in quiet and "every 2s" not in quiet
    live = text(as_operator.get("/console/routes/?live=on&outcome=failed", headers=HTMX))
    assert 'hx-trigger="every 2s, routeLogged from:body"' in live
    assert 'hx-get="/console/routes/?live=on&amp;outcome=failed"' in live
    page = text(as_operator.get("/console/routes/"))
    assert 'hx-push-url="true"' in page and 'method="get"' in page


def test_it_pushes_a_tidy_url_when_the_filters_change(as_operator: Client, policy: Any) -> None:
    headers = {**HTMX, "HX-Trigger": "route-filters"}
    response = as_operator.get("/console/routes/?capability=classify&outcome=&backend=&caller=&live=on", headers=headers)
    assert response["HX-Push-Url"] == "/console/routes/?capability=classify&live=on"
    assert as_operator.get("/console/routes/?outcome=", headers=headers)["HX-Push-Url"] == "/console/routes/"
    # The table's own refresh does not touch the address bar.
    assert "HX-Push-Url" not in as_operator.get("/console/routes/?live=on", headers={**HTMX, "HX-Trigger": "route-table"})


# --- one route --------------------------------------------------------------------------------


def test_it_shows_a_route_with_reasons_attempts_and_its_policy_revision(as_operator: Client, policy: Any, sim: Any) -> None:
    result = run("classify", "the invoice is wrong", caller="billing-app")
    entry = RouteLog.objects.get(pk=result.route_id)
    page = text(as_operator.get(reverse("routing:route", kwargs={"pk": entry.pk})))
    assert "llama (primary): kept" in page
    assert "llama: answered, verification passed" in page
    assert entry.input_sha256 in page and "20 characters" in page
    assert "the invoice is wrong" not in page  # never the raw input
    assert reverse("registry:revision", kwargs={"number": entry.policy_revision}) in page
    assert 'class="timeline"' in page and "ollama adapter" in page
    assert "billing-app" in page
    attempt = entry.attempts.get()
    routing_ms = entry.latency_ms - attempt.latency_ms
    assert f"attempts {floatformat(attempt.latency_ms, 1)} ms, routing {floatformat(routing_ms, 2)} ms" in page


def test_it_answers_404_for_an_unknown_route(as_operator: Client, db: None) -> None:
    assert as_operator.get("/console/routes/999999/").status_code == 404


def test_it_renders_untrusted_route_text_inert(as_operator: Client, policy: Any) -> None:
    entry = make_log(
        caller=XSS,
        reasons=[f"llama: failed: server_error ({XSS})"],
        input_preview=XSS,
        metadata={"note": XSS, XSS: "key"},
        outcome="failed",
        backend="",
    )
    Attempt.objects.create(route_log=entry, index=0, backend="llama", locality="local", adapter="ollama", status="error", error_class="server_error", detail=XSS, latency_ms=3)
    page = text(as_operator.get(reverse("routing:route", kwargs={"pk": entry.pk})))
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in page
    assert "<script>window" not in page and "<img" not in page and "<b hx-get" not in page
    assert "onerror=&quot;" in page
    log_page = text(as_operator.get("/console/routes/"))
    assert "&lt;script&gt;" in log_page and "<script>window" not in log_page


# --- backends and probes ----------------------------------------------------------------------


def test_it_shows_the_registry_with_secret_status_and_circuit_but_never_a_secret(
    as_operator: Client, policy: Any, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    monkeypatch.setenv("FRONTIER_KEY", "sk-very-secret-value")
    Backend.objects.filter(slug="frontier").update(secret_ref="env:FRONTIER_KEY", cost_in_per_mtok=Decimal("1.25"))
    Backend.objects.filter(slug="llama").update(secret_ref="env:MISSING_KEY")
    settings.FOS_BREAKER_FAILURE_THRESHOLD = 1
    breaker.record_failure("triage", error_class="connection", previous=breaker.BreakerState("closed"))
    page = text(as_operator.get("/console/backends/"))
    assert "sk-very-secret-value" not in page
    assert "resolves" in page and "environment variable MISSING_KEY is not set" in page
    assert "1.25" in page and "keyword_classifier" in page and "sim-model" in page
    row = page[page.index('id="backend-triage"'):]
    assert 'class="badge open"' in row[: row.index("</tr>")]


@pytest.mark.usefixtures("eager_celery")
def test_it_probes_a_backend_in_a_task_and_shows_the_result(as_operator: Client, policy: Any, sim: Any) -> None:
    response = as_operator.post(reverse("routing:backend-probe", kwargs={"slug": "llama"}), headers=HTMX)
    assert response.status_code == 200
    fragment = text(response)
    assert "<html" not in fragment and 'id="probe-llama"' in fragment
    assert 'class="badge ok">ok' in fragment
    assert sim.calls("answer=billing") == 1
    assert RouteLog.objects.count() == 0  # a probe is not traffic
    # A plain post redirects to the result's own URL, which HTMX polls.
    result_url = as_operator.post(reverse("routing:backend-probe", kwargs={"slug": "llama"}))["Location"]
    polled = text(as_operator.get(result_url, headers=HTMX))
    assert 'id="probe-llama"' in polled and "ok" in polled and "hx-trigger" not in polled


@pytest.mark.usefixtures("eager_celery")
def test_it_shows_a_failed_probe_without_touching_the_breaker(as_operator: Client, install_policy: Any, sim: Any) -> None:
    install_policy(backends={"down": http_backend(sim, "openai", "status=500")}, capabilities={"c": classify(["down"])})
    response = as_operator.post(reverse("routing:backend-probe", kwargs={"slug": "down"}))
    assert response.status_code == 302  # a plain form post goes to the result page
    page = text(as_operator.get(response["Location"]))
    assert "<html" in page and "server_error" in page
    assert sim.calls("status=500") == 1
    assert breaker.states(["down"])["down"].is_clean
    assert RouteLog.objects.count() == 0


def test_it_polls_a_probe_until_its_result_arrives(as_operator: Client, policy: Any) -> None:
    task_id = "f" * 32
    probe.mark_pending(task_id=task_id, slug="llama")
    url = reverse("routing:probe-result", kwargs={"task_id": task_id})
    pending = text(as_operator.get(url, headers=HTMX))
    assert f'hx-get="{url}"' in pending and 'hx-trigger="load delay:1s"' in pending and "probing" in pending
    probe.store_failure(task_id=task_id, slug="llama", detail="the task queue is unreachable; try again")
    done = text(as_operator.get(url, headers=HTMX))
    assert "hx-trigger" not in done and "not_run" in done


@pytest.mark.parametrize("task_id", ["0" * 32, "not-a-task", "../../etc"])
def test_it_answers_404_for_an_unknown_probe(as_operator: Client, db: None, task_id: str) -> None:
    assert as_operator.get(f"/console/probes/{quote(task_id, safe='')}/").status_code == 404


def test_it_answers_404_when_probing_an_unknown_backend(as_operator: Client, policy: Any) -> None:
    assert as_operator.post(reverse("routing:backend-probe", kwargs={"slug": "nope"})).status_code == 404



# --- dry run ----------------------------------------------------------------------------------


def test_it_dry_runs_a_plan_without_calling_any_provider(client_for: Callable[[Any], Client], reviewer: Any, policy: Any, sim: Any) -> None:
    Backend.objects.filter(slug="frontier").update(enabled=False)
    from registry.policy import record_revision

    record_revision(author="test", summary="disable frontier")
    response = client_for(reviewer).post(
        reverse("routing:dry-run", kwargs={"slug": "classify"}), {"input": "the site is down"}, headers=HTMX
    )
    assert response.status_code == 200
    fragment = text(response)
    assert fragment.lstrip().startswith('<section id="dry-run-result"') and "<html" not in fragment
    chain = fragment[fragment.index('<ol class="route-chain">'):fragment.index("</ol>")]
    assert chain.index("llama") < chain.index("triage") and "frontier" not in chain
    assert "llama (primary): kept" in fragment
    assert "frontier (fallback 1): skipped: backend disabled" in fragment
    assert "16 characters" in fragment
    assert sim.calls() == 0
    assert RouteLog.objects.count() == 0


def test_it_explains_why_a_local_only_capability_skips_hosted_routes(as_operator: Client, install_policy: Any, sim: Any) -> None:
    install_policy(
        backends={"cloud": http_backend(sim, "openai", "answer=x", locality="hosted"), "triage": TRIAGE},
        capabilities={"private": classify(["cloud", "triage"], privacy="local_only")},
    )
    fragment = text(as_operator.post(reverse("routing:dry-run", kwargs={"slug": "private"}), {"input": "x"}, headers=HTMX))
    assert "cloud (primary): skipped: hosted backend excluded: privacy=local_only" in fragment


@pytest.mark.parametrize("name", ["routing:dry-run", "routing:try-it"])
def test_it_asks_for_an_input(as_operator: Client, policy: Any, sim: Any, name: str) -> None:
    url = reverse(name, kwargs={"slug": "classify"})
    fragment = as_operator.post(url, {"input": "   "}, headers=HTMX)
    assert fragment.status_code == 200 and "Type an input first." in text(fragment) and "<html" not in text(fragment)
    page = as_operator.post(url, {})
    assert page.status_code == 400 and "Type an input first." in text(page) and "<html" in text(page)
    assert sim.calls() == 0 and RouteLog.objects.count() == 0


@pytest.mark.parametrize("name", ["routing:dry-run", "routing:try-it"])
def test_it_answers_404_for_an_unknown_capability(as_operator: Client, policy: Any, name: str) -> None:
    assert as_operator.post(reverse(name, kwargs={"slug": "nope"}), {"input": "x"}).status_code == 404


def test_it_shows_a_full_page_for_a_plain_dry_run(as_operator: Client, policy: Any) -> None:
    page = text(as_operator.post(reverse("routing:dry-run", kwargs={"slug": "classify"}), {"input": "hello"}))
    assert "<html" in page and 'id="dry-run-result"' in page and "llama (primary): kept" in page


# --- try it -----------------------------------------------------------------------------------


def test_it_routes_exactly_one_real_call_and_shows_its_route_log(as_operator: Client, policy: Any, sim: Any) -> None:
    response = as_operator.post(reverse("routing:try-it", kwargs={"slug": "classify"}), {"input": "the invoice"}, headers=HTMX)
    assert response.status_code == 200
    entry = RouteLog.objects.get()
    assert entry.caller == "console:olivia-operator" and entry.outcome == "primary"
    assert sim.calls() == 1
    fragment = text(response)
    assert fragment.lstrip().startswith('<section id="try-it-result"') and "<html" not in fragment
    assert "billing" in fragment and "llama" in fragment and "passed" in fragment
    assert reverse("routing:route", kwargs={"pk": entry.pk}) in fragment
    assert '"routeLogged"' in response["HX-Trigger"] and str(entry.pk) in response["HX-Trigger"]


def test_it_shows_why_a_tried_call_failed(as_operator: Client, install_policy: Any, sim: Any) -> None:
    install_policy(backends={"down": http_backend(sim, "openai", "status=503")}, capabilities={"c": classify(["down"])})
    response = as_operator.post(reverse("routing:try-it", kwargs={"slug": "c"}), {"input": "hi"}, headers=HTMX)
    assert response.status_code == 200
    fragment = text(response)
    assert "No route succeeded (server_error)" in fragment and "down: failed: server_error" in fragment
    assert RouteLog.objects.get().outcome == "failed"
    assert "routeLogged" in response["HX-Trigger"]


def test_it_renders_a_hostile_model_answer_as_inert_text(as_operator: Client, install_policy: Any, sim: Any) -> None:
    install_policy(
        backends={"evil": http_backend(sim, "openai", "answer=" + quote(XSS, safe=""))},
        capabilities={"c": classify(["evil"], verify={"kind": "non_empty"})},
    )
    for headers in (HTMX, {}):
        page = text(as_operator.post(reverse("routing:try-it", kwargs={"slug": "c"}), {"input": "hi"}, headers=headers))
        assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in page
        assert "&lt;img src=x onerror=&quot;window.__xss=2&quot;&gt;" in page
        assert "&lt;b hx-get=&quot;/console/backends/&quot;" in page
        assert "<script>window" not in page and "<img" not in page and "<b hx-get" not in page
