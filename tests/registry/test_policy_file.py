from __future__ import annotations

import copy
import tomllib
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import tomli_w

from registry.models import Backend, Capability, PolicyRevision, Route
from registry.policy import build_snapshot
from registry.policy_file import PolicyFileError, apply_policy, check_policy, export_policy, import_policy

pytestmark = pytest.mark.django_db

# The example from DESIGN.md, "Policy file".
DESIGN_EXAMPLE = """
[backends.spark-llama]
adapter = "ollama"          # openai | anthropic | ollama | tool
base_url = "http://spark.local:11434"
model = "llama3.1:8b"
locality = "local"          # local | hosted
secret = ""                 # secret reference, never the secret: "env:NAME" or "file:/path"
cost_in_per_mtok = 0.0      # USD per million input tokens
cost_out_per_mtok = 0.0
timeout_s = 20

[backends.frontier]
adapter = "openai"
base_url = "https://api.example.com/v1"
model = "frontier-large"
locality = "hosted"
secret = "env:FRONTIER_API_KEY"
cost_in_per_mtok = 1.25
cost_out_per_mtok = 10.0

[backends.keyword-triage]
adapter = "tool"
tool = "keyword_classifier"
locality = "local"
config = { labels = { urgent = ["outage", "down"], billing = ["invoice", "refund"] }, default = "other" }

[capabilities.classify-fast]
intent = "classification"
privacy = "hosted_allowed"
max_cost_usd = 0.001
latency_budget_ms = 2000
fallback = "next_route"
fallback_on = ["timeout", "connection", "rate_limited", "server_error", "verification_failed"]
instructions = "Label the message as urgent, billing or other. Answer with the label only."
verify = { kind = "one_of", values = ["urgent", "billing", "other"] }
log_input = "hash"
routes = ["spark-llama", "frontier", "keyword-triage"]
"""

# Every optional key, nested tables, floats, private instructions, a disabled backend.
RICH = """
[backends.anthropic-large]
name = "Claude (Anthropic)"
adapter = "anthropic"
base_url = "https://api.anthropic.com"
model = "claude-sonnet"
locality = "hosted"
secret = "file:/run/secrets/anthropic"
cost_in_per_mtok = 3.0
cost_out_per_mtok = 15.0
timeout_s = 12.5
enabled = false
notes = "Disabled until the contract is signed.\\nAsk \\"finance\\"."

[backends.local-vllm]
adapter = "openai"
base_url = "http://127.0.0.1:8000/v1"
model = "qwen2.5-7b-instruct"
locality = "local"
cost_in_per_mtok = 0.000125

[backends.order-regex]
adapter = "tool"
tool = "regex_extract"
locality = "local"
config = { pattern = '(?P<id>ORD-\\d{6})', group = "id", join = ", ", flags = ["ignorecase"] }

[backends.ack]
adapter = "tool"
tool = "template"
locality = "local"
config = { template = "Received: {first_line} ({input_chars} characters)" }

[capabilities.extract-order]
name = "Extract the order"
intent = "extraction"
privacy = "local_only"
latency_budget_ms = 1500
fallback = "fail_closed"
fallback_on = []
instructions = "Answer as JSON.\\nNo prose."
instructions_private = true
log_input = "redacted"
routes = ["local-vllm", "order-regex"]

[capabilities.extract-order.verify]
kind = "json_schema"

[capabilities.extract-order.verify.schema]
type = "object"
required = ["order_id"]
additionalProperties = false

[capabilities.extract-order.verify.schema.properties.order_id]
type = "string"
pattern = "^ORD-[0-9]{6}$"

[capabilities.extract-order.verify.schema.properties.amount]
type = "number"
minimum = 0.5

[capabilities.acknowledge]
intent = "generation"
privacy = "hosted_allowed"
max_cost_usd = 0.0025
verify = { kind = "max_chars", limit = 280 }
routes = ["anthropic-large", "ack"]
"""


