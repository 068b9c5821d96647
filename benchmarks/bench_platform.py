"""Platform benchmark: end-to-end commands/s and latency, rebuild rate, beside raw limits.

    python3 -m uv run python benchmarks/bench_platform.py [--seconds 10] [--writers 32]

Everything is measured in one run on the same machine and the same infrastructure (embedded by
default; CUNZHI_DATABASE_URL and CUNZHI_KAFKA_BOOTSTRAP_SERVERS select external servers).
Aims on 2 cores: ≥ 3,000 single-event commands/s end to end; rebuild ≥ 60 % of the rate of
reading the same events plus COPY of the rows it produces (``bench_rebuild.py``, which also
measures a real service's read model).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shared" / "tests"))
from bench_rebuild import BATCH, floor, lines
from counting import Incremented, Tallies, registry
from cunzhi_platform.clock import SystemClock
from cunzhi_platform.consumer import Tx
from cunzhi_platform.eventstore import init_connection
from cunzhi_platform.infra import Endpoints, free_port, infrastructure
from cunzhi_platform.logging import configure_logging
from cunzhi_platform.rebuild import rebuild
from cunzhi_platform.runtime import Service, start, stop
from cunzhi_platform.settings import Settings
from cunzhi_platform.testing import eventually

APPLIED: dict[str, float] = {}


class TimedTallies(Tallies):
    """The tallies projection of the platform tests, batched, noting when each event landed."""

    def __init__(self, service: str) -> None:
        super().__init__(service, batch=True)

    async def apply(self, tx: Tx, event, envelope) -> None:
        # A batch that dedupes down to one event is applied singly: time it all the same.
        await self.apply_batch(tx, [(event, envelope)])

    async def apply_batch(self, tx: Tx, items) -> None:
        await super().apply_batch(tx, items)
        # Applied means committed: the consumer commits right after this returns.
        now = time.perf_counter()
        for _, envelope in items:
            APPLIED[envelope.id] = now


def _all_applied(appended: dict[str, float]):
    async def check() -> bool:
        return len(APPLIED) >= len(appended)

    return check


@contextlib.asynccontextmanager
async def service_process(module: str, ep: Endpoints) -> AsyncIterator[str]:
    """A service (``python -m <module>``) in its own process on ``ep``; yields its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "CUNZHI_DATABASE_URL": ep.database_url,
        "CUNZHI_KAFKA_BOOTSTRAP_SERVERS": ep.kafka_bootstrap_servers,
        "CUNZHI_HTTP_PORT": str(port),
        "CUNZHI_LOG_LEVEL": "WARNING",
        "CUNZHI_RELAY_POLL_INTERVAL_S": "0.1",
    }
    service = subprocess.Popen([sys.executable, "-m", module], env=env)  # noqa: ASYNC220
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as http:

            async def up() -> bool:
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            assert await eventually(up, timeout=60), f"{module} did not start"
        yield base
    finally:
        service.terminate()
        service.wait(30)


async def raw_commits(url: str, seconds: float, connections: int = 16) -> float:
    pool = await asyncpg.create_pool(url, min_size=connections, max_size=connections)
    await pool.execute("CREATE TABLE IF NOT EXISTS bench_raw (id bigserial, v text)")
    count, deadline = 0, time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal count
        async with pool.acquire() as conn:
            while time.perf_counter() < deadline:
                await conn.execute("INSERT INTO bench_raw (v) VALUES ('x')")
                count += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    await pool.execute("DROP TABLE bench_raw")
    await pool.close()
    return count / elapsed


async def raw_produce(bootstrap: str, messages: int = 100_000) -> float:
    from cunzhi_platform.kafka import ensure_topics

    await ensure_topics(bootstrap, ["bench.raw"], partitions=6, with_dlq=False)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024, acks="all"
    )
    await producer.start()
    value = b'{"counter": "c1", "amount": 1}'
    started = time.perf_counter()
    batch = 5000
    for start_at in range(0, messages, batch):
        futures = [
            await producer.send("bench.raw", value, key=f"k{i % 1000}".encode())
            for i in range(start_at, start_at + batch)
        ]
        await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    await producer.stop()
    return messages / elapsed


