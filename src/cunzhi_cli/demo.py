"""``cunzhi demo``: Guandi's monthly forum cycle on a real stack, then where to look.

Infrastructure comes from ``cunzhi_platform.infra.infrastructure``: the servers named by
``CUNZHI_DATABASE_URL`` and ``CUNZHI_KAFKA_BOOTSTRAP_SERVERS`` when both are set, else an
embedded PostgreSQL (data under ``--data-dir``, default ``.cunzhi``) and an in-memory Tansu
broker. The four services run in this process (``stack.county_stack``) as real HTTP servers
sharing one ``ManualClock`` so that a month passes in seconds; the cycle itself is
``cunzhi_cli.cycle.forum_cycle``, the same code the end-to-end test runs.

Guandi's paper ledger (its 18 forums since April 2020, ``cunzhi_cli.ledger``) is entered first,
through meetings' API, and its record read back; this month's forum is then the 19th.

Re-runs: PostgreSQL keeps its data between runs (the broker does not), so each run works in a
fresh township id, ``guandi-<6 hex digits>``: its record counts only this run, while earlier
runs stay readable. Wipe the data directory to start from nothing.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
from pathlib import Path

import httpx
from cunzhi_platform.auth import Principal, TokenIssuer
from cunzhi_platform.clock import ManualClock
from cunzhi_platform.envelope import dlq_for, topic_for
from cunzhi_platform.infra import Endpoints, infrastructure
from cunzhi_platform.settings import Settings

from . import notices
from .campaign_round import campaign_round, campaign_summary
from .cycle import CYCLE_START, TOWNSHIP_NAME, CycleResult, forum_cycle, migrate_ledger
from .stack import county_stack, demo_settings


async def run_demo(settings: Settings, keep_running: bool = False) -> None:
    """Run the cycle and print where to look; with ``keep_running``, stay up until Ctrl-C."""
    township_id = f"guandi-{secrets.token_hex(3)}"
    print(f"cunzhi demo: {TOWNSHIP_NAME} ({township_id}), starting the infrastructure…")
    with infrastructure(settings) as endpoints:
        config = demo_settings(settings, endpoints)
        clock = ManualClock(CYCLE_START)
        async with county_stack(config, clock) as stack:
            topics, meetings = stack.topics, stack.meetings
            rectification, notifications = stack.rectification, stack.notifications
            issuer, channels, urls = stack.issuer, stack.channels, stack.urls
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
                _try_hint(issuer, urls["meetings"], result.township_id)
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
