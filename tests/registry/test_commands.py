from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import CommandError

from registry.models import Backend, Capability, PolicyRevision, Route
from registry.policy import build_snapshot
from registry.policy_file import check_policy, export_policy, import_policy
from registry.roles import ROLE_PERMISSIONS, ensure_roles

pytestmark = pytest.mark.django_db

DEMO = Path(settings.BASE_DIR) / "registry" / "demo" / "demo_policy.toml"

POLICY = """
[backends.local]
adapter = "ollama"
base_url = "http://127.0.0.1:11434"
model = "llama3.1:8b"
locality = "local"

[backends.triage]
adapter = "tool"
tool = "keyword_classifier"
locality = "local"
config = { labels = { urgent = ["down"] }, default = "other" }

[capabilities.classify]
intent = "classification"
privacy = "local_only"
verify = { kind = "one_of", values = ["urgent", "other"] }
routes = ["local", "triage"]
"""

BAD_POLICY = """
[backends.local]
adapter = "ollama"
model = "llama3.1:8b"
locality = "local"
secret = "sk-live-abc"
timeout_s = 0

[capabilities.classify]
intent = "classification"
privacy = "local_only"
routes = ["local", "nope"]
"""


def run(*args: str, **options: object) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def counts() -> tuple[int, ...]:
    return tuple(m.objects.count() for m in (Backend, Capability, Route, PolicyRevision))


def test_it_imports_a_policy_file_and_names_the_revision(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY, encoding="utf-8")
    out, _ = run("import_policy", str(path))
    revision = PolicyRevision.objects.get()
    assert revision.author == "import"
    assert f"imported as policy revision {revision.number}" in out
    assert "backends 2 created" in out
    assert build_snapshot()["capabilities"]["classify"]["routes"] == ["local", "triage"]


def test_it_refuses_a_bad_file_listing_every_problem_and_changing_nothing(tmp_path: Path) -> None:
    import_policy(text=POLICY)
    before = counts()
    path = tmp_path / "bad.toml"
    path.write_text(BAD_POLICY, encoding="utf-8")
    with pytest.raises(CommandError) as excinfo:
        run("import_policy", str(path))
    lines = str(excinfo.value).splitlines()
    assert lines[0] == f"{path}: 4 problems, nothing imported"
    assert [line.split(":", 1)[0] for line in lines[1:]] == [
        "backends.local.base_url",
        "backends.local.secret",
        "backends.local.timeout_s",
        "capabilities.classify.routes[1]",
    ]
    assert counts() == before


def test_it_refuses_a_file_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="absent.toml: cannot be read"):
        run("import_policy", str(tmp_path / "absent.toml"))
    assert counts() == (0, 0, 0, 0)


