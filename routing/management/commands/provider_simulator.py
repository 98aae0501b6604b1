"""`manage.py provider_simulator --port 8765`: serve the provider simulator until Ctrl-C, so a
development console can route to "providers" that fail on demand."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from routing.simulator import ProviderSimulator


class Command(BaseCommand):
    help = "Serve the provider simulator (OpenAI, Anthropic and Ollama wire formats, faults chosen by the URL) until Ctrl-C."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8765, help="port to listen on (0: any free port)")
        parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")

    def handle(self, *args: Any, port: int, host: str, verbosity: int, **options: Any) -> None:
        # At -v 2 every request is printed, with key= values masked.
        log = (lambda line: self.stdout.write(line)) if verbosity >= 2 else None
        simulator = ProviderSimulator(host=host, port=port, log=log).bind()
        self.stdout.write(f"provider simulator at {simulator.url}")
        self.stdout.write(
            "base_url: openai "
            + simulator.base_url("openai", "answer=urgent")
            + ", anthropic "
            + simulator.base_url("anthropic", "delay=300,echo")
            + ", ollama "
            + simulator.base_url("ollama", "status=503")
        )
        self.stdout.write(f"calls: GET {simulator.url}/_sim/calls, reset: POST {simulator.url}/_sim/reset. Ctrl-C stops.")
        try:
            simulator.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            simulator.stop()
