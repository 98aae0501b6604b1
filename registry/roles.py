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


def is_operator(user: object) -> bool:
    return bool(getattr(user, "is_authenticated", False)) and (
        getattr(user, "is_superuser", False) or user.groups.filter(name=OPERATORS).exists()  # type: ignore[attr-defined]
    )


def is_reviewer(user: object) -> bool:
    return bool(getattr(user, "is_authenticated", False)) and (
        getattr(user, "is_superuser", False) or user.groups.filter(name=REVIEWERS).exists()  # type: ignore[attr-defined]
    )


def console_context(request: object) -> dict[str, object]:
    """Template context: the signed-in user's role, so pages offer only what the role may do."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"console_role": "", "can_edit_policy": False, "can_review": False}
    # One query for both roles, cached on the request for the views that ask again.
    if not hasattr(request, "_console_groups"):
        request._console_groups = set(user.groups.values_list("name", flat=True))  # type: ignore[attr-defined]
    groups = request._console_groups  # type: ignore[attr-defined]
    operator = user.is_superuser or OPERATORS in groups
    reviewer = user.is_superuser or REVIEWERS in groups
    role = "operator" if operator else "reviewer" if reviewer else "viewer"
    return {"console_role": role, "can_edit_policy": operator, "can_review": reviewer}
