"""PostgreSQL's connections killed under a burst of commands: every answer is a success or a
503 with the problem body, and every command is stored exactly once."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import asyncpg
import httpx
import pytest

if TYPE_CHECKING:
    from conftest import Kit

pytestmark = pytest.mark.slow

BURST = 24
MAX_ROUNDS = 10
MAX_ATTEMPTS = 40


async def test_commands_under_killed_connections_answer_503_and_are_stored_once(
    kit: Kit,
) -> None:
    town, village = kit.fresh("town"), kit.fresh("v")
    forum = await kit.open_call(town)
    url = f"/townships/{town}/calls/{forum}/topics"
    wang = kit.secretary(town, village)
    answers: list[httpx.Response] = []
    keyed_titles: list[str] = []
    plain_successes: list[str] = []

    async def submit(title: str, key: str | None) -> None:
        body = {
            "title": title,
            "description": "外出务工党员长期不参加组织生活",
            "category": "member_management",
            "village_ids": [village],
        }
        headers = wang if key is None else {**wang, "Idempotency-Key": key}
        for _ in range(MAX_ATTEMPTS):
            r = await kit.client.post(url, json=body, headers=headers)
            answers.append(r)
            if r.status_code == 201:
                if key is None:
                    plain_successes.append(title)
                return
            if key is None:  # a client without a key cannot know: it does not retry
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{title}: no success after {MAX_ATTEMPTS} attempts")

    killer = await asyncpg.connect(kit.settings.database_url)
    try:
        killed = 0

        async def kill_for(seconds: float) -> None:
            """Terminate every connection of the service, again and again, for a while."""
            nonlocal killed
            deadline = asyncio.get_running_loop().time() + seconds
            while asyncio.get_running_loop().time() < deadline:
                killed += await killer.fetchval(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                    "FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend' AND datname = current_database()"
                )
                await asyncio.sleep(0.02)

        for round_ in range(MAX_ROUNDS):
            jobs = []
            for i in range(BURST):
                title = f"议题{round_}-{i}"
                key = kit.fresh("k") if i % 2 == 0 else None
                if key is not None:
                    keyed_titles.append(title)
                jobs.append(submit(title, key))
            await asyncio.gather(kill_for(1.0), *jobs)
            if any(r.status_code == 503 for r in answers):
                break
    finally:
        await killer.close()

    assert killed > 0
    unavailable = [r for r in answers if r.status_code == 503]
    assert unavailable, "no command met a killed connection; the test proved nothing"
    for r in answers:
        assert r.status_code in (201, 503), r.text
        assert r.headers["content-type"] == "application/json", r.text
        if r.status_code == 503:
            assert r.headers["retry-after"] and r.json()["detail"]

    stored = {
        row["title"]: row["n"]
        for row in await kit.pool.fetch(
            "SELECT payload->>'title' AS title, count(*) AS n FROM topics.events "
            "WHERE type = 'cunzhi.topics.TopicSubmitted' AND payload->>'township_id' = $1 "
            "GROUP BY 1",
            town,
        )
    }
    # Retried with its key until it succeeded: stored once, however often it met an outage.
    assert {title: stored.get(title) for title in keyed_titles} == dict.fromkeys(keyed_titles, 1)
    # A success without a key: stored once too.
    assert {title: stored.get(title) for title in plain_successes} == dict.fromkeys(
        plain_successes, 1
    )
