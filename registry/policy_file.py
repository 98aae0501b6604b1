"""The policy file: a TOML description of backends, capabilities and their active routes.

`import_policy` reads one (DESIGN.md, "Policy file"), `export_policy` writes the whole current
policy in the same shape. Import is all-or-nothing: the file is checked as a whole against the
state it would leave behind, every problem is reported with the key it belongs to, and only a
file without problems is written, in one transaction, as one policy revision.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import tomli_w
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction

from registry import contracts
from registry.models import LIVE_ROUTE_STATUSES, Backend, Capability, PolicyRevision, Route
from registry.policy import build_snapshot, record_revision

TOP_LEVEL_KEYS = ("backends", "capabilities")

# File key -> (model field, accepted Python types as parsed by tomllib, type description).
_NUMBER = (int, float)
_DECIMAL_FIELDS = ("cost_in_per_mtok", "cost_out_per_mtok", "max_cost_usd")
BACKEND_KEYS: dict[str, tuple[str, tuple[type, ...], str]] = {
    "adapter": ("adapter", (str,), "a string"),
    "locality": ("locality", (str,), "a string"),
    "base_url": ("base_url", (str,), "a string"),
    "model": ("model", (str,), "a string"),
    "tool": ("tool", (str,), "a string"),
    "config": ("config", (dict,), "a table"),
    "secret": ("secret_ref", (str,), "a string"),
    "cost_in_per_mtok": ("cost_in_per_mtok", _NUMBER, "a number"),
    "cost_out_per_mtok": ("cost_out_per_mtok", _NUMBER, "a number"),
    "timeout_s": ("timeout_s", _NUMBER, "a number"),
    "name": ("name", (str,), "a string"),
    "enabled": ("enabled", (bool,), "true or false"),
    "notes": ("notes", (str,), "a string"),
}
CAPABILITY_KEYS: dict[str, tuple[str, tuple[type, ...], str]] = {
    "intent": ("intent", (str,), "a string"),
    "privacy": ("privacy", (str,), "a string"),
    "routes": ("routes", (list,), "a list of backend slugs"),
    "name": ("name", (str,), "a string"),
    "max_cost_usd": ("max_cost_usd", _NUMBER, "a number"),
    "latency_budget_ms": ("latency_budget_ms", (int,), "a whole number"),
    "fallback": ("fallback", (str,), "a string"),
    "fallback_on": ("fallback_on", (list,), "a list of error classes"),
    "instructions": ("instructions", (str,), "a string"),
    "instructions_private": ("instructions_private", (bool,), "true or false"),
    "verify": ("verify", (dict,), "a table with a kind"),
    "log_input": ("log_input", (str,), "a string"),
}
BACKEND_FILE_KEY = {model_field: key for key, (model_field, _, _) in BACKEND_KEYS.items()}
CAPABILITY_FILE_KEY = {model_field: key for key, (model_field, _, _) in CAPABILITY_KEYS.items()}

_BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


class PolicyFileError(Exception):
    """A policy file that cannot be imported. `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class _Plan:
    """A checked file, as model field values with the defaults filled in."""

    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    capabilities: dict[str, dict[str, Any]] = field(default_factory=dict)
    routes: dict[str, list[str]] = field(default_factory=dict)


def _key(*parts: str | int) -> str:
    """A key path as it would be written in TOML: dotted, quoted where a bare key would not do."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if _BARE_KEY_RE.match(part) else '"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"'
            out += f".{text}" if out else text
    return out


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


def parse_policy(*, text: str) -> dict[str, Any]:
    """Parse TOML text; a syntax error becomes a PolicyFileError naming the line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyFileError([f"invalid TOML: {exc}"]) from None


def _typed_fields(
    *,
    entry: dict[str, Any],
    keys: dict[str, tuple[str, tuple[type, ...], str]],
    path: tuple[str, ...],
    problems: list[str],
) -> dict[str, Any]:
    """Model field values for the keys of one entry that are known and of the right type."""
    values: dict[str, Any] = {}
    for key, value in entry.items():
        if key not in keys:
            problems.append(f"{_key(*path, key)}: unknown key; known: {', '.join(keys)}")
            continue
        model_field, types, description = keys[key]
        # bool is an int in Python, but `timeout_s = true` is a mistake, not a number.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            problems.append(f"{_key(*path, key)}: must be {description}, not {_type_name(value)}")
            continue
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{_key(*path, key)}: must be a finite number")
            continue
        if model_field in _DECIMAL_FIELDS:
            # Through str(), so 0.15 stays 0.15 instead of the float's long binary expansion.
            value = Decimal(str(value))
        elif model_field == "timeout_s":
            value = float(value)
        values[model_field] = value
    return values


def _check_choice(
    *, values: dict[str, Any], model_field: str, choices: Any, path: tuple[str, ...], problems: list[str]
) -> None:
    if model_field in values and values[model_field] not in choices.values:
        problems.append(
            f"{_key(*path)}: unknown value {values[model_field]!r}; known: {', '.join(choices.values)}"
        )
        del values[model_field]


def _model_problems(
    *, instance: Backend | Capability, file_key: dict[str, str], path: tuple[str, ...], problems: list[str]
) -> None:
    """Field-level checks from the model (slug format, URLs, lengths, ranges, decimal places).

    Run on an unsaved instance so the model's cross-row checks, which read the database as it is
    now, stay out of it: the file is checked against the state it leaves behind, below. A key that
    already has a problem from the file's own checks is not reported twice.
    """
    try:
        instance.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        for model_field, messages in exc.message_dict.items():
            if model_field in (NON_FIELD_ERRORS, "slug"):
                # The slug is the entry's own key, so its problems belong to the entry.
                for message in messages:
                    problems.append(f"{_key(*path)}: {message}")
                continue
            key_path = _key(*path, file_key.get(model_field, model_field))
            if any(p == key_path or p.startswith((key_path + ":", key_path + ".", key_path + "[")) for p in problems):
                continue
            for message in messages:
                problems.append(f"{key_path}: {message}")


def _check_backend(*, slug: str, entry: Any, problems: list[str]) -> dict[str, Any] | None:
    path = ("backends", slug)
    if not isinstance(entry, dict):
        problems.append(f"{_key(*path)}: must be a table, not {_type_name(entry)}")
        return None
    values = _typed_fields(entry=entry, keys=BACKEND_KEYS, path=path, problems=problems)
    for required in ("adapter", "locality"):
        if required not in entry:
            problems.append(f"{_key(*path, required)}: missing required key")
    _check_choice(values=values, model_field="adapter", choices=Backend.Adapter, path=(*path, "adapter"), problems=problems)
    _check_choice(
        values=values, model_field="locality", choices=Backend.Locality, path=(*path, "locality"), problems=problems
    )
    adapter = values.get("adapter")
    if adapter == Backend.Adapter.TOOL:
        if "tool" not in entry:
            problems.append(f"{_key(*path, 'tool')}: missing required key for the tool adapter")
        for key in ("base_url", "model"):
            if key in entry:
                problems.append(f"{_key(*path, key)}: only HTTP backends take {key}; tool backends name a tool")
        if isinstance(values.get("tool"), str):
            # A config of the wrong type is reported already; its contents cannot be judged.
            config = values.get("config", {}) if "config" in values or "config" not in entry else None
            _check_tool_config(tool=values["tool"], config=config, path=path, problems=problems)
    elif adapter in Backend.HTTP_ADAPTERS:
        for key in ("base_url", "model"):
            if key not in entry:
                problems.append(f"{_key(*path, key)}: missing required key for the {adapter} adapter")
        for key in ("tool", "config"):
            if key in entry:
                problems.append(f"{_key(*path, key)}: only tool backends take {key}")
    if isinstance(values.get("secret_ref"), str):
        for problem in contracts.validate_secret_ref(values["secret_ref"]):
            problems.append(f"{_key(*path, 'secret')}: {problem}")
    # Every key the file leaves out takes its default, so the file alone describes the backend.
    fields = {
        "name": "",
        "base_url": "",
        "model": "",
        "tool": "",
        "config": {},
        "secret_ref": "",
        "cost_in_per_mtok": Decimal("0"),
        "cost_out_per_mtok": Decimal("0"),
        "timeout_s": 30.0,
        "enabled": True,
        "notes": "",
        **values,
    }
    _model_problems(instance=Backend(slug=slug, **fields), file_key=BACKEND_FILE_KEY, path=path, problems=problems)
    return fields


def _check_tool_config(
    *, tool: str, config: dict[str, Any] | None, path: tuple[str, ...], problems: list[str]
) -> None:
    if tool not in contracts.TOOL_CONFIG_KEYS:
        problems.append(f"{_key(*path, 'tool')}: unknown tool {tool!r}; known: {', '.join(contracts.TOOL_CONFIG_KEYS)}")
        return
    if config is None:
        return
    required, optional = contracts.TOOL_CONFIG_KEYS[tool]
    shape_problems = [
        f"{_key(*path, 'config', key)}: missing required key for the {tool} tool" for key in sorted(required - set(config))
    ]
    shape_problems += [
        f"{_key(*path, 'config', key)}: unknown key; {tool} takes {', '.join(sorted(required | optional))}"
        for key in sorted(set(config) - required - optional)
    ]
    if shape_problems:
        problems += shape_problems
        return
    for problem in contracts.validate_tool_config(tool, config):
        problems.append(f"{_key(*path, 'config')}: {problem}")


def _check_verify(*, rule: dict[str, Any], path: tuple[str, ...], problems: list[str]) -> None:
    kind = rule.get("kind")
    if kind not in contracts.VERIFY_KINDS:
        what = "missing required key" if "kind" not in rule else f"unknown verification kind {kind!r}"
        problems.append(f"{_key(*path, 'kind')}: {what}; known: {', '.join(contracts.VERIFY_KINDS)}")
        return
    params = contracts.VERIFY_KINDS[kind]
    shape_problems = [f"{_key(*path, key)}: missing required key for {kind}" for key in sorted(params - set(rule))]
    shape_problems += [
        f"{_key(*path, key)}: unknown key; {kind} takes {', '.join(['kind', *sorted(params)])}"
        for key in sorted(set(rule) - params - {"kind"})
    ]
    if shape_problems:
        problems += shape_problems
        return
    # Each kind takes at most one parameter, so what is left is a problem with that parameter.
    target = _key(*path, *sorted(params))
    for problem in contracts.validate_verify_rule(rule):
        problems.append(f"{target}: {problem}")


def _check_capability(*, slug: str, entry: Any, problems: list[str]) -> tuple[dict[str, Any], list[str]] | None:
    path = ("capabilities", slug)
    if not isinstance(entry, dict):
        problems.append(f"{_key(*path)}: must be a table, not {_type_name(entry)}")
        return None
    values = _typed_fields(entry=entry, keys=CAPABILITY_KEYS, path=path, problems=problems)
    for required in ("intent", "privacy", "routes"):
        if required not in entry:
            problems.append(f"{_key(*path, required)}: missing required key")
    for model_field, choices in (
        ("intent", Capability.Intent),
        ("privacy", Capability.Privacy),
        ("fallback", Capability.Fallback),
        ("log_input", Capability.LogInput),
    ):
        _check_choice(values=values, model_field=model_field, choices=choices, path=(*path, model_field), problems=problems)
    if "fallback_on" in values:
        for problem in contracts.validate_fallback_on(values["fallback_on"]):
            problems.append(f"{_key(*path, 'fallback_on')}: {problem}")
    if "verify" in values:
        _check_verify(rule=values["verify"], path=(*path, "verify"), problems=problems)
    routes: list[str] = []
    for index, backend_slug in enumerate(values.pop("routes", [])):
        if not isinstance(backend_slug, str):
            problems.append(f"{_key(*path, 'routes', index)}: must be a backend slug, not {_type_name(backend_slug)}")
            continue
        routes.append(backend_slug)
    fields = {
        "name": "",
        "max_cost_usd": None,
        "latency_budget_ms": 30_000,
        "fallback": Capability.Fallback.NEXT_ROUTE,
        "fallback_on": contracts.default_fallback_on(),
        "instructions": "",
        "instructions_private": False,
        "verify": contracts.default_verify(),
        "log_input": Capability.LogInput.HASH,
        **values,
    }
    _model_problems(
        instance=Capability(slug=slug, **fields), file_key=CAPABILITY_FILE_KEY, path=path, problems=problems
    )
    return fields, routes


def _check_routes(
    *, plan: _Plan, raw_routes: dict[str, list[Any]], invalid_backends: set[str], problems: list[str]
) -> None:
    """Check the routes against the state the import leaves behind: the file's backends and
    capabilities as written, everything else as it is in the database."""
    final_locality = dict(Backend.objects.values_list("slug", "locality"))
    final_locality.update({slug: fields.get("locality") for slug, fields in plan.backends.items()})

    for cap_slug, routes in raw_routes.items():
        privacy = plan.capabilities[cap_slug].get("privacy")
        seen: dict[str, int] = {}
        for index, backend_slug in enumerate(routes):
            if not isinstance(backend_slug, str):
                continue  # reported with the capability's own problems
            path = _key("capabilities", cap_slug, "routes", index)
            if backend_slug in seen:
                problems.append(f"{path}: lists backend {backend_slug!r} twice (also routes[{seen[backend_slug]}])")
                continue
            seen[backend_slug] = index
            if backend_slug in invalid_backends:
                continue  # its own problems are reported; judging a route on them would only add noise
            if backend_slug not in final_locality:
                problems.append(f"{path}: unknown backend {backend_slug!r} (neither in this file nor in the registry)")
                continue
            if privacy == Capability.Privacy.LOCAL_ONLY and final_locality[backend_slug] == Backend.Locality.HOSTED:
                problems.append(f"{path}: backend {backend_slug!r} is hosted and capability {cap_slug!r} is local_only")

    # Routes the import keeps: every live route of capabilities not in the file, and the proposed
    # or approved (not yet active) routes of those in it. None of them may join a local_only
    # capability to a hosted backend once the file's changes are made.
    kept = Route.objects.filter(status__in=LIVE_ROUTE_STATUSES).values_list(
        "capability__slug", "capability__privacy", "backend__slug", "status"
    )
    private_for_backend: dict[str, set[str]] = {}
    hosted_for_capability: dict[str, set[str]] = {}
    for cap_slug, db_privacy, backend_slug, status in kept:
        if cap_slug in plan.capabilities:
            if status == Route.Status.ACTIVE:
                continue  # replaced by the file's routes, checked above
            privacy = plan.capabilities[cap_slug].get("privacy")
        else:
            privacy = db_privacy
        if privacy != Capability.Privacy.LOCAL_ONLY or final_locality.get(backend_slug) != Backend.Locality.HOSTED:
            continue
        if cap_slug in plan.capabilities:
            hosted_for_capability.setdefault(cap_slug, set()).add(backend_slug)
        elif backend_slug in plan.backends:
            private_for_backend.setdefault(backend_slug, set()).add(cap_slug)
    for cap_slug, backends in sorted(hosted_for_capability.items()):
        problems.append(
            f"{_key('capabilities', cap_slug, 'privacy')}: cannot be local_only while proposed or approved routes "
            f"go to hosted backends ({', '.join(sorted(backends))})"
        )
    for backend_slug, capabilities in sorted(private_for_backend.items()):
        problems.append(
            f"{_key('backends', backend_slug, 'locality')}: cannot be hosted: local_only capabilities not in this "
            f"file route to this backend ({', '.join(sorted(capabilities))})"
        )


def _check(*, data: Any) -> tuple[_Plan, list[str]]:
    problems: list[str] = []
    plan = _Plan()
    if not isinstance(data, dict):
        return plan, ["the policy must be a TOML document"]
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.append(f"{_key(key)}: unknown key; known: {', '.join(TOP_LEVEL_KEYS)}")
    if not any(key in data for key in TOP_LEVEL_KEYS):
        problems.append("the file names no [backends] and no [capabilities]")
    for section in TOP_LEVEL_KEYS:
        if section in data and not isinstance(data[section], dict):
            problems.append(f"{section}: must be a table, not {_type_name(data[section])}")
    backends = data.get("backends") if isinstance(data.get("backends"), dict) else {}
    capabilities = data.get("capabilities") if isinstance(data.get("capabilities"), dict) else {}
    invalid_backends: set[str] = set()
    for slug, entry in backends.items():
        before = len(problems)
        fields = _check_backend(slug=slug, entry=entry, problems=problems)
        if fields is None or len(problems) > before:
            invalid_backends.add(slug)
        else:
            plan.backends[slug] = fields
    raw_routes: dict[str, list[Any]] = {}
    for slug, entry in capabilities.items():
        checked = _check_capability(slug=slug, entry=entry, problems=problems)
        if checked is not None:
            plan.capabilities[slug], plan.routes[slug] = checked
            if isinstance(entry.get("routes"), list):
                raw_routes[slug] = entry["routes"]
    _check_routes(plan=plan, raw_routes=raw_routes, invalid_backends=invalid_backends, problems=problems)
    return plan, problems


def check_policy(*, data: Any) -> list[str]:
    """Every problem with a parsed policy file, each naming its key; empty when it can be imported."""
    return _check(data=data)[1]


def _save_changed(obj: Backend | Capability, fields: dict[str, Any]) -> bool:
    changed = [name for name, value in fields.items() if getattr(obj, name) != value]
    for name in changed:
        setattr(obj, name, fields[name])
    if changed:
        obj.save(update_fields=[*changed, "updated_at"])
    return bool(changed)


def _count(created: int, changed: int, unchanged: int) -> str:
    return f"{created} created, {changed} changed, {unchanged} unchanged"


def apply_policy(*, data: Any, author: str) -> PolicyRevision:
    """Check a parsed policy file and, when it has no problems, write it as one revision.

    Backends and capabilities the file names are created or updated (keys it leaves out take their
    defaults); those it does not name are left alone. Each named capability's routes become the
    active ones, in the file's order; its other active routes are retired, not deleted, so route
    logs keep pointing at them. Raises PolicyFileError, having changed nothing, when the file has
    problems.
    """
    with transaction.atomic():
        # Checked inside the transaction, so the database state the file is judged against is the
        # one it is written onto.
        plan, problems = _check(data=data)
        if problems:
            raise PolicyFileError(problems)
        counts = {"backends": [0, 0, 0], "capabilities": [0, 0, 0]}
        backends: dict[str, Backend] = {}
        for slug, fields in plan.backends.items():
            backend = Backend.objects.filter(slug=slug).first()
            if backend is None:
                backends[slug] = Backend.objects.create(slug=slug, **fields)
                counts["backends"][0] += 1
            else:
                backends[slug] = backend
                counts["backends"][1 if _save_changed(backend, fields) else 2] += 1
        activated = reordered = retired = 0
        for slug, fields in plan.capabilities.items():
            capability = Capability.objects.filter(slug=slug).first()
            if capability is None:
                capability = Capability.objects.create(slug=slug, **fields)
                counts["capabilities"][0] += 1
            else:
                counts["capabilities"][1 if _save_changed(capability, fields) else 2] += 1
            current = list(
                capability.routes.filter(status=Route.Status.ACTIVE).select_related("backend").order_by("position", "id")
            )
            reusable: dict[str, Route] = {}
            for route in current:
                reusable.setdefault(route.backend.slug, route)
            kept: set[int] = set()
            for position, backend_slug in enumerate(plan.routes[slug]):
                route = reusable.get(backend_slug)
                if route is None:
                    backend = backends.get(backend_slug) or Backend.objects.get(slug=backend_slug)
                    Route.objects.create(
                        capability=capability, backend=backend, position=position, status=Route.Status.ACTIVE
                    )
                    activated += 1
                    continue
                kept.add(route.pk)
                if route.position != position:
                    route.position = position
                    route.save(update_fields=["position", "updated_at"])
                    reordered += 1
            for route in current:
                if route.pk not in kept:
                    route.status = Route.Status.RETIRED
                    route.save(update_fields=["status", "updated_at"])
                    retired += 1
        summary = (
            f"import: backends {_count(*counts['backends'])}; "
            f"capabilities {_count(*counts['capabilities'])}; "
            f"routes {activated} activated, {reordered} reordered, {retired} retired"
        )
        return record_revision(author=author, summary=summary)


def import_policy(*, text: str, author: str = "import") -> PolicyRevision:
    """Parse, check and apply policy file text; raises PolicyFileError listing every problem."""
    return apply_policy(data=parse_policy(text=text), author=author)


def _nulls(value: Any, path: tuple[str | int, ...]) -> list[str]:
    if value is None:
        return [_key(*path)]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nulls(v, (*path, str(k)))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nulls(v, (*path, i))]
    return []


EXPORT_HEADER = "# FOS Console policy. Load it with: manage.py import_policy FILE\n\n"


def export_policy() -> str:
    """The whole current policy as policy file text (active routes only, in order)."""
    snapshot = build_snapshot()
    # TOML has no null; a JSON schema or tool config edited in the admin may hold one, and
    # dropping it silently would export a different policy.
    nulls = _nulls(snapshot, ())
    if nulls:
        raise PolicyFileError([f"{path}: null cannot be written to TOML" for path in nulls])
    return EXPORT_HEADER + tomli_w.dumps(snapshot)
