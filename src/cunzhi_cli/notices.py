"""The notices of the forum cycle (通知), through the notifications service's HTTP API.

Before the cycle, the township's party-building office puts its people's contact details and the
township's group robot into the directory (the roster the cycle imports into meetings reaches the
directory too, as events; the phones, e-mail addresses and roles of station heads are the
office's to add). During the cycle the service tells, by itself from the other services' events:
the villages and stations when the call for topics opens, those who submitted nothing the working
day before it closes, the submitters when their topics change state, every attendee of the notice
(D−3) and, the working day before the forum, every attendee again. After the cycle two village
secretaries read the notice in the app, and the delivery ledger says who was told about the
forum, on which channel, and who has read it.

Contact details are illustrative (phone numbers in the 138 0000 xxxx test range).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx
from cunzhi_notifications.channels.base import Channel
from cunzhi_platform.auth import Principal, TokenIssuer

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


@contextlib.asynccontextmanager
async def channels() -> AsyncIterator[tuple[Mapping[str, Channel], str | None]]:
    """The channel adapters of the demo and the township robot's URL (the in-app inbox is
    always there)."""
    yield {}, None


def _headers(issuer: TokenIssuer, sub: str, *roles: str, township_id: str = "") -> dict[str, str]:
    principal = Principal(
        sub=sub, roles=frozenset(roles), township_ids=frozenset({township_id} - {""})
    )
    return {"Authorization": f"Bearer {issuer.issue(principal)}"}


def _people(township_id: str) -> list[tuple[Person, Json]]:
    people: list[tuple[Person, Json]] = []
    for n, person in enumerate((*LEADERSHIP, *MIDDLE_CADRES)):
        roles = ["station_head"] if person.person_id in STATION_HEADS else ["township_cadre"]
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
    robot_url: str | None,
    report: Report,
) -> None:
    """The office's part of the directory: contacts, station heads, the township's robot."""
    office = _headers(issuer, "ma-xiaodong", "party_building_office", township_id=township_id)
    for person, extra in _people(township_id):
        body = {"name": person.name, "township_id": township_id, **extra}
        r = await client.put(f"/people/{person.person_id}", json=body, headers=office)
        if r.is_error:
            raise CycleError(f"directory: PUT /people/{person.person_id}: {r.status_code} {r.text}")
    if robot_url:
        group = {
            "name": f"{TOWNSHIP_NAME}党建工作群",
            "township_id": township_id,
            "channel": "dingtalk",
            "webhook_url": robot_url,
        }
        r = await client.put(f"/groups/{township_id}-dangjian", json=group, headers=office)
        if r.is_error:
            raise CycleError(f"directory: PUT /groups: {r.status_code} {r.text}")
    report(
        f"notifications: directory of {TOWNSHIP_NAME} ready — {len(_people(township_id))} people "
        f"with phones, village secretaries with e-mail, station heads marked"
        + (", the township's DingTalk group robot" if robot_url else "")
    )


async def _settled(client: httpx.AsyncClient, headers: dict[str, str], subject: str) -> Json:
    """The ledger of ``subject`` once nothing in it waits to be sent."""
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while True:
        r = await client.get(f"/subjects/{subject}/deliveries", headers=headers)
        body: Json = r.json() if r.status_code == 200 else {}
        waiting = {"pending", "sending"} & set(body.get("by_status", {}))
        if body.get("notices") and not waiting:
            return body
        if time.monotonic() > deadline:
            raise CycleError(f"notifications: {subject} did not settle; last answer: {body}")
        await asyncio.sleep(0.1)


async def read_receipts(
    client: httpx.AsyncClient, issuer: TokenIssuer, forum_id: str, report: Report
) -> None:
    """Two village secretaries open the forum notice in the app."""
    for village in VILLAGES[:2]:
        me = _headers(issuer, village.secretary.person_id, "village_secretary")
        inbox = (await client.get("/inbox", headers=me)).json()
        notice = next(i for i in inbox["items"] if i["kind"] == "forum_notice")
        await client.post(f"/inbox/{notice['delivery_id']}/read", headers=me)
        report(
            f"{village.secretary.name} ({village.name}) reads «{notice['subject']}» in the app "
            f"({inbox['unread']} unread before)"
        )


async def ledger_report(
    client: httpx.AsyncClient, issuer: TokenIssuer, township_id: str, forum_id: str, report: Report
) -> Json:
    """What the delivery ledger says of the call for topics and of the forum."""
    office = _headers(issuer, "ma-xiaodong", "party_building_office", township_id=township_id)
    call = await _settled(client, office, f"call:{forum_id}")
    forum = await _settled(client, office, f"forum:{forum_id}")
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
    client: httpx.AsyncClient, issuer: TokenIssuer, result: CycleResult, url: str
) -> None:
    """Read receipts and the ledger of the forum, printed after the cycle."""
    print("\nNotices of the cycle (notifications):")

    def report(line: str) -> None:
        print(f"  • {line}")

    await ledger_report(client, issuer, result.township_id, result.forum_id, lambda _: None)
    await read_receipts(client, issuer, result.forum_id, report)
    await ledger_report(client, issuer, result.township_id, result.forum_id, report)
    print(f"  notifications API docs {url}/docs   metrics {url}/metrics")
