"""The console's roles, as Django groups: operators edit policy, reviewers look and approve.

Migration 0002_groups creates them on a fresh database; `ensure_roles()` puts them back (and
adds any permission they lack) for `load_demo` and for tests that flush the database.
"""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission

OPERATORS = "operators"
REVIEWERS = "reviewers"

# Group -> permission codenames, all in the registry app.
ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    OPERATORS: (
        "add_backend",
        "change_backend",
        "delete_backend",
        "view_backend",
        "add_capability",
        "change_capability",
        "delete_capability",
        "view_capability",
        "add_route",
        "change_route",
        "delete_route",
        "view_route",
        "view_policyrevision",
    ),
    REVIEWERS: ("view_backend", "view_capability", "view_route", "view_policyrevision"),
}


def ensure_roles() -> dict[str, Group]:
    """Create the role groups if missing and give each its permissions; never removes any."""
    groups = {}
    for name, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        permissions = Permission.objects.filter(content_type__app_label="registry", codename__in=codenames)
        group.permissions.add(*permissions)
        groups[name] = group
    return groups
