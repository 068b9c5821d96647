"""The notices of the forum cycle (通知), through the notifications service's HTTP API.

Before the cycle, the county's operators put the township's contact details and its group robot
into the directory (the roster the cycle imports into meetings reaches the directory too, as
events; phones, e-mail addresses and station heads' roles are added here). During the cycle
the service tells, by itself from the other services' events: the villages and stations when
the call for topics opens, those who submitted nothing the working day before it closes, the
submitters when their topics change state, every attendee of the notice (D−3) and, the working
day before the forum, every attendee again — in the app, by SMS (Alibaba Cloud's API), by
e-mail, and once per notice in the township's DingTalk group, all three on local fakes. After
the cycle two village secretaries read the notice in the app, and the delivery ledger says who
was told about the forum, on which channel, and who has read it.

Contact details are illustrative (phone numbers in the 138 0000 xxxx test range).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from cunzhi_notifications.adapters.sender import GROUP_SPACING
from cunzhi_notifications.channels.base import Channel
from cunzhi_notifications.channels.registry import build_channels
from cunzhi_notifications.fakes import FakeProviders
from cunzhi_platform.auth import Principal, TokenIssuer
from cunzhi_platform.clock import ManualClock

from .cycle import (
    LEADERSHIP,
    MIDDLE_CADRES,
    STEP_TIMEOUT_S,
    TOWNSHIP_NAME,
    VILLAGES,
    CycleError,
    CycleResult,
    Person,
    village_id,
)

ADMIN = "notifications_admin"
STATION_HEADS = frozenset({"yang-chunsheng", "he-zhiyong"})
"""农经站站长 and 司法所所长: the functional stations asked for topics with the villages."""
Json = dict[str, Any]
Report = Callable[[str], None]


@dataclass(frozen=True)
class DemoChannels:
    """The channel adapters of the demo, pointed at local fake providers, and those fakes."""

    channels: Mapping[str, Channel]
    fakes: FakeProviders
    robot_url: str
    robot_secret: str


@contextlib.asynccontextmanager
async def channels() -> AsyncIterator[DemoChannels]:
    """SMS (Alibaba Cloud's API), the township's DingTalk robot and e-mail, on loopback fakes."""
    async with FakeProviders() as fakes:
        built = build_channels(fakes.settings(sms="aliyun"))
        secret = "SEC" + secrets.token_hex(24)
        try:
            yield DemoChannels(built, fakes, fakes.dingtalk.add_robot(secret=secret), secret)
        finally:
            await built.aclose()


def _headers(issuer: TokenIssuer, sub: str, *roles: str, township_id: str = "") -> dict[str, str]:
    principal = Principal(
        sub=sub, roles=frozenset(roles), township_ids=frozenset({township_id} - {""})
    )
    return {"Authorization": f"Bearer {issuer.issue(principal)}"}


def _people(township_id: str) -> list[tuple[Person, Json]]:
    people: list[tuple[Person, Json]] = []
    for n, person in enumerate((*LEADERSHIP, *MIDDLE_CADRES)):
        roles = ["station_head"] if person.person_id in STATION_HEADS else ["middle_cadre"]
        people.append((person, {"roles": roles, "phone": f"1380000{n:04d}"}))
    for n, village in enumerate(VILLAGES, start=100):
        people.append(
            (
                village.secretary,
                {
                    "roles": ["village_secretary"],
                    "village_id": village_id(township_id, village),
                    "phone": f"1380000{n:04d}",
                    "email": f"{village.secretary.person_id}@{village.code}.example.cn",
                },
            )
        )
    return people


async def prepare_recipients(
    client: httpx.AsyncClient,
    issuer: TokenIssuer,
    township_id: str,
    demo: DemoChannels,
    report: Report,
) -> None:
    """Contacts, station heads and the township's robot, loaded by the county's operators (the
    demo's people keep their ids from run to run, each run in a new township: only an
    administrator moves a person from one township to another)."""
    office = _headers(issuer, "county-it", ADMIN)
    for person, extra in _people(township_id):
        body = {"name": person.name, "township_id": township_id, **extra}
        r = await client.put(f"/people/{person.person_id}", json=body, headers=office)
        if r.is_error:
            raise CycleError(f"directory: PUT /people/{person.person_id}: {r.status_code} {r.text}")
    group = {
        "name": f"{TOWNSHIP_NAME}党建工作群",
        "township_id": township_id,
        "channel": "dingtalk",
        "webhook_url": demo.robot_url,
        "secret": demo.robot_secret,
    }
    r = await client.put(f"/groups/{township_id}-dangjian", json=group, headers=office)
    if r.is_error:
        raise CycleError(f"directory: PUT /groups: {r.status_code} {r.text}")
    report(
        f"notifications: directory of {TOWNSHIP_NAME} ready — {len(_people(township_id))} people "
        "with phones, village secretaries with e-mail, station heads marked, the township's "
        "DingTalk group robot (SMS, robot and SMTP are local fakes on loopback)"
    )


async def _settled(
    client: httpx.AsyncClient, headers: dict[str, str], subject: str, clock: ManualClock
) -> Json:
    """The ledger of ``subject`` once nothing in it waits to be sent.

    A group robot takes one message a minute of the services' clock (``GROUP_SPACING``), which
    stands still between the demo's steps: while only group deliveries wait, the demo lets that
    minute pass, once a second at most.
    """
    deadline = time.monotonic() + STEP_TIMEOUT_S
    paced_at = time.monotonic()
    while True:
        r = await client.get(f"/subjects/{subject}/deliveries", headers=headers)
        body: Json = r.json() if r.status_code == 200 else {}
        waiting = [
            entry["recipient_id"]
            for entry in body.get("recipients", [])
            for d in entry["deliveries"]
            if d["status"] in ("pending", "sending")
        ]
        if body.get("notices") and not waiting:
            return body
        now = time.monotonic()
        if now > deadline:
            raise CycleError(f"notifications: {subject} did not settle; last answer: {body}")
        if waiting and all(r.startswith("group:") for r in waiting) and now - paced_at >= 1:
            clock.advance(GROUP_SPACING)
            paced_at = now
        await asyncio.sleep(0.1)


async def read_receipts(
    client: httpx.AsyncClient, issuer: TokenIssuer, forum: Json, report: Report
) -> None:
    """Two village secretaries open the forum notice in the app (``forum``: its ledger)."""
    for village in VILLAGES[:2]:
        me = _headers(issuer, village.secretary.person_id, "village_secretary")
        entry = next(
            e for e in forum["recipients"] if e["recipient_id"] == village.secretary.person_id
        )
        notice = next(
            d
            for d in entry["deliveries"]
            if d["channel"] == "inbox" and d["kind"] == "forum_notice"
        )
        r = await client.post(f"/inbox/{notice['delivery_id']}/read", headers=me)
        if r.is_error:
            raise CycleError(f"read receipts: {r.status_code} {r.text}")
        report(
            f"{village.secretary.name} ({village.name}) reads the forum notice in the app "
            f"({r.json()['unread']} unread left)"
        )


async def ledger_report(
    client: httpx.AsyncClient,
    issuer: TokenIssuer,
    clock: ManualClock,
    result: CycleResult,
    report: Report,
) -> Json:
    """What the delivery ledger says of the call for topics and of the forum."""
    forum_id = result.forum_id
    office = _headers(
        issuer, "ma-xiaodong", "party_building_office", township_id=result.township_id
    )
    call = await _settled(client, office, f"call:{forum_id}", clock)
    forum = await _settled(client, office, f"forum:{forum_id}", clock)
    for title, ledger in (("call for topics", call), (f"forum {forum_id}", forum)):
        kinds = ", ".join(sorted({n["kind"] for n in ledger["notices"]}))
        channels: dict[str, int] = {}
        for entry in ledger["recipients"]:
            for d in entry["deliveries"]:
                channels[d["channel"]] = channels.get(d["channel"], 0) + 1
        per_channel = ", ".join(f"{c} {n}" for c, n in sorted(channels.items()))
        report(
            f"ledger, {title}: notices {kinds}; {len(ledger['recipients'])} recipients; "
            f"deliveries by channel {per_channel}; by status {ledger['by_status']}; "
            f"read in the app by {ledger['read']}"
        )
    return forum


async def after_cycle(
    client: httpx.AsyncClient,
    issuer: TokenIssuer,
    clock: ManualClock,
    result: CycleResult,
    demo: DemoChannels,
) -> None:
    """Read receipts and the ledger of the forum, printed after the cycle."""
    print("\nNotices of the cycle (notifications):")

    def report(line: str) -> None:
        print(f"  • {line}")

    forum = await ledger_report(client, issuer, clock, result, lambda _: None)
    await read_receipts(client, issuer, forum, report)
    await ledger_report(client, issuer, clock, result, report)
    fakes = demo.fakes
    robot = fakes.dingtalk.messages[demo.robot_url.rsplit("=", 1)[1]]
    report(
        f"on the providers' side: {len(fakes.aliyun.sent)} SMS at the Alibaba Cloud fake, "
        f"{len(fakes.smtp.messages)} e-mails at the SMTP server, {len(robot)} messages in the "
        "township's DingTalk group (one per notice, never one per person)"
    )
