"""Topics benchmark: submissions/s through the HTTP API and latency to the read model.

    python3 -m uv run python benchmarks/bench_topics.py [--seconds 10] [--clients 32]

The topics service runs as its own process (``cunzhi-topics``) on the embedded stack; this
process is the load: HTTP clients over TCP. Printed beside the raw limits of the same machine
measured in the same run (asyncpg one-row commits, aiokafka batched produce).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from bench_platform import raw_commits, raw_produce, service_process
from cunzhi_meetings.events import Discussion, ForumPlanned
from cunzhi_platform.auth import Principal, TokenIssuer
from cunzhi_platform.clock import SHANGHAI
from cunzhi_platform.envelope import Envelope
from cunzhi_platform.infra import infrastructure
from cunzhi_platform.kafka import ensure_topics, make_broker
from cunzhi_platform.settings import Settings
from cunzhi_platform.testing import eventually

VILLAGES = [f"v{i:02d}" for i in range(19)]


async def open_call(bootstrap: str, township: str, forum: str) -> None:
    """Plan a forum eight days ahead, as meetings would: its call for topics opens at once."""
    event = ForumPlanned(
        forum_id=forum,
        township_id=township,
        number=1,
        date=dt.datetime.now(SHANGHAI).date() + dt.timedelta(days=8),
        place="乡政府会议室",
        mode="at_township",
        activities=(Discussion(),),
    )
    envelope = Envelope.new(
        type=event.event_type,
        source="/cunzhi/meetings",
        subject=f"forum:{township}:1",
        time=dt.datetime.now(SHANGHAI),
    )
    await ensure_topics(bootstrap, ["cunzhi.meetings.events"], partitions=6)
    broker = make_broker(bootstrap, client_id="bench")
    await broker.connect()
    try:
        await broker.publish(
            event.model_dump_json().encode(),
            "cunzhi.meetings.events",
            key=envelope.subject.encode(),
            headers={k: v.decode() for k, v in envelope.to_headers()},
        )
    finally:
        await broker.stop()


def _visible(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> Any:
    async def check() -> bool:
        return (await http.get(url, headers=headers)).status_code == 200

    return check


async def load(
    base: str,
    settings: Settings,
    township: str,
    forum: str,
    seconds: float,
    clients: int,
    wait_visible: bool,
) -> tuple[int, float, list[float]]:
    issuer = TokenIssuer(settings.jwt_secret, settings.jwt_algorithm, settings.jwt_audience)
    headers = {
        v: {
            "Authorization": "Bearer "
            + issuer.issue(
                Principal(
                    sub=f"secretary-{v}",
                    roles=frozenset({"village_secretary"}),
                    township_ids=frozenset({township}),
                    village_ids=frozenset({v}),
                )
            )
        }
        for v in VILLAGES
    }
    latencies: list[float] = []
    count = 0
    deadline = time.perf_counter() + seconds

    async def client(c: int, http: httpx.AsyncClient) -> None:
        nonlocal count
        village = VILLAGES[c % len(VILLAGES)]
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            r = await http.post(
                f"/townships/{township}/calls/{forum}/topics",
                headers=headers[village],
                json={
                    "title": f"议题 {uuid.uuid4().hex[:8]}",
                    "description": "流动党员管理难",
                    "category": "member_management",
                    "village_ids": [village],
                },
            )
            r.raise_for_status()
            count += 1
            if wait_visible:
                topic = r.json()["topic_id"]
                await eventually(_visible(http, f"/topics/{topic}", headers[village]), 30, 0.002)
                latencies.append(time.perf_counter() - t0)

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(c, http) for c in range(clients)))
        return count, time.perf_counter() - started, latencies


def with_wrk(
    base: str, settings: Settings, township: str, forum: str, args: argparse.Namespace
) -> tuple[int, float]:
    """Submissions by wrk: one village secretary posting as fast as the service answers."""
    issuer = TokenIssuer(settings.jwt_secret, settings.jwt_algorithm, settings.jwt_audience)
    token = issuer.issue(
        Principal(
            sub="secretary-v00",
            roles=frozenset({"village_secretary"}),
            township_ids=frozenset({township}),
            village_ids=frozenset({VILLAGES[0]}),
        )
    )
    body = json.dumps(
        {
            "title": "议题",
            "description": "流动党员管理难",
            "category": "member_management",
            "village_ids": [VILLAGES[0]],
        }
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        )
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{args.clients}",
            f"-d{int(args.seconds)}s",
            "-s",
            script.name,
            f"{base}/townships/{township}/calls/{forum}/topics",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script.name)
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw refused submissions:\n{out}")
    requests = re.search(r"(\d+) requests in ([\d.]+)s", out)
    assert requests, out
    return int(requests.group(1)), float(requests.group(2))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, infrastructure(Settings(data_dir=Path(tmp))) as ep:
        settings = Settings(
            database_url=ep.database_url, kafka_bootstrap_servers=ep.kafka_bootstrap_servers
        )
        async with service_process("cunzhi_topics.main", ep) as base:
            township, forum = f"bench-{uuid.uuid4().hex[:6]}", "bench-F001"
            await open_call(ep.kafka_bootstrap_servers, township, forum)
            issuer = TokenIssuer(settings.jwt_secret)
            county = {
                "Authorization": "Bearer "
                + issuer.issue(
                    Principal(sub="county", roles=frozenset({"county_organisation_department"}))
                )
            }
            async with httpx.AsyncClient(base_url=base, headers=county) as http:

                async def call_open() -> bool:
                    r = await http.get(f"/townships/{township}/calls/{forum}")
                    return r.status_code == 200 and r.json().get("state") == "open"

                assert await eventually(call_open, timeout=30), "the call did not open"

            if shutil.which("wrk"):
                tool = "wrk"
                done, elapsed = with_wrk(base, settings, township, forum, args)
            else:
                tool = "httpx (install wrk for a load generator that is not the bottleneck)"
                done, elapsed, _ = await load(
                    base, settings, township, forum, args.seconds, args.clients, wait_visible=False
                )
            # Let the read model catch up before measuring latency on a quiet service.
            caught_up_started = time.perf_counter()
            async with httpx.AsyncClient(base_url=base, headers=county) as http:

                async def all_visible() -> bool:
                    r = await http.get(f"/topics?township_id={township}&limit=1")
                    return bool(r.json()["total"] >= done)

                assert await eventually(all_visible, timeout=120), "the read model lagged"
            catch_up = time.perf_counter() - caught_up_started
            _, _, latencies = await load(
                base,
                settings,
                township,
                forum,
                args.seconds / 2,
                max(args.clients // 4, 1),
                wait_visible=True,
            )
            commits = await raw_commits(ep.database_url, 3)
            produce = await raw_produce(ep.kafka_bootstrap_servers, 50_000)
    latencies.sort()
    print(
        f"machine: {os.cpu_count()} cores; embedded PostgreSQL and Tansu; service in its "
        "own process, HTTP over loopback"
    )
    print(
        f"  submissions through HTTP, {args.clients} clients   {done / elapsed:>10,.0f} /s"
        f"  ({done:,} in {elapsed:.1f} s, load from {tool})"
    )
    print(f"  read model caught up after the last submission  {catch_up:>7,.1f} s")
    p50 = statistics.median(latencies) * 1000
    print(f"  submit → visible in the read model, p50     {p50:>10,.1f} ms")
    print(
        f"  submit → visible in the read model, p99     "
        f"{latencies[int(len(latencies) * 0.99) - 1] * 1000:>10,.1f} ms"
    )
    print(f"  raw: asyncpg one-row commits, 16 connections {commits:>10,.0f} /s")
    print(f"  raw: aiokafka batched produce                {produce:>10,.0f} msgs/s")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    asyncio.run(main())
