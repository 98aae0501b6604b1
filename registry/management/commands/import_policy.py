from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from registry.policy_file import PolicyFileError, import_policy


class Command(BaseCommand):
    help = (
        "Create or update backends, capabilities and their active routes from a TOML policy file, "
        "as one policy revision. An invalid file changes nothing and every problem is listed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="the policy file (TOML)")

    def handle(self, *args: Any, file: Path, **options: Any) -> None:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"{file}: cannot be read ({exc.__class__.__name__}: {exc})") from None
        try:
            revision = import_policy(text=text, author="import")
        except PolicyFileError as exc:
            count = len(exc.problems)
            # One problem a line, so the output greps and diffs like a linter's.
            raise CommandError(
                "\n".join([f"{file}: {count} problem{'s' if count != 1 else ''}, nothing imported", *exc.problems])
            ) from None
        self.stdout.write(f"{file}: imported as policy revision {revision.number}")
        self.stdout.write(revision.summary)
