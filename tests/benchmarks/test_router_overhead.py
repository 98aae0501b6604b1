"""What routing.run adds on top of the provider call.

Each round makes one direct httpx call and one routed call to the same loopback upstream (the
provider simulator in a process of its own, answering at once), alternating so both see the
same machine noise. The route log is written durably (real commits, not a rolled-back test
transaction). The route-log write is also timed on its own inside each routed call, to show
how much of the overhead is the durable write and how much the router's own work.
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

from routing import log_store, run
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


def database() -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
            version = cursor.fetchone()[0].split()[0]
            cursor.execute("SHOW synchronous_commit")
            return f"PostgreSQL {version} (synchronous_commit={cursor.fetchone()[0]})"
        cursor.execute("SELECT sqlite_version()")
        return f"SQLite {cursor.fetchone()[0]}"


@pytest.mark.bench
@pytest.mark.django_db(transaction=True)
def test_router_overhead(upstream: str, install_policy: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    base_url = f"{upstream}/sim/answer=urgent/v1"
    install_policy(
        backends={"upstream": {"adapter": "openai", "locality": "local", "base_url": base_url, "model": "sim-model"}},
        capabilities={"classify": classify(["upstream"])},
    )
    url = base_url + "/chat/completions"
    body = {"model": "sim-model", "messages": [{"role": "user", "content": "the site is down"}]}
    direct_ms: list[float] = []
    routed_ms: list[float] = []
    write_ms: list[float] = []
    save = log_store.save

    def timed_save(*args: Any, **kwargs: Any) -> None:
        t = time.perf_counter()
        save(*args, **kwargs)
        write_ms.append((time.perf_counter() - t) * 1000)

    monkeypatch.setattr(log_store, "save", timed_save)
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
    write_ms = write_ms[WARMUP:]
    assert len(write_ms) == ROUNDS
    overhead = [r - d for r, d in zip(routed_ms, direct_ms)]
    own_work = [o - w for o, w in zip(overhead, write_ms)]
    print(f"\nrouter overhead on {database()} ({ROUNDS} rounds after {WARMUP} warm-up, durable route log)")
    for name, values in (
        ("direct httpx", direct_ms),
        ("routing.run", routed_ms),
        ("difference", overhead),
        ("  route-log write", write_ms),
        ("  the rest", own_work),
    ):
        print(f"  {name:18s} p50 {percentile(values, 50):7.3f} ms   p95 {percentile(values, 95):7.3f} ms")
    ratio = statistics.median(routed_ms) / statistics.median(direct_ms)
    print(f"  median ratio routed/direct: {ratio:.2f}")
