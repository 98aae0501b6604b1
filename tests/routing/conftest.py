from __future__ import annotations

from collections.abc import Iterator

import pytest

from routing.adapters import close_all
from routing.simulator import ProviderSimulator


@pytest.fixture(scope="session")
def simulator() -> Iterator[ProviderSimulator]:
    """One provider simulator for the whole run: a real HTTP server on loopback."""
    simulator = ProviderSimulator().start()
    yield simulator
    close_all()
    simulator.stop()


@pytest.fixture
def sim(simulator: ProviderSimulator) -> ProviderSimulator:
    """The simulator with its call counters and fail_first state at zero."""
    simulator.reset()
    return simulator
