from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from routing.callers import create_caller


class Command(BaseCommand):
    help = "Create a caller and print its token, alone on stdout. The token is shown only once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="a slug naming the caller, e.g. billing-app")
        parser.add_argument("--rate-limit", type=int, default=None, help="requests per minute (default: none)")
        parser.add_argument(
            "--capability", action="append", default=[], help="a capability it may use (repeatable; default: all)"
        )

    def handle(self, *args: Any, name: str, rate_limit: int | None, capability: list[str], **options: Any) -> None:
        if rate_limit is not None and rate_limit < 1:
            raise CommandError("--rate-limit must be at least 1")
        try:
            _, token = create_caller(name=name, rate_limit_per_minute=rate_limit, capabilities=capability)
        except ValidationError as exc:
            problems = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
            raise CommandError(problems) from None
        self.stdout.write(token)
