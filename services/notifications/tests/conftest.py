"""The notifications service running for real (embedded PostgreSQL and Kafka) behind test channels,
and the fake providers the channel tests (and the service's integration tests) talk to.

``Recorder`` is a channel that implements the adapters' contract in the tests only: it keeps
every message it accepted (what reached "our side of the provider"), answers receipts from
that, and can be scripted to throttle, fail or answer unclearly. Other services' events are
published as raw CloudEvents (the tests do not import the producers' code either).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from cunzhi_notifications.channels.base import Message, Outcome, SendResult
from cunzhi_notifications.domain.kinds import GROUP_CHANNELS
from cunzhi_notifications.fakes import FakeProviders
from cunzhi_notifications.service import build_service
from cunzhi_platform.clock import SHANGHAI, ManualClock
from cunzhi_platform.envelope import Envelope
from cunzhi_platform.kafka import make_broker
from cunzhi_platform.runtime import Runtime
from cunzhi_platform.settings import Settings
from cunzhi_platform.testing import eventually, running, token

START = dt.datetime(2026, 10, 21, 10, 0, tzinfo=SHANGHAI)
WAIT_S = 90
"""Each test's service is new, so its consumers first read the session's topics from the start:
late in a long session that takes a while on a loaded machine."""
"""A Wednesday, in a year the holiday calendar knows."""


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Recorder:
    """A channel for tests: accepts everything unless ``script`` says otherwise."""

    name: str
    max_batch: int = 50
    accepted: list[Message] = field(default_factory=list)
    script: Callable[[Message], SendResult | None] | None = None
    receipts: int = 0
    report_delivered: bool = False
    """Receipts say the message reached the phone, not only the provider."""

    async def send(self, messages: Sequence[Message]) -> list[SendResult]:
        out = []
        for m in messages:
            scripted = self.script(m) if self.script else None
            if scripted is None or scripted.outcome in (Outcome.SENT, Outcome.UNCLEAR):
                self.accepted.append(m)  # an unclear send may well have gone through
            out.append(scripted or SendResult(Outcome.SENT, provider_id=f"p-{m.delivery_id}"))
        return out

    async def receipt(self, message: Message, provider_id: str | None) -> SendResult | None:
        self.receipts += 1
        if any(m.delivery_id == message.delivery_id for m in self.accepted):
            return SendResult(
                Outcome.SENT,
                provider_id=f"p-{message.delivery_id}",
                delivered=self.report_delivered,
            )
        return None

    @property
    def at_most_once(self) -> bool:
        return self.name in GROUP_CHANNELS  # as the real robots

    def to(self, address: str) -> list[Message]:
        return [m for m in self.accepted if m.address == address]

    def doubles(self) -> dict[str, int]:
        counts = Counter(m.delivery_id for m in self.accepted)
        return {k: v for k, v in counts.items() if v > 1}


@dataclass
class Kit:
    client: httpx.AsyncClient
    settings: Settings
    clock: ManualClock
    pool: asyncpg.Pool
    name: str
    channels: dict[str, Recorder]
    fresh = staticmethod(fresh)
    start = START

    @staticmethod
    def attendee(
        person_id: str, name: str = "王书记", village: str | None = None
    ) -> dict[str, Any]:
        return attendee(person_id, name, village)

    @staticmethod
    def forum_notice(
        forum: str, township: str, attendees: list[dict[str, Any]], **kw: Any
    ) -> dict[str, Any]:
        return forum_notice(forum, township, attendees, **kw)

    @property
    def rt(self) -> Runtime:
        rt: Runtime = self.client.app.state.runtime  # type: ignore[attr-defined]
        return rt

    @property
    def s(self) -> str:
        return f'"{self.name}"'

    def admin(self) -> dict[str, str]:
        return token(self.settings, sub=fresh("admin"), roles=["notifications_admin"])

    def office(self, township: str) -> dict[str, str]:
        return token(
            self.settings,
            sub=fresh("office"),
            roles=["party_building_office"],
            township_ids=[township],
        )

    def me(self, person_id: str) -> dict[str, str]:
        return token(self.settings, sub=person_id, roles=["village_secretary"])

    async def person(self, township: str, **fields: Any) -> str:
        person_id = fields.pop("person_id", None) or fresh("p")
        body = {"name": "王书记", "roles": ["village_secretary"], "township_id": township, **fields}
        r = await self.client.put(f"/people/{person_id}", json=body, headers=self.admin())
        assert r.status_code == 200, r.text
        return person_id

    async def publish(
        self,
        service: str,
        type_name: str,
        payload: dict[str, Any],
        key: str,
        event_id: str | None = None,
    ) -> str:
        """Put another service's event on its topic as its relay would; returns its id."""
        envelope = Envelope.new(
            type=f"cunzhi.{service}.{type_name}",
            source=f"/cunzhi/{service}",
            subject=key,
            time=self.clock.now(),
            id=event_id,
        )
        broker = make_broker(self.settings.kafka_bootstrap_servers, client_id="notif-tests")
        await broker.connect()
        try:
            await broker.publish(
                json.dumps(payload, ensure_ascii=False, default=str).encode(),
                f"cunzhi.{service}.events",
                key=key.encode(),
                headers={k: v.decode() for k, v in envelope.to_headers()},
            )
        finally:
            await broker.stop()
        return envelope.id

    async def until_ready(self, check: Callable[[], Any]) -> Any:
        value = await eventually(check, timeout=WAIT_S)
        assert value, "never got there"
        return value

    async def rows(self, where: str, *args: Any) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            f"SELECT * FROM {self.s}.deliveries WHERE {where} ORDER BY recipient_id, channel",
            *args,
        )

    async def until_rows(
        self,
        where: str,
        *args: Any,
        check: Callable[[list[asyncpg.Record]], bool],
        advance: Callable[[], None] | None = None,
    ) -> list[asyncpg.Record]:
        """Poll until ``check`` holds, calling ``advance`` (moving the clock) between tries."""
        last: dict[str, Any] = {}

        async def attempt() -> bool:
            last["rows"] = await self.rows(where, *args)
            if check(last["rows"]):
                return True
            if advance is not None:
                advance()
            return False

        assert await eventually(attempt, timeout=WAIT_S), [dict(r) for r in last.get("rows", [])]
        return list(last["rows"])

    async def settled(self, where: str, *args: Any, count: int) -> list[asyncpg.Record]:
        """Wait until ``count`` deliveries match and none is waiting to be sent."""
        return await self.until_rows(
            where,
            *args,
            check=lambda rows: (
                len(rows) == count and all(r["status"] not in ("pending", "sending") for r in rows)
            ),
        )

    async def events(self, type_name: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            f"SELECT payload FROM {self.s}.events WHERE type = $1 ORDER BY global_position",
            f"cunzhi.notifications.{type_name}",
        )
        return [r["payload"] for r in rows]


