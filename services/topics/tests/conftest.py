"""The topics service running for real (embedded PostgreSQL and Kafka) for a test module.

The service name, and so its schema, topic and consumer groups, is fixed ("topics"): tests
isolate themselves with fresh township, village and forum ids. One ``ManualClock`` serves the
whole session so that time only moves forward, whichever module runs first.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from cunzhi_platform.clock import SHANGHAI, ManualClock, today
from cunzhi_platform.envelope import CommandContext, Envelope
from cunzhi_platform.events import Event
from cunzhi_platform.kafka import make_broker
from cunzhi_platform.runtime import Runtime
from cunzhi_platform.settings import Settings
from cunzhi_platform.testing import consume, eventually, running, token
from cunzhi_topics import application
from cunzhi_topics.domain import CallTimes, call_stream_id
from cunzhi_topics.service import build_service


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def clock() -> ManualClock:
    # A Monday morning in a year the holiday calendar knows.
    return ManualClock(dt.datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI))


@dataclass
class Kit:
    """Helpers over one running topics service."""

    client: httpx.AsyncClient
    settings: Settings
    clock: ManualClock
    pool: asyncpg.Pool
    fresh = staticmethod(fresh)

    @property
    def rt(self) -> Runtime:
        rt: Runtime = self.client.app.state.runtime  # type: ignore[attr-defined]
        return rt

    # -- who is calling ------------------------------------------------------------------------

    def as_(self, roles: list[str], township: str | None = None, **claims: Any) -> dict[str, str]:
        claims.setdefault("sub", fresh("p"))
        if township is not None:
            claims.setdefault("township_ids", [township])
        return token(self.settings, roles=roles, **claims)

    def secretary(self, township: str, village: str, sub: str | None = None) -> dict[str, str]:
        return self.as_(
            ["village_secretary"], township, village_ids=[village], sub=sub or fresh("sec")
        )

    def office(self, *townships: str) -> dict[str, str]:
        return self.as_(["party_building_office"], township_ids=list(townships))

    def committee(self, township: str) -> dict[str, str]:
        return self.as_(["township_committee"], township)

    def member(self, township: str, village: str, sub: str) -> dict[str, str]:
        return self.as_(["party_member"], township, village_ids=[village], sub=sub)

    def county(self) -> dict[str, str]:
        return self.as_(["county_organisation_department"])

    # -- calls for topics ----------------------------------------------------------------------

    def forum_date(self, *, open_now: bool) -> dt.date:
        """A forum date whose call is open now (``open_now``) or opens later."""
        now = self.clock.now()
        for days in range(1, 60):
            date = today(self.clock) + dt.timedelta(days=days)
            times = CallTimes.for_forum(date)
            if open_now and times.opens_at <= now < times.closes_at - dt.timedelta(hours=1):
                return date
            if not open_now and times.opens_at > now:
                return date
        raise AssertionError("no suitable forum date")

    async def schedule(self, township: str, forum_date: dt.date) -> str:
        """Plan a call as the ForumPlanned policy would (the broker path has its own test)."""
        forum = fresh("forum")
        await application.schedule_call(
            self.rt.store, CommandContext(), township, forum, forum_date
        )
        return forum

    async def open_call(self, township: str) -> str:
        return await self.schedule(township, self.forum_date(open_now=True))

    async def call_times(self, township: str, forum: str) -> CallTimes:
        call = await application.load_call(self.rt.store, township, forum)
        assert call.times is not None
        return call.times

    # -- commands and queries ------------------------------------------------------------------

    async def submit(
        self, township: str, forum: str, headers: dict[str, str], **fields: Any
    ) -> str:
        body = {
            "title": "流动党员管理",
            "description": "外出务工党员长期不参加组织生活",
            "category": "member_management",
            **fields,
        }
        r = await self.client.post(
            f"/townships/{township}/calls/{forum}/topics", json=body, headers=headers
        )
        assert r.status_code == 201, r.text
        topic_id: str = r.json()["topic_id"]
        return topic_id

    async def post(self, path: str, headers: dict[str, str], body: Any = None) -> httpx.Response:
        return await self.client.post(path, json=body, headers=headers)

    async def until(
        self, path: str, check: Callable[[Any], bool], headers: dict[str, str] | None = None
    ) -> Any:
        """GET ``path`` until ``check`` holds of the JSON (read models follow the store)."""
        last: dict[str, Any] = {}

        async def attempt() -> bool:
            r = await self.client.get(path, headers=headers or self.county())
            last["body"] = r.json() if r.status_code == 200 else None
            return r.status_code == 200 and check(last["body"])

        assert await eventually(attempt, timeout=20), f"{path}: {last.get('body')}"
        return last["body"]

    async def topic(self, topic_id: str, check: Callable[[Any], bool]) -> Any:
        return await self.until(f"/topics/{topic_id}", check)

    async def version(self, stream_id: str) -> int:
        return await self.rt.store.version(stream_id)

    async def call_version(self, township: str, forum: str) -> int:
        return await self.version(call_stream_id(township, forum))

    async def events_of(self, township: str) -> int:
        """Everything stored about a township: a refusal must not change it."""
        count: int = await self.pool.fetchval(
            "SELECT count(*) FROM topics.events WHERE payload->>'township_id' = $1", township
        )
        return count

    async def published(self, event_type: str, **match: str) -> list[dict[str, Any]]:
        """Payloads of ``event_type`` on cunzhi.topics.events whose fields equal ``match``."""

        async def relayed() -> bool:
            unsent = await self.pool.fetchval(
                "SELECT count(*) FROM topics.outbox WHERE sent_at IS NULL"
            )
            return unsent == 0

        assert await eventually(relayed)
        total = await self.pool.fetchval("SELECT count(*) FROM topics.outbox")
        records = await consume(
            self.settings.kafka_bootstrap_servers, "cunzhi.topics.events", total
        )
        found = []
        for record in records:
            headers = {k: v.decode() for k, v in record.headers}
            payload = json.loads(record.value)
            if headers["ce_type"] == event_type and all(
                payload.get(k) == v for k, v in match.items()
            ):
                found.append(payload)
        return found

    async def publish(self, topic: str, event: Event, key: str, event_id: str | None = None) -> str:
        """Publish another service's event as that service's relay would; returns its id."""
        envelope = Envelope.new(
            type=event.event_type,
            source=f"/cunzhi/{topic.split('.')[1]}",
            subject=key,
            time=self.clock.now(),
            schema_version=event.schema_version,
            id=event_id,
        )
        broker = make_broker(self.settings.kafka_bootstrap_servers, client_id="topics-tests")
        await broker.connect()
        try:
            await broker.publish(
                json.dumps(event.to_payload(), ensure_ascii=False).encode(),
                topic,
                key=key.encode(),
                headers={k: v.decode() for k, v in envelope.to_headers()},
            )
        finally:
            await broker.stop()
        return envelope.id


@pytest_asyncio.fixture(scope="module")
async def kit(settings: Settings, pool: asyncpg.Pool, clock: ManualClock) -> AsyncIterator[Kit]:
    async with running(build_service(), settings, clock) as client:
        yield Kit(client, settings, clock, pool)