def test_it_exits_non_zero_with_one_problem_a_line(tmp_path: Path) -> None:
    """The command as an operator runs it, against a database of its own."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DEBUG="1", FOS_TESTING="0", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    env["DJANGO_SETTINGS_MODULE"] = "fos_console.settings"
    manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
    migrate = subprocess.run([*manage, "migrate", "--noinput", "--skip-checks"], env=env, capture_output=True, text=True, timeout=120)
    assert migrate.returncode == 0, migrate.stderr
    path = tmp_path / "bad.toml"
    path.write_text(BAD_POLICY, encoding="utf-8")
    result = subprocess.run([*manage, "import_policy", str(path)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "sk-live-abc" not in result.stderr
    for key in ("backends.local.base_url:", "backends.local.secret:", "backends.local.timeout_s:", "capabilities.classify.routes[1]:"):
        assert any(line.startswith(key) for line in result.stderr.splitlines()), result.stderr


def test_it_exports_to_stdout_or_a_file(tmp_path: Path) -> None:
    import_policy(text=POLICY)
    out, _ = run("export_policy")
    assert out == export_policy()
    assert tomllib.loads(out) == build_snapshot()

    path = tmp_path / "exported.toml"
    out, _ = run("export_policy", "--output", str(path))
    assert path.read_text(encoding="utf-8") == export_policy()
    assert f"policy written to {path}" in out


def test_it_round_trips_through_the_commands(tmp_path: Path) -> None:
    import_policy(text=DEMO.read_text(encoding="utf-8"))
    path = tmp_path / "exported.toml"
    run("export_policy", "--output", str(path))
    snapshot = build_snapshot()
    Route.objects.all().delete()
    Capability.objects.all().delete()
    Backend.objects.all().delete()
    run("import_policy", str(path))
    assert build_snapshot() == snapshot


def test_it_loads_the_demo_once() -> None:
    out, _ = run("load_demo")
    assert (Backend.objects.count(), Capability.objects.count()) == (5, 4)
    revision = PolicyRevision.objects.get()
    assert revision.author == "demo"
    passwords = dict(re.findall(r"created user '(\w+)' with password (\S+)", out))
    assert set(passwords) == {"operator", "reviewer"}
    for username, password in passwords.items():
        user = authenticate(username=username, password=password)
        assert user is not None and user.is_staff and not user.is_superuser

    before = (counts(), build_snapshot(), get_user_model().objects.count(), Group.objects.count())
    again, _ = run("load_demo")
    assert (counts(), build_snapshot(), get_user_model().objects.count(), Group.objects.count()) == before
    assert "user 'operator' already exists" in again
    assert "user 'reviewer' already exists" in again
    assert "demo policy not loaded" in again
    for password in passwords.values():
        assert password not in again


def test_it_leaves_an_existing_policy_alone() -> None:
    import_policy(text=POLICY)
    before = (counts(), build_snapshot())
    out, _ = run("load_demo")
    assert (counts(), build_snapshot()) == before
    assert "a policy is already in place (revision 1)" in out


def test_it_gives_the_demo_users_their_roles() -> None:
    run("load_demo")
    User = get_user_model()
    operator, reviewer = User.objects.get(username="operator"), User.objects.get(username="reviewer")
    assert list(operator.groups.values_list("name", flat=True)) == ["operators"]
    assert list(reviewer.groups.values_list("name", flat=True)) == ["reviewers"]
    for model in ("backend", "capability", "route"):
        for action in ("add", "change", "delete", "view"):
            assert operator.has_perm(f"registry.{action}_{model}")
        assert reviewer.has_perm(f"registry.view_{model}")
        assert not reviewer.has_perm(f"registry.change_{model}")
    assert operator.has_perm("registry.view_policyrevision")
    assert not operator.has_perm("registry.change_policyrevision")


def test_it_keeps_the_demo_within_its_own_rules() -> None:
    """The demo must work with no model and no key: every capability but the fail-closed one
    ends in a deterministic tool, and no local_only capability reaches a hosted backend."""
    data = tomllib.loads(DEMO.read_text(encoding="utf-8"))
    assert check_policy(data=data) == []
    backends = data["backends"]
    assert backends["local-llama"]["base_url"] == "http://127.0.0.1:11434"
    assert backends["openai-mini"]["secret"] == "env:OPENAI_API_KEY"
    for slug, capability in data["capabilities"].items():
        if capability.get("fallback") == "fail_closed":
            continue
        assert backends[capability["routes"][-1]]["adapter"] == "tool", slug


def test_it_creates_the_role_groups_in_a_migration() -> None:
    for name, codenames in ROLE_PERMISSIONS.items():
        group = Group.objects.get(name=name)
        assert set(group.permissions.values_list("codename", flat=True)) == set(codenames)


def test_it_ensures_the_roles_again_harmlessly() -> None:
    Group.objects.filter(name="reviewers").delete()
    ensure_roles()
    ensure_roles()
    assert Group.objects.filter(name__in=ROLE_PERMISSIONS).count() == 2
    reviewers = Group.objects.get(name="reviewers")
    assert set(reviewers.permissions.values_list("codename", flat=True)) == set(ROLE_PERMISSIONS["reviewers"])