def attendee(person_id: str, name: str = "王书记", village: str | None = None) -> dict[str, Any]:
    return {
        "person_id": person_id,
        "name": name,
        "role": "village_secretary",
        "village_id": village,
    }


def forum_notice(
    forum: str, township: str, attendees: list[dict[str, Any]], **kw: Any
) -> dict[str, Any]:
    return {
        "forum_id": forum,
        "township_id": township,
        "number": 18,
        "date": "2026-10-30",
        "place": "关堤乡政府",
        "mode": "at_township",
        "topic_id": "t-1",
        "topic_title": "流动党员管理",
        "attendees": attendees,
        "prepare_remarks": True,
        "automatic": True,
        "issued_at": START.isoformat(),
        **kw,
    }


@contextlib.asynccontextmanager
async def start(
    settings: Settings,
    pool: asyncpg.Pool,
    clock: ManualClock,
    name: str | None = None,
    **build: Any,
) -> AsyncIterator[Kit]:
    """One instance of the service under ``name`` (a fresh schema unless given)."""
    name = name or fresh("n").replace("-", "")
    channels = {c: Recorder(c) for c in ("sms", "email", "dingtalk")}
    channels.update(build.pop("channels", {}))
    async with running(build_service(channels, name=name, **build), settings, clock) as client:
        yield Kit(client, settings, clock, pool, name, channels)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest_asyncio.fixture
async def kit(settings: Settings, pool: asyncpg.Pool, clock: ManualClock) -> AsyncIterator[Kit]:
    async with start(settings, pool, clock) as k:
        yield k


class Starter:
    """Starts instances of the service by name (for tests that kill and restart it)."""

    fresh = staticmethod(fresh)
    recorder = Recorder

    def __init__(self, settings: Settings, pool: asyncpg.Pool, clock: ManualClock) -> None:
        self.settings, self.pool, self.clock = settings, pool, clock

    def __call__(self, name: str, **build: Any) -> contextlib.AbstractAsyncContextManager[Kit]:
        return start(self.settings, self.pool, self.clock, name, **build)


@pytest.fixture
def start_kit(settings: Settings, pool: asyncpg.Pool, clock: ManualClock) -> Starter:
    return Starter(settings, pool, clock)


@pytest_asyncio.fixture(scope="module")
async def fakes() -> AsyncIterator[FakeProviders]:
    async with FakeProviders() as started:
        yield started
