from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from registry.models import Backend, Capability, PolicyRevision
from registry.policy_file import PolicyFileError, import_policy
from registry.roles import OPERATORS, REVIEWERS, ensure_roles

DEMO_POLICY = Path(__file__).resolve().parents[2] / "demo" / "demo_policy.toml"
DEMO_USERS = (("operator", OPERATORS), ("reviewer", REVIEWERS))


class Command(BaseCommand):
    help = (
        "Load the demo registry and capabilities into an empty console, and create the operators "
        "and reviewers groups with one demo user each. Safe to run again: it changes nothing then."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            groups = ensure_roles()
            created_users = self._users(groups=groups)
            revision = self._policy()
        for username, password in created_users:
            # Shown once: only a hash is kept, so a lost password is reset with changepassword.
            self.stdout.write(f"created user {username!r} with password {password}")

    def _users(self, *, groups: dict[str, Any]) -> list[tuple[str, str]]:
        User = get_user_model()
        created = []
        for username, group_name in DEMO_USERS:
            if User.objects.filter(username=username).exists():
                self.stdout.write(f"user {username!r} already exists; its password is unchanged")
                continue
            password = secrets.token_urlsafe(12)
            # Staff, so both can sign in to /admin/; what they may do there comes from the group.
            user = User.objects.create_user(username=username, password=password, is_staff=True)
            user.groups.add(groups[group_name])
            created.append((username, password))
        return created

    def _policy(self) -> PolicyRevision | None:
        # Only into an empty console: `make run` calls this every time, and a second load would
        # undo whatever an operator has changed since.
        latest = PolicyRevision.objects.order_by("-number").first()
        if latest is not None or Backend.objects.exists() or Capability.objects.exists():
            number = f" (revision {latest.number})" if latest else ""
            self.stdout.write(
                f"a policy is already in place{number}; demo policy not loaded "
                f"(to reset it: manage.py import_policy {DEMO_POLICY})"
            )
            return None
        try:
            revision = import_policy(text=DEMO_POLICY.read_text(encoding="utf-8"), author="demo")
        except PolicyFileError as exc:
            raise CommandError("\n".join([f"{DEMO_POLICY}: the demo policy is invalid", *exc.problems])) from None
        self.stdout.write(f"demo policy loaded as revision {revision.number}: {revision.summary}")
        return revision
