from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from registry.policy_file import PolicyFileError, export_policy


class Command(BaseCommand):
    help = "Print the current policy (backends, capabilities, active routes) as a TOML policy file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", "-o", type=Path, help="write to this file instead of stdout")

    def handle(self, *args: Any, output: Path | None, **options: Any) -> None:
        try:
            text = export_policy()
        except PolicyFileError as exc:
            raise CommandError("\n".join(["the policy cannot be exported as TOML", *exc.problems])) from None
        if output is None:
            self.stdout.write(text, ending="")
            return
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"{output}: cannot be written ({exc.__class__.__name__}: {exc})") from None
        self.stdout.write(f"policy written to {output}")
