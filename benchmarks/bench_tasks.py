"""Tasks benchmark: progress reports/s through the HTTP API and latency to the read model.

    python3 -m uv run python benchmarks/bench_tasks.py [--seconds 10] [--clients 32]

The rectification service runs as its own process (``cunzhi-rectification``) on the embedded
stack, tracking a campaign round's 364 targets in 45 villages (assigned in one call of
``assign_tasks``, as the campaign does); this process is the load: village secretaries
reporting progress over HTTP, each client on its own tasks (reports on one task are serialised
by its stream version). Printed beside the raw limits of the same machine measured in the same
run (asyncpg one-row commits, aiokafka batched produce).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from bench_platform import raw_commits, raw_produce, service_process
from cunzhi_platform.auth import Principal, TokenIssuer
from cunzhi_platform.clock import SystemClock, today
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.eventstore import EventStore
from cunzhi_platform.infra import infrastructure
from cunzhi_platform.runtime import connect_database
from cunzhi_platform.settings import Settings
from cunzhi_platform.testing import eventually
from cunzhi_rectification.application.tasks import assign_tasks
from cunzhi_rectification.domain.tasks import TaskDraft
from cunzhi_rectification.events import SERVICE, Assignee, registry

TARGETS, VILLAGES = 364, 45


async def seed(database_url: str, campaign: str, township: str) -> list[TaskDraft]:
    start = today(SystemClock())
    drafts = [
        TaskDraft(
            task_id=f"{campaign}-{n:03d}",
            source="campaign_target",
            township_id=township,
            village_id=f"{campaign}-v{n % VILLAGES:02d}",
            assignee=Assignee(kind="village", id=f"{campaign}-v{n % VILLAGES:02d}"),
            title=f"整顿目标{n}",
            starts_on=start,
            due_on=start + dt.timedelta(days=365),
            campaign_id=campaign,
            area="班子队伍建设",
        )
        for n in range(TARGETS)
    ]
    pool = await connect_database(database_url)
    try:
        store = EventStore(pool, SERVICE, registry, SystemClock())
        await assign_tasks(store, drafts, CommandContext(actor="bench"))
    finally:
        await pool.close()
    return drafts


async def load(
    base: str,
    headers: dict[str, dict[str, str]],
    drafts: list[TaskDraft],
    seconds: float,
    clients: int,
    percent: dict[str, int],
    wait_visible: bool,
) -> tuple[int, float, list[float]]:
    latencies: list[float] = []
    count = 0
    deadline = time.perf_counter() + seconds

    async def client(c: int, http: httpx.AsyncClient) -> None:
        nonlocal count
        mine = drafts[c::clients]
        n = 0
        while time.perf_counter() < deadline:
            task = mine[n % len(mine)]
            n += 1
            percent[task.task_id] += 1
            village = headers[task.assignee.id]
            t0 = time.perf_counter()
            r = await http.post(
                f"/tasks/{task.task_id}/progress",
                headers=village,
                json={"percent": percent[task.task_id], "note": "按计划推进"},
            )
            r.raise_for_status()
            count += 1
            if wait_visible:
                expected = percent[task.task_id]

                async def visible(
                    task_id: str = task.task_id, want: int = expected, auth: dict = village
                ) -> bool:
                    r = await http.get(f"/tasks/{task_id}", headers=auth)
                    return r.status_code == 200 and r.json()["percent"] >= want

                await eventually(visible, 30, 0.002)
                latencies.append(time.perf_counter() - t0)

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(c, http) for c in range(clients)))
        return count, time.perf_counter() - started, latencies


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, infrastructure(Settings(data_dir=Path(tmp))) as ep:
        settings = Settings(
            database_url=ep.database_url, kafka_bootstrap_servers=ep.kafka_bootstrap_servers
        )
        issuer = TokenIssuer(settings.jwt_secret, settings.jwt_algorithm, settings.jwt_audience)
        async with service_process("cunzhi_rectification.main", ep) as base:
            campaign, township = f"bench-{uuid.uuid4().hex[:6]}", "bincheng-town"
            assigned = time.perf_counter()
            drafts = await seed(ep.database_url, campaign, township)
            county = {
                "Authorization": "Bearer "
                + issuer.issue(
                    Principal(sub="county", roles=frozenset({"county_organisation_department"}))
                )
            }
            async with httpx.AsyncClient(base_url=base, headers=county) as http:

                async def tracked() -> bool:
                    r = await http.get(f"/tasks?campaign_id={campaign}&limit=1")
                    return r.status_code == 200 and r.json()["total"] == TARGETS

                assert await eventually(tracked, timeout=60), "the targets did not show"
            seeded = time.perf_counter() - assigned
            headers = {
                village: {
                    "Authorization": "Bearer "
                    + issuer.issue(
                        Principal(
                            sub=f"secretary-{village}",
                            roles=frozenset({"village_secretary"}),
                            village_ids=frozenset({village}),
                        )
                    )
                }
                for village in {d.assignee.id for d in drafts}
            }
            percent = {d.task_id: 0 for d in drafts}
            done, elapsed, _ = await load(
                base, headers, drafts, args.seconds, args.clients, percent, wait_visible=False
            )
            _, _, latencies = await load(
                base,
                headers,
                drafts,
                args.seconds / 2,
                max(args.clients // 4, 1),
                percent,
                wait_visible=True,
            )
            commits = await raw_commits(ep.database_url, 3)
            produce = await raw_produce(ep.kafka_bootstrap_servers, 50_000)
    latencies.sort()
    print(
        f"machine: {os.cpu_count()} cores; embedded PostgreSQL and Tansu; service in its "
        "own process, HTTP over loopback"
    )
    print(f"  {TARGETS} targets assigned in one call, all in the read model  {seeded:>7,.1f} s")
    print(
        f"  progress reports through HTTP, {args.clients} clients  {done / elapsed:>8,.0f} /s"
        f"  ({done:,} in {elapsed:.1f} s, load from httpx)"
    )
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"  report → visible in the read model, p50     {p50:>10,.1f} ms")
    print(f"  report → visible in the read model, p99     {p99:>10,.1f} ms")
    print(f"  raw: asyncpg one-row commits, 16 connections {commits:>10,.0f} /s")
    print(f"  raw: aiokafka batched produce                {produce:>10,.0f} msgs/s")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    asyncio.run(main())
