"""The route log in a browser: live tail without reloading, and hostile model output kept inert."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest
from django.urls import reverse

from routing import run
from routing.models import Attempt, RouteLog
from tests.routing.conftest import sim, simulator  # noqa: F401  (fixtures: the provider simulator)
from tests.routing.test_console_views import make_log
from tests.routing.test_executor import TRIAGE, classify, http_backend

pytestmark = pytest.mark.django_db(transaction=True)

XSS = (
    "<script>window.__xss=1;alert(1)</script>"
    '<img src=x onerror="window.__xss=2;alert(2)">'
    '<b hx-get="/console/backends/" hx-trigger="load" hx-target="body" hx-swap="innerHTML">x</b>'
)


@pytest.fixture
def dialogs(page: Any) -> list[str]:
    """Every dialog a page opens (an executed alert() would land here), dismissed."""
    seen: list[str] = []

    def on_dialog(dialog: Any) -> None:
        seen.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return seen


def assert_inert(page: Any, dialogs: list[str]) -> None:
    page.wait_for_timeout(300)  # room for an onerror, a load trigger or an htmx swap to fire
    assert dialogs == []
    assert page.evaluate("window.__xss") is None
    assert page.locator("b[hx-get], img[onerror], #main script").count() == 0


def test_it_shows_a_new_call_in_the_live_route_log_without_reloading(
    page: Any, sign_in: Any, live_server: Any, outsider: Any, install_policy: Any, sim: Any  # noqa: F811
) -> None:
    install_policy(
        backends={"llama": http_backend(sim, "ollama", "answer=urgent"), "triage": TRIAGE},
        capabilities={"classify": classify(["llama", "triage"])},
    )
    sign_in(page, outsider)
    page.goto(live_server.url + reverse("routing:route-log"))
    page.get_by_text("no calls yet").wait_for()
    page.evaluate("window.sameDocument = true")  # gone if anything reloads the page

    page.get_by_label("Live tail").check()
    page.locator("#route-table[data-live=on]").wait_for()
    page.wait_for_url(re.compile(r".*/console/routes/\?live=on$"))  # the filters stay in the URL

    result = run("classify", "the site is down", caller="live-tail-app")
    row = page.locator(f"#route-{result.route_id}")
    row.wait_for()
    assert "live-tail-app" in row.inner_text() and "primary" in row.inner_text()
    assert page.evaluate("window.sameDocument") is True


def test_it_keeps_a_hostile_model_answer_inert_in_try_it_and_on_the_route_page(
    page: Any, sign_in: Any, live_server: Any, operator: Any, install_policy: Any, sim: Any, dialogs: list[str]  # noqa: F811
) -> None:
    install_policy(
        backends={"evil": http_backend(sim, "openai", "answer=" + quote(XSS, safe=""))},
        capabilities={"chat": classify(["evil"], verify={"kind": "non_empty"})},
    )
    sign_in(page, operator)
    page.goto(live_server.url + reverse("routing:route-log"))
    page.get_by_text("no calls yet").wait_for()
    # The try-it box as the capability page embeds it: a form that posts with htmx into a
    # result section; here it is added to the route log page, whose table listens for the
    # routeLogged event the answer sends.
    url = reverse("routing:try-it", kwargs={"slug": "chat"})
    page.evaluate(
        """url => {
            document.querySelector('#main').insertAdjacentHTML('beforeend',
              `<form id="try" method="post" action="${url}" hx-post="${url}" hx-target="#try-it-result" hx-swap="outerHTML">
                 <textarea name="input">hello</textarea><button type="submit">Route one call</button>
               </form><section id="try-it-result"></section>`);
            htmx.process(document.querySelector('#try'));
        }""",
        url,
    )
    page.get_by_role("button", name="Route one call").click()
    output = page.locator("#try-it-result pre.output")
    output.wait_for()
    assert output.inner_text() == XSS  # shown as text, exactly
    assert_inert(page, dialogs)
    entry = RouteLog.objects.get()
    page.locator(f"#route-{entry.pk}").wait_for()  # the table refreshed on routeLogged

    # Upstream text stored in a route log (reasons, attempt detail, caller, metadata).
    hostile = make_log(
        capability="chat", caller=XSS[:150], reasons=[f"evil: failed: server_error ({XSS})"],
        metadata={"note": XSS}, outcome="failed", backend="",
    )
    Attempt.objects.create(
        route_log=hostile, index=0, backend="evil", locality="local", adapter="openai",
        status="error", error_class="server_error", detail=XSS, latency_ms=3,
    )
    page.goto(live_server.url + reverse("routing:route", kwargs={"pk": hostile.pk}))
    page.get_by_role("heading", name=f"Route {hostile.pk}").wait_for()
    assert XSS in page.locator("#main").inner_text()
    assert_inert(page, dialogs)