async def end_to_end(settings: Settings, seconds: float, writers: int):
    name = f"bench{os.getpid()}"
    consumer = TimedTallies(name)
    rt = await start(
        Service(name=name, registry=registry, consumers=[consumer]), settings, SystemClock()
    )
    relay = None
    if not settings.relay_in_process:
        env = {
            **os.environ,
            "CUNZHI_DATABASE_URL": settings.database_url or "",
            "CUNZHI_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "",
            "CUNZHI_LOG_LEVEL": "WARNING",
        }
        relay = subprocess.Popen(  # noqa: ASYNC220 — started once, before the load
            [sys.executable, "-m", "cunzhi_platform", "relay", "--service", name], env=env
        )
    appended: dict[str, float] = {}
    deadline = time.perf_counter() + seconds

    async def writer(w: int) -> None:
        version = 0
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            [stored] = await rt.store.append(
                f"counter:{w}", version, [Incremented(counter=str(w % 200), amount=1)]
            )
            appended[stored.envelope.id] = t0
            version += 1

    try:
        started = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(writers)))
        append_elapsed = time.perf_counter() - started
        await eventually(_all_applied(appended), timeout=60, interval=0.05)
        done_elapsed = time.perf_counter() - started
        latencies = sorted(APPLIED[i] - t for i, t in appended.items() if i in APPLIED)
        missing = len(appended) - len(latencies)
        assert not missing, f"{missing} of {len(appended)} events missing from the projection"
        total = len(appended)
        # Rebuild from the store while the service is up.
        t0 = time.perf_counter()
        folded = await rebuild(consumer, rt.store, batch_size=BATCH)
        rebuilt = {
            "events": folded,
            "rebuild_s": time.perf_counter() - t0,
            **await floor(settings.database_url or "", rt.store, consumer),
        }
    finally:
        if relay is not None:
            relay.terminate()
        await stop(rt)
    return {
        "commands": total,
        "append_rate": total / append_elapsed,
        "e2e_rate": total / done_elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "rebuilt": rebuilt,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--writers", type=int, default=32)
    parser.add_argument(
        "--relay-process",
        action="store_true",
        help="relay in its own process instead of the service's",
    )
    args = parser.parse_args()
    configure_logging("WARNING", json=False)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        base = Settings(data_dir=Path(tmp))
        endpoints = stack.enter_context(infrastructure(base))
        settings = base.model_copy(
            update={
                "database_url": endpoints.database_url,
                "kafka_bootstrap_servers": endpoints.kafka_bootstrap_servers,
                "relay_poll_interval_s": 0.1,
                "consumer_session_timeout_ms": 2000,
                "consumer_heartbeat_interval_ms": 300,
                "relay_in_process": not args.relay_process,
            }
        )
        url, bootstrap = endpoints.database_url, endpoints.kafka_bootstrap_servers
        conn = await asyncpg.connect(url)
        await init_connection(conn)
        cores = os.cpu_count()
        server = await conn.fetchval("SHOW server_version")
        await conn.close()
        print(
            f"machine: {cores} cores; PostgreSQL {server} ({endpoints.mode}); "
            f"Kafka {bootstrap} ({endpoints.mode})"
        )
        commits = await raw_commits(url, min(args.seconds, 5))
        produce = await raw_produce(bootstrap)
        result = await end_to_end(settings, args.seconds, args.writers)
    rows = [
        ("raw: asyncpg one-row commits, 16 connections", f"{commits:,.0f} /s", ""),
        ("raw: aiokafka batched produce", f"{produce:,.0f} msgs/s", ""),
        (
            "append (event store + outbox), single-event commands",
            f"{result['append_rate']:,.0f} /s",
            f"{result['append_rate'] / commits:.0%} of raw commits",
        ),
        (
            "end to end (append → relay → Kafka → projection)",
            f"{result['e2e_rate']:,.0f} /s",
            "aim ≥ 3,000 /s",
        ),
        ("latency append → projected, p50", f"{result['p50_ms']:,.1f} ms", ""),
        ("latency append → projected, p99", f"{result['p99_ms']:,.1f} ms", ""),
        *lines(result["rebuilt"]),
    ]
    print(
        f"{result['commands']:,} commands by {args.writers} writers in {args.seconds:.0f} s;"
        f" rebuild folded {result['rebuilt']['events']:,} events"
    )
    width = max(len(r[0]) for r in rows)
    for label, value, note in rows:
        print(f"  {label:<{width}}  {value:>18}  {note}")


if __name__ == "__main__":
    asyncio.run(main())
