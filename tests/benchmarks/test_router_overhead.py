"""What routing.run adds on top of the provider call.

Each round makes one direct httpx call and one routed call to the same loopback upstream (the
provider simulator in a process of its own, answering at once), alternating so both see the
same machine noise. The route log is written durably (real commits, not a rolled-back test
transaction).
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import connection

from routing import run
from tests.routing.test_executor import classify

ROUNDS = 2000
WARMUP = 200


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    """The provider simulator as a separate process, so it does not share this one's GIL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "manage.py", "provider_simulator", "--port", str(port)],
        cwd=root,
        env={**os.environ, "DEBUG": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{url}/_sim/calls", timeout=0.5)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the provider simulator did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.bench
@pytest.mark.django_db(transaction=True)
def test_router_overhead(upstream: str, install_policy: Any) -> None:
    base_url = f"{upstream}/sim/answer=urgent/v1"
    install_policy(
        backends={"upstream": {"adapter": "openai", "locality": "local", "base_url": base_url, "model": "sim-model"}},
        capabilities={"classify": classify(["upstream"])},
    )
    url = base_url + "/chat/completions"
    body = {"model": "sim-model", "messages": [{"role": "user", "content": "the site is down"}]}
    direct_ms: list[float] = []
    routed_ms: list[float] = []
    with httpx.Client() as client:
        for i in range(WARMUP + ROUNDS):
            t0 = time.perf_counter()
            response = client.post(url, json=body)
            response.json()["choices"][0]["message"]["content"]
            t1 = time.perf_counter()
            result = run("classify", "the site is down")
            t2 = time.perf_counter()
            assert result.output == "urgent"
            if i >= WARMUP:
                direct_ms.append((t1 - t0) * 1000)
                routed_ms.append((t2 - t1) * 1000)
    overhead = [r - d for r, d in zip(routed_ms, direct_ms)]
    vendor = connection.vendor
    print(f"\nrouter overhead on {vendor} ({ROUNDS} rounds after {WARMUP} warm-up, durable route log)")
    for name, values in (("direct httpx", direct_ms), ("routing.run", routed_ms), ("difference", overhead)):
        print(f"  {name:13s} p50 {percentile(values, 50):7.3f} ms   p95 {percentile(values, 95):7.3f} ms")
    ratio = statistics.median(routed_ms) / statistics.median(direct_ms)
    print(f"  median ratio routed/direct: {ratio:.2f}")
