"""``cunzhi demo``: Guandi's monthly forum cycle on a real stack, then where to look.

Infrastructure comes from ``cunzhi_platform.infra.infrastructure``: the servers named by
``CUNZHI_DATABASE_URL`` and ``CUNZHI_KAFKA_BOOTSTRAP_SERVERS`` when both are set, else an
embedded PostgreSQL (data under ``--data-dir``, default ``.cunzhi``) and an in-memory Tansu
broker. The topics, meetings and rectification services run in this process as real HTTP
servers (uvicorn on free loopback ports), sharing one ``ManualClock`` so that a month passes in
seconds; the cycle
itself is ``cunzhi_cli.cycle.forum_cycle``, the same code the end-to-end test runs.

Guandi's paper ledger (its 18 forums since April 2020, ``cunzhi_cli.ledger``) is entered first,
through meetings' API, and its record read back; this month's forum is then the 19th.

Re-runs: PostgreSQL keeps its data between runs (the broker does not), so each run works in a
fresh township id, ``guandi-<6 hex digits>``: its record counts only this run, while earlier
runs stay readable. Wipe the data directory to start from nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import uvicorn
from cunzhi_meetings.service import build_service as meetings_service
from cunzhi_notifications.service import build_service as notifications_service
from cunzhi_platform.auth import Principal, TokenIssuer
from cunzhi_platform.clock import ManualClock
from cunzhi_platform.envelope import dlq_for, topic_for
from cunzhi_platform.infra import Endpoints, infrastructure
from cunzhi_platform.runtime import Service, create_app
from cunzhi_platform.settings import Settings
from cunzhi_rectification.service import build_service as rectification_service
from cunzhi_topics.service import build_service as topics_service

from . import notices
from .campaign_round import campaign_round, campaign_summary
from .cycle import CYCLE_START, TOWNSHIP_NAME, CycleResult, forum_cycle, migrate_ledger

STARTUP_TIMEOUT_S = 60.0


class _Server(uvicorn.Server):
    """The servers share the process, so signals are the demo's to handle, not uvicorn's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def demo_settings(settings: Settings, endpoints: Endpoints) -> Settings:
    """Fast timers and consumer groups, so that the cycle takes seconds, not minutes."""
    return settings.model_copy(
        update={
            "database_url": endpoints.database_url,
            "kafka_bootstrap_servers": endpoints.kafka_bootstrap_servers,
            "scheduler_interval_s": 0.2,
            "relay_poll_interval_s": 0.2,
            "consumer_session_timeout_ms": 2_000,
            "consumer_heartbeat_interval_ms": 300,
            "log_json": False,
            "log_level": "WARNING",
        }
    )


@contextlib.asynccontextmanager
async def serving(service: Service, settings: Settings, clock: ManualClock) -> AsyncIterator[str]:
    """The service behind uvicorn on a free loopback port; yields its base URL.

    The app's lifespan (database, broker, consumers, relay, timers) is entered here rather than
    by uvicorn, so that a start-up failure raises its own error (``InfrastructureError`` naming
    the setting) instead of uvicorn's ``SystemExit``.
    """
    app = create_app(service, settings, clock)
    async with app.router.lifespan_context(app):
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, lifespan="off", log_config=None, access_log=False
        )
        server = _Server(config)
        task = asyncio.create_task(server.serve(), name=f"{service.name}-http")
        try:
            async with asyncio.timeout(STARTUP_TIMEOUT_S):
                while not server.started:
                    if task.done():
                        task.result()  # raises what stopped it
                        raise RuntimeError(f"the {service.name} HTTP server did not start")
                    await asyncio.sleep(0.05)
            port = server.servers[0].sockets[0].getsockname()[1]
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            await task