def state() -> tuple[Any, ...]:
    """Everything an import could change."""
    routes = list(Route.objects.order_by("pk").values_list("pk", "capability__slug", "backend__slug", "position", "status"))
    return (build_snapshot(), routes, PolicyRevision.objects.count())


def dump(data: dict[str, Any]) -> str:
    return tomli_w.dumps(data)


def design_data() -> dict[str, Any]:
    return tomllib.loads(DESIGN_EXAMPLE)


def problems_of(text: str) -> list[str]:
    with pytest.raises(PolicyFileError) as excinfo:
        import_policy(text=text)
    return excinfo.value.problems


@pytest.fixture
def existing() -> PolicyRevision:
    """A policy already in place, different from the design example, so a partial import shows."""
    data = design_data()
    data["backends"]["frontier"]["cost_in_per_mtok"] = 2.0
    data["capabilities"]["classify-fast"]["routes"] = ["keyword-triage", "spark-llama"]
    return import_policy(text=dump(data))


def test_it_imports_the_design_example() -> None:
    revision = import_policy(text=DESIGN_EXAMPLE)
    assert (revision.number, revision.author) == (1, "import")
    assert revision.summary == (
        "import: backends 3 created, 0 changed, 0 unchanged; capabilities 1 created, 0 changed, 0 unchanged; "
        "routes 3 activated, 0 reordered, 0 retired"
    )
    frontier = Backend.objects.get(slug="frontier")
    assert (frontier.secret_ref, frontier.cost_in_per_mtok, frontier.timeout_s) == ("env:FRONTIER_API_KEY", Decimal("1.25"), 30.0)
    cap = Capability.objects.get(slug="classify-fast")
    assert (cap.max_cost_usd, cap.latency_budget_ms, cap.log_input) == (Decimal("0.001"), 2000, "hash")
    active = cap.routes.filter(status="active").order_by("position").values_list("backend__slug", "position")
    assert list(active) == [("spark-llama", 0), ("frontier", 1), ("keyword-triage", 2)]
    assert revision.snapshot == build_snapshot()


def test_it_fills_in_the_documented_defaults() -> None:
    import_policy(
        text="""
        [backends.local]
        adapter = "ollama"
        base_url = "http://127.0.0.1:11434"
        model = "llama3.1:8b"
        locality = "local"

        [capabilities.summarise]
        intent = "generation"
        privacy = "local_only"
        routes = ["local"]
        """
    )
    snapshot = build_snapshot()
    assert snapshot["backends"]["local"] == {
        "adapter": "ollama",
        "locality": "local",
        "base_url": "http://127.0.0.1:11434",
        "model": "llama3.1:8b",
        "secret": "",
        "cost_in_per_mtok": 0,
        "cost_out_per_mtok": 0,
        "timeout_s": 30,
        "enabled": True,
    }
    assert snapshot["capabilities"]["summarise"] == {
        "intent": "generation",
        "privacy": "local_only",
        "latency_budget_ms": 30000,
        "fallback": "next_route",
        "fallback_on": ["timeout", "connection", "rate_limited", "server_error"],
        "instructions": "",
        "verify": {"kind": "non_empty"},
        "log_input": "hash",
        "routes": ["local"],
    }


def test_it_resets_a_key_the_file_leaves_out_to_its_default() -> None:
    data = design_data()
    import_policy(text=dump(data))
    del data["backends"]["spark-llama"]["timeout_s"]
    del data["capabilities"]["classify-fast"]["max_cost_usd"]
    import_policy(text=dump(data))
    assert Backend.objects.get(slug="spark-llama").timeout_s == 30.0
    assert Capability.objects.get(slug="classify-fast").max_cost_usd is None


