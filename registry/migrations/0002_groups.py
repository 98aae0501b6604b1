"""Create the operators and reviewers groups with their registry permissions."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.management import create_permissions
from django.db import migrations

# Frozen here rather than imported from registry.roles: a migration must do tomorrow what it did
# the day it was written.
ROLE_PERMISSIONS = {
    "operators": (
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
    "reviewers": ("view_backend", "view_capability", "view_route", "view_policyrevision"),
}


def create_groups(apps: Any, schema_editor: Any) -> None:
    # Permissions are normally created after the last migration (post_migrate), too late for
    # this one on a fresh database; create the registry's now. The migration state's app config
    # has no models module, which create_permissions takes to mean "no models".
    app_config = apps.get_app_config("registry")
    missing = not getattr(app_config, "models_module", None)
    if missing:
        app_config.models_module = True
    try:
        create_permissions(app_config, apps=apps, verbosity=0)
    finally:
        if missing:
            app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(
            *Permission.objects.filter(content_type__app_label="registry", codename__in=codenames)
        )


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        # Reversing leaves the groups: they may have members by then, and dropping them would
        # silently take access away.
        migrations.RunPython(create_groups, migrations.RunPython.noop),
    ]