async def run_demo(settings: Settings, keep_running: bool = False) -> None:
    """Run the cycle and print where to look; with ``keep_running``, stay up until Ctrl-C."""
    township_id = f"guandi-{secrets.token_hex(3)}"
    print(f"cunzhi demo: {TOWNSHIP_NAME} ({township_id}), starting the infrastructure…")
    with infrastructure(settings) as endpoints:
        config = demo_settings(settings, endpoints)
        clock = ManualClock(CYCLE_START)
        issuer = TokenIssuer(config.jwt_secret, config.jwt_algorithm, config.jwt_audience)
        async with (
            serving(topics_service(), config, clock) as topics_url,
            serving(meetings_service(), config, clock) as meetings_url,
            serving(rectification_service(), config, clock) as rectification_url,
            notices.channels() as channels,
            serving(notifications_service(channels.channels), config, clock) as notifications_url,
            httpx.AsyncClient(base_url=topics_url, timeout=30) as topics,
            httpx.AsyncClient(base_url=meetings_url, timeout=30) as meetings,
            httpx.AsyncClient(base_url=rectification_url, timeout=30) as rectification,
            httpx.AsyncClient(base_url=notifications_url, timeout=30) as notifications,
        ):
            urls = {"topics": topics_url, "meetings": meetings_url}
            urls["rectification"] = rectification_url
            urls["notifications"] = notifications_url
            print(f"{', '.join(f'{n} at {u}' for n, u in urls.items())}.")
            await notices.prepare_recipients(
                notifications, issuer, township_id, channels, lambda line: print(f"  • {line}")
            )
            print(f"{TOWNSHIP_NAME}'s history:")
            await migrate_ledger(meetings, issuer, township_id, lambda line: print(f"  • {line}"))
            print("This month's forum cycle:")
            result = await forum_cycle(
                topics,
                meetings,
                rectification,
                clock,
                issuer,
                township_id,
                lambda line: print(f"  • {line}"),
            )
            await notices.after_cycle(notifications, issuer, clock, result, channels)
            _summary(result, endpoints, urls, settings.data_dir)
            await _campaign(rectification, clock, issuer, township_id)
            if keep_running:
                _try_hint(issuer, meetings_url, result.township_id)
                print("\nEverything stays up until Ctrl-C.")
                await _until_interrupted()
    print("cunzhi demo: done, everything stopped.")


def _summary(
    result: CycleResult,
    endpoints: Endpoints,
    urls: dict[str, str],
    data_dir: Path,
) -> None:
    record = result.township_record
    forum = result.forum
    attendance = forum["attendance"]
    counts = {
        s: sum(1 for a in attendance if a["status"] == s) for s in ("present", "late", "absent")
    }
    print(
        f"\nWhat happened: forum {result.forum_id} of {TOWNSHIP_NAME} solved one problem, "
        f"«{result.selected_topic['title']}» (from "
        f"{len(result.selected_topic['sources'])} villages' submissions, merged), and is closed."
    )
    print(
        f"  attendance {counts['present']} present / {counts['late']} late / "
        f"{counts['absent']} absent; {len(forum['resolutions'])} resolution, "
        f"{forum['task_progress']['completed']}/{forum['task_progress']['total']} tasks done"
    )
    completed = sum(1 for t in result.tasks if t["status"] == "completed")
    print(
        f"  rectification: {completed}/{len(result.tasks)} of the forum's tasks completed "
        "through its API, with evidence"
    )
    print(
        f"\nTownship record of {TOWNSHIP_NAME} ({result.township_id}): "
        f"{record['forums_held']} forums held, {record['problems_solved']} problems solved, "
        f"{record['experts_invited']} experts invited, {record['experience_exchanges']} "
        f"excellent secretaries sharing experience, {record['field_visits']} field visits "
        "(the ledger's and this month's)"
    )
    print("\nWhere to look:")
    for name, url in urls.items():
        print(f"  {name:<13} API docs {url}/docs   metrics {url}/metrics")
    kafka_topics = [topic_for(s) for s in ("topics", "meetings", "rectification")]
    print(
        f"  Kafka     {endpoints.kafka_bootstrap_servers}: {', '.join(kafka_topics)} "
        f"(dead letters: {dlq_for('<topic>')})"
    )
    print(f"  PostgreSQL {endpoints.database_url} (schemas {', '.join(urls)})")
    if endpoints.mode == "embedded":
        print(f"  data/logs {data_dir.resolve()} (postgres.log, tansu.log)")


def _try_hint(issuer: TokenIssuer, meetings_url: str, township_id: str) -> None:
    """Only while the services still run (``--keep-running``): afterwards the URL is dead."""
    county = issuer.issue(
        Principal(sub="county-org", roles=frozenset({"county_organisation_department"}))
    )
    print(
        f"  try:      curl -H 'Authorization: Bearer {county}' \\\n"
        f"              {meetings_url}/townships/{township_id}/record"
    )


async def _campaign(
    client: httpx.AsyncClient, clock: ManualClock, issuer: TokenIssuer, township_id: str
) -> None:
    print("\nThe weak-village campaign (滨城区薄弱村集中整顿攻坚, round 3) on Bincheng's figures:")
    county_id = f"bincheng-{township_id.rsplit('-', 1)[1]}"
    dashboard = await campaign_round(client, clock, issuer, county_id, lambda s: print(f"  • {s}"))
    print("As the read models give it:")
    for line in campaign_summary(dashboard):
        print(f"  {line}")


async def _until_interrupted() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