def test_it_creates_no_duplicates_when_imported_twice() -> None:
    import_policy(text=DESIGN_EXAMPLE)
    counts = (Backend.objects.count(), Capability.objects.count(), Route.objects.count())
    second = import_policy(text=DESIGN_EXAMPLE)
    assert (Backend.objects.count(), Capability.objects.count(), Route.objects.count()) == counts == (3, 1, 3)
    assert second.summary == (
        "import: backends 0 created, 0 changed, 3 unchanged; capabilities 0 created, 0 changed, 1 unchanged; "
        "routes 0 activated, 0 reordered, 0 retired"
    )
    assert second.snapshot == PolicyRevision.objects.get(number=1).snapshot


def test_it_retires_routes_no_longer_listed_and_reorders_the_rest() -> None:
    import_policy(text=DESIGN_EXAMPLE)
    before = dict(Route.objects.values_list("backend__slug", "pk"))
    data = design_data()
    data["capabilities"]["classify-fast"]["routes"] = ["keyword-triage", "spark-llama"]
    revision = import_policy(text=dump(data))

    rows = {slug: (pk, position, status) for pk, slug, position, status in Route.objects.values_list("pk", "backend__slug", "position", "status")}
    assert rows == {
        "keyword-triage": (before["keyword-triage"], 0, "active"),
        "spark-llama": (before["spark-llama"], 1, "active"),
        "frontier": (before["frontier"], 1, "retired"),  # kept for the route logs that name it
    }
    assert "routes 0 activated, 2 reordered, 1 retired" in revision.summary
    assert revision.snapshot["capabilities"]["classify-fast"]["routes"] == ["keyword-triage", "spark-llama"]


def test_it_activates_a_new_row_for_a_backend_listed_again_after_retirement() -> None:
    import_policy(text=DESIGN_EXAMPLE)
    data = design_data()
    data["capabilities"]["classify-fast"]["routes"] = ["spark-llama"]
    import_policy(text=dump(data))
    import_policy(text=DESIGN_EXAMPLE)
    frontier = Route.objects.filter(backend__slug="frontier").order_by("pk")
    assert list(frontier.values_list("status", flat=True)) == ["retired", "active"]


def test_it_leaves_alone_what_the_file_does_not_name(existing: PolicyRevision) -> None:
    proposal = Route.objects.create(
        capability=Capability.objects.get(slug="classify-fast"),
        backend=Backend.objects.get(slug="frontier"),
        position=5,
        status=Route.Status.PROPOSED,
        ticket_ref="OPS-12",
    )
    before = build_snapshot()
    import_policy(
        text="""
        [backends.extra]
        adapter = "tool"
        tool = "template"
        locality = "local"
        config = { template = "{words} words" }

        [capabilities.count-words]
        intent = "transformation"
        privacy = "local_only"
        routes = ["extra", "spark-llama"]
        """
    )
    after = build_snapshot()
    for section in ("backends", "capabilities"):
        for slug, entry in before[section].items():
            assert after[section][slug] == entry
    assert after["capabilities"]["count-words"]["routes"] == ["extra", "spark-llama"]
    proposal.refresh_from_db()
    assert proposal.status == Route.Status.PROPOSED


def test_it_records_a_revision_with_the_author(existing: PolicyRevision) -> None:
    revision = apply_policy(data=design_data(), author="alice")
    assert (revision.number, revision.author) == (2, "alice")
    assert "backends 0 created, 1 changed, 2 unchanged" in revision.summary


def test_it_round_trips_export_and_import() -> None:
    import_policy(text=DESIGN_EXAMPLE)
    import_policy(text=RICH)
    snapshot = build_snapshot()
    text = export_policy()
    assert tomllib.loads(text) == snapshot
    # The exported numbers keep their values: floats stay floats, integers stay integers.
    assert snapshot["backends"]["frontier"]["cost_in_per_mtok"] == 1.25
    assert snapshot["backends"]["local-vllm"]["cost_in_per_mtok"] == 0.000125
    assert snapshot["backends"]["anthropic-large"]["timeout_s"] == 12.5
    assert snapshot["capabilities"]["extract-order"]["verify"]["schema"]["properties"]["amount"]["minimum"] == 0.5
    assert "max_cost_usd" not in snapshot["capabilities"]["extract-order"]

    Route.objects.all().delete()
    Capability.objects.all().delete()
    Backend.objects.all().delete()
    import_policy(text=text)
    assert build_snapshot() == snapshot
    assert export_policy() == text


