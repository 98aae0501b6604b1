from __future__ import annotations

from tests.routing.conftest import sim, simulator  # noqa: F401  (the provider simulator fixtures)