def test_it_exports_a_policy_written_through_the_orm(install_policy: Callable[..., PolicyRevision]) -> None:
    install_policy(
        backends={
            "cheap": {
                "adapter": "openai",
                "base_url": "https://api.example.com/v1",
                "model": "mini",
                "locality": "hosted",
                "cost_in_per_mtok": Decimal("0.15"),
                "cost_out_per_mtok": Decimal("0.600000"),
                "timeout_s": 7,
            }
        },
        capabilities={"draft": {"intent": "generation", "privacy": "hosted_allowed", "max_cost_usd": None, "routes": ["cheap"]}},
    )
    text = export_policy()
    assert "cost_in_per_mtok = 0.15\n" in text
    assert "cost_out_per_mtok = 0.6\n" in text
    assert "max_cost_usd" not in text
    Route.objects.all().delete()
    Capability.objects.all().delete()
    Backend.objects.all().delete()
    snapshot = tomllib.loads(text)
    import_policy(text=text)
    assert build_snapshot() == snapshot


def test_it_refuses_to_export_a_null_it_cannot_write() -> None:
    import_policy(text=DESIGN_EXAMPLE)
    Capability.objects.filter(slug="classify-fast").update(
        verify={"kind": "json_schema", "schema": {"type": ["string", "null"], "default": None}}
    )
    with pytest.raises(PolicyFileError) as excinfo:
        export_policy()
    assert excinfo.value.problems == [
        "capabilities.classify-fast.verify.schema.default: null cannot be written to TOML"
    ]


def test_it_reports_a_toml_syntax_error_with_its_line(existing: PolicyRevision) -> None:
    before = state()
    problems = problems_of('[backends.x]\nadapter = "tool"\nlocality = \n')
    assert len(problems) == 1
    assert problems[0].startswith("invalid TOML:")
    assert "line 3" in problems[0]
    assert state() == before


def set_key(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        target = data
        for part in parents:
            target = target[part]
        target[last] = value

    return mutate


def del_key(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        target = data
        for part in parents:
            target = target[part]
        del target[last]

    return mutate


BACKEND = "backends/spark-llama"
FRONTIER = "backends/frontier"
TRIAGE = "backends/keyword-triage"
CAP = "capabilities/classify-fast"

REJECTED = [
    # Unknown keys, at every level.
    (set_key("routing", {"strategy": "clever"}), "routing: unknown key; known: backends, capabilities"),
    (set_key(f"{BACKEND}/colour", "red"), "backends.spark-llama.colour: unknown key"),
    (set_key(f"{CAP}/prompt", "hi"), "capabilities.classify-fast.prompt: unknown key"),
    (set_key(f"{CAP}/verify/case", "lower"), "capabilities.classify-fast.verify.case: unknown key; one_of takes kind, values"),
    (set_key(f"{TRIAGE}/config/colour", "red"), "backends.keyword-triage.config.colour: unknown key"),
    # Missing required keys, per adapter.
    (del_key(f"{BACKEND}/adapter"), "backends.spark-llama.adapter: missing required key"),
    (del_key(f"{BACKEND}/locality"), "backends.spark-llama.locality: missing required key"),
    (del_key(f"{BACKEND}/base_url"), "backends.spark-llama.base_url: missing required key for the ollama adapter"),
    (del_key(f"{FRONTIER}/model"), "backends.frontier.model: missing required key for the openai adapter"),
    (del_key(f"{TRIAGE}/tool"), "backends.keyword-triage.tool: missing required key for the tool adapter"),
    (del_key(f"{TRIAGE}/config"), "backends.keyword-triage.config.labels: missing required key for the keyword_classifier tool"),
    (del_key(f"{CAP}/intent"), "capabilities.classify-fast.intent: missing required key"),
    (del_key(f"{CAP}/privacy"), "capabilities.classify-fast.privacy: missing required key"),
    (del_key(f"{CAP}/routes"), "capabilities.classify-fast.routes: missing required key"),
    (set_key(f"{CAP}/verify", {"kind": "regex"}), "capabilities.classify-fast.verify.pattern: missing required key for regex"),
    # Keys that do not belong to the adapter.
    (set_key(f"{TRIAGE}/base_url", "http://127.0.0.1:1"), "backends.keyword-triage.base_url: only HTTP backends take base_url"),
    (set_key(f"{BACKEND}/tool", "template"), "backends.spark-llama.tool: only tool backends take tool"),
    # Values.
    (set_key(f"{BACKEND}/adapter", "grpc"), "backends.spark-llama.adapter: unknown value 'grpc'; known: openai, anthropic, ollama, tool"),
    (set_key(f"{CAP}/privacy", "secret"), "capabilities.classify-fast.privacy: unknown value 'secret'"),
    (set_key(f"{FRONTIER}/secret", "sk-live-abc123"), "backends.frontier.secret: must be env:NAME or file:/absolute/path"),
    (set_key(f"{FRONTIER}/secret", "env:"), "backends.frontier.secret: must be env:NAME or file:/absolute/path"),
    (set_key(f"{FRONTIER}/secret", "file:keys/frontier"), "backends.frontier.secret: must be env:NAME or file:/absolute/path"),
    (set_key(f"{BACKEND}/base_url", "spark.local:11434"), "backends.spark-llama.base_url: must be an http:// or https:// URL"),
    (set_key(f"{FRONTIER}/cost_in_per_mtok", -1.25), "backends.frontier.cost_in_per_mtok: must not be negative"),
    (set_key(f"{FRONTIER}/cost_out_per_mtok", 0.0000001), "backends.frontier.cost_out_per_mtok: Ensure that there are no more than 6 decimal places."),
    (set_key(f"{FRONTIER}/cost_out_per_mtok", float("inf")), "backends.frontier.cost_out_per_mtok: must be a finite number"),
    (set_key(f"{BACKEND}/timeout_s", 0), "backends.spark-llama.timeout_s: must be more than 0 seconds"),
    (set_key(f"{BACKEND}/timeout_s", "20"), "backends.spark-llama.timeout_s: must be a number, not a string"),
    (set_key(f"{BACKEND}/timeout_s", True), "backends.spark-llama.timeout_s: must be a number, not a boolean"),
    (set_key(f"{BACKEND}/enabled", "yes"), "backends.spark-llama.enabled: must be true or false, not a string"),
    (set_key(f"{CAP}/max_cost_usd", -0.001), "capabilities.classify-fast.max_cost_usd: Ensure this value is greater than or equal to 0."),
    (set_key(f"{CAP}/latency_budget_ms", 0), "capabilities.classify-fast.latency_budget_ms: Ensure this value is greater than or equal to 1."),
    (set_key(f"{CAP}/latency_budget_ms", 2.5), "capabilities.classify-fast.latency_budget_ms: must be a whole number, not a decimal number"),
    (set_key(f"{CAP}/fallback_on", ["timeout", "boredom"]), "capabilities.classify-fast.fallback_on: unknown error class 'boredom'"),
    (set_key(f"{CAP}/verify", {"kind": "regex", "pattern": "ORD-(\\d+"}), "capabilities.classify-fast.verify.pattern: invalid regex"),
    (set_key(f"{CAP}/verify", {"kind": "json_schema", "schema": {"type": 12}}), "capabilities.classify-fast.verify.schema: invalid JSON schema"),
    (set_key(f"{CAP}/verify", {"kind": "vibes"}), "capabilities.classify-fast.verify.kind: unknown verification kind 'vibes'"),
    (set_key(f"{CAP}/verify", {"kind": "max_chars", "limit": 0}), "capabilities.classify-fast.verify.limit: max_chars limit must be a whole number of at least 1"),
    (set_key(f"{TRIAGE}/tool", "oracle"), "backends.keyword-triage.tool: unknown tool 'oracle'"),
    (set_key(f"{TRIAGE}/config", {"labels": {"urgent": []}}), "backends.keyword-triage.config: labels.urgent must be a non-empty list of keywords"),
    (set_key(f"{TRIAGE}/config", "urgent=down"), "backends.keyword-triage.config: must be a table, not a string"),
    # Slugs.
    (set_key("backends/Spark Llama!", {"adapter": "tool", "tool": "template", "locality": "local", "config": {"template": "{input}"}}), 'backends."Spark Llama!": Enter a valid “slug”'),
    (set_key("capabilities/" + "x" * 65, {"intent": "lookup", "privacy": "local_only", "routes": []}), "Ensure this value has at most 64 characters"),
    # Routes.
    (set_key(f"{CAP}/routes", ["spark-llama", "nope"]), "capabilities.classify-fast.routes[1]: unknown backend 'nope'"),
    (set_key(f"{CAP}/routes", ["spark-llama", "frontier", "spark-llama"]), "capabilities.classify-fast.routes[2]: lists backend 'spark-llama' twice (also routes[0])"),
    (set_key(f"{CAP}/routes", ["spark-llama", 7]), "capabilities.classify-fast.routes[1]: must be a backend slug, not a whole number"),
    (set_key(f"{CAP}/privacy", "local_only"), "capabilities.classify-fast.routes[1]: backend 'frontier' is hosted and capability 'classify-fast' is local_only"),
]


@pytest.mark.parametrize(("mutate", "expected"), REJECTED, ids=[expected.split(": ")[0] for _, expected in REJECTED])
def test_it_rejects_a_bad_file_naming_the_key_and_changing_nothing(
    existing: PolicyRevision, mutate: Callable[[dict[str, Any]], None], expected: str
) -> None:
    data = design_data()
    mutate(data)
    before = state()
    problems = problems_of(dump(data))
    assert any(expected in problem for problem in problems), problems
    assert state() == before


def test_it_never_repeats_a_pasted_key(existing: PolicyRevision) -> None:
    data = design_data()
    data["backends"]["frontier"]["secret"] = "sk-live-abc123"
    assert "sk-live-abc123" not in "\n".join(problems_of(dump(data)))


def test_it_reports_every_problem_at_once(existing: PolicyRevision) -> None:
    data = design_data()
    data["backends"]["frontier"]["secret"] = "sk-live-abc123"
    data["backends"]["spark-llama"]["timeout_s"] = -1
    data["capabilities"]["classify-fast"]["verify"] = {"kind": "regex", "pattern": "("}
    data["capabilities"]["classify-fast"]["routes"].append("nope")
    data["colour"] = "red"
    problems = problems_of(dump(data))
    keys = [problem.split(": ", 1)[0] for problem in problems]
    assert sorted(keys) == sorted(
        [
            "colour",
            "backends.frontier.secret",
            "backends.spark-llama.timeout_s",
            "capabilities.classify-fast.verify.pattern",
            "capabilities.classify-fast.routes[3]",
        ]
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file names no [backends] and no [capabilities]"),
        ("backends = 3", "backends: must be a table, not a whole number"),
        ("[backends]\nlocal = 'ollama'", "backends.local: must be a table, not a string"),
    ],
)
def test_it_rejects_a_file_of_the_wrong_shape(text: str, expected: str) -> None:
    assert expected in problems_of(text)


def test_it_checks_routes_against_the_state_the_file_leaves_behind(existing: PolicyRevision) -> None:
    """A backend turning hosted and its capability turning hosted_allowed in the same file is
    fine, although either change alone would break the privacy rule."""
    import_policy(
        text="""
        [backends.edge]
        adapter = "ollama"
        base_url = "http://127.0.0.1:11434"
        model = "llama3.1:8b"
        locality = "local"

        [capabilities.private]
        intent = "generation"
        privacy = "local_only"
        routes = ["edge"]
        """
    )
    import_policy(
        text="""
        [backends.edge]
        adapter = "openai"
        base_url = "https://edge.example.com/v1"
        model = "llama3.1:8b"
        locality = "hosted"

        [capabilities.private]
        intent = "generation"
        privacy = "hosted_allowed"
        routes = ["edge"]
        """
    )
    assert Backend.objects.get(slug="edge").locality == "hosted"
    assert Capability.objects.get(slug="private").privacy == "hosted_allowed"


def test_it_rejects_a_local_only_route_to_a_hosted_backend_that_is_only_in_the_registry(existing: PolicyRevision) -> None:
    before = state()
    problems = problems_of(
        """
        [capabilities.private]
        intent = "generation"
        privacy = "local_only"
        routes = ["spark-llama", "frontier"]
        """
    )
    assert problems == [
        "capabilities.private.routes[1]: backend 'frontier' is hosted and capability 'private' is local_only"
    ]
    assert state() == before


def test_it_rejects_making_a_backend_hosted_under_a_local_only_capability_not_in_the_file(existing: PolicyRevision) -> None:
    import_policy(text='[capabilities.private]\nintent = "generation"\nprivacy = "local_only"\nroutes = ["spark-llama"]\n')
    before = state()
    data = design_data()
    data["backends"]["spark-llama"]["locality"] = "hosted"
    problems = problems_of(dump({"backends": {"spark-llama": data["backends"]["spark-llama"]}}))
    assert problems == [
        "backends.spark-llama.locality: cannot be hosted: local_only capabilities not in this file route to "
        "this backend (private)"
    ]
    assert state() == before


def test_it_rejects_making_a_capability_local_only_under_a_pending_hosted_proposal(existing: PolicyRevision) -> None:
    Route.objects.create(
        capability=Capability.objects.get(slug="classify-fast"),
        backend=Backend.objects.get(slug="frontier"),
        position=9,
        status=Route.Status.APPROVED,
    )
    before = state()
    data = design_data()
    data["capabilities"]["classify-fast"]["privacy"] = "local_only"
    data["capabilities"]["classify-fast"]["routes"] = ["spark-llama"]
    problems = problems_of(dump(data))
    assert problems == [
        "capabilities.classify-fast.privacy: cannot be local_only while proposed or approved routes go to "
        "hosted backends (frontier)"
    ]
    assert state() == before


def test_it_accepts_routes_to_backends_already_in_the_registry(existing: PolicyRevision) -> None:
    import_policy(text='[capabilities.lookup]\nintent = "lookup"\nprivacy = "hosted_allowed"\nroutes = ["frontier"]\n')
    assert build_snapshot()["capabilities"]["lookup"]["routes"] == ["frontier"]


def test_it_reports_nothing_for_a_valid_file() -> None:
    assert check_policy(data=design_data()) == []
    assert check_policy(data=tomllib.loads(RICH)) == []


def test_it_does_not_mutate_the_data_it_is_given() -> None:
    data = design_data()
    original = copy.deepcopy(data)
    apply_policy(data=data, author="import")
    assert data == original


def test_it_reports_a_value_of_the_wrong_type_once(existing: PolicyRevision) -> None:
    data = design_data()
    data["backends"]["keyword-triage"]["config"] = "urgent=down"
    data["capabilities"]["classify-fast"]["verify"] = "one_of"
    data["capabilities"]["classify-fast"]["fallback_on"] = "timeout"
    assert problems_of(dump(data)) == [
        "backends.keyword-triage.config: must be a table, not a string",
        "capabilities.classify-fast.fallback_on: must be a list of error classes, not a string",
        "capabilities.classify-fast.verify: must be a table with a kind, not a string",
    ]
