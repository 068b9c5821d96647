"""The delivery ledger: a notice planned as one row per (source event, recipient, kind, channel).

Planning runs in the caller's transaction (a consumer's ``Tx``, or the reminder timer's), so the
rows, the ``NotificationRequested`` event and the caller's own mark commit together. The unique
key and a delivery id derived from it make a second plan of the same notice a no-op: a
redelivered event or a reminder fired twice plans nothing twice.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.eventstore import EventStore, StreamWrite

from ..domain.kinds import Kind
from ..domain.routing import DEFAULT_DIGEST_AT, Person, Preference, QuietHours, routes
from ..events import NotificationRequested
from . import webhooks

_IDS = uuid.UUID("0b0e6a52-6f4b-4a8e-9a43-6e6f74696679")
ADDRESS_COLUMNS = {"sms": "phone", "email": "email", "wecom": "wecom_id", "dingtalk": "dingtalk_id"}


def derived_id(*parts: str) -> str:
    return str(uuid.uuid5(_IDS, "|".join(parts)))


@dataclass(frozen=True)
class Notice:
    source_event_id: str
    source_type: str
    kind: Kind
    township_id: str | None
    subject_ref: str
    context: Mapping[str, Any]
    recipients: Sequence[str]
    """Person ids; group robots of the township are added when the kind says so."""


class Ledger:
    def __init__(self, schema: str, channels: Collection[str]) -> None:
        self.schema = schema
        self.s = f'"{schema}"'
        self.channels = frozenset(channels)

    async def people(
        self, conn: asyncpg.Connection, ids: Sequence[str], kind: str
    ) -> dict[str, Person]:
        rows = await conn.fetch(
            f"""SELECT person_id, phone IS NOT NULL AS sms, email IS NOT NULL AS email,
                       wecom_id IS NOT NULL AS wecom, dingtalk_id IS NOT NULL AS dingtalk,
                       quiet_start, quiet_end, digest_at
                FROM {self.s}.people WHERE person_id = ANY($1::text[]) AND active""",
            list(ids),
        )
        prefs: dict[str, dict[tuple[str, str], Preference]] = {}
        for p in await conn.fetch(
            f"""SELECT person_id, channel, enabled, digest FROM {self.s}.preferences
                WHERE kind = $1 AND person_id = ANY($2::text[])""",
            kind,
            list(ids),
        ):
            prefs.setdefault(p["person_id"], {})[(kind, p["channel"])] = Preference(
                p["enabled"], p["digest"]
            )
        people = {}
        for r in rows:
            addresses = {"inbox"} | {c for c in ADDRESS_COLUMNS if r[c]}
            quiet = None
            if r["quiet_start"] is not None and r["quiet_end"] is not None:
                quiet = QuietHours(r["quiet_start"], r["quiet_end"])
            people[r["person_id"]] = Person(
                r["person_id"],
                frozenset(addresses),
                prefs.get(r["person_id"], {}),
                quiet,
                r["digest_at"] or DEFAULT_DIGEST_AT,
            )
        return people

    async def plan(
        self,
        conn: asyncpg.Connection,
        store: EventStore,
        notice: Notice,
        now: dt.datetime,
        ctx: CommandContext,
    ) -> int:
        """Write the notice's deliveries; returns how many (0 when it was planned before)."""
        kind = notice.kind
        fresh = await conn.fetchval(
            f"""INSERT INTO {self.s}.notices (source_event_id, kind, source_type, township_id,
                    subject_ref, context, urgent, created_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING true""",
            notice.source_event_id,
            kind.code,
            notice.source_type,
            notice.township_id,
            notice.subject_ref,
            dict(notice.context),
            kind.urgent,
            now,
        )
        if not fresh:
            return 0
        recipients = list(dict.fromkeys(notice.recipients))
        people = await self.people(conn, recipients, kind.code)
        rows: list[tuple[str, str, str, dt.datetime, bool, bool]] = []
        for person_id in recipients:
            # Someone the directory does not know (an invited guest) still gets the inbox.
            person = people.get(person_id) or Person(person_id, frozenset({"inbox"}))
            for route in routes(kind, person, now):
                if route.channel in self.channels:
                    rows.append(
                        (person_id, route.channel, "", route.not_before, route.held, route.digest)
                    )
        if kind.groups and notice.township_id:
            for g in await conn.fetch(
                f"SELECT group_id, channel FROM {self.s}.groups WHERE township_id = $1 AND active",
                notice.township_id,
            ):
                if g["channel"] in self.channels:
                    rows.append((f"group:{g['group_id']}", g["channel"], "", now, False, False))
        # COPY, not INSERT … ON CONFLICT: the notice's row above was new in this transaction, so
        # none of its deliveries can exist yet (the unique key stays as the backstop). It is
        # what lets a county-wide notice be planned in seconds.
        source = uuid.UUID(notice.source_event_id)
        await conn.copy_records_to_table(
            "deliveries",
            schema_name=self.schema,
            columns=[
                "source_event_id",
                "recipient_id",
                "kind",
                "channel",
                "township_id",
                "not_before",
                "held",
                "digest",
                "created_at",
            ],
            records=[
                (
                    source,
                    r[0],
                    kind.code,
                    r[1],
                    notice.township_id,
                    r[3],
                    r[4],
                    r[5],
                    now,
                )
                for r in rows
            ],
        )
        per_channel: dict[str, int] = {}
        for r in rows:
            per_channel[r[1]] = per_channel.get(r[1], 0) + 1
        request = StreamWrite(
            f"notice:{notice.source_event_id}:{kind.code}",
            0,
            [
                NotificationRequested(
                    source_event_id=notice.source_event_id,
                    source_type=notice.source_type,
                    kind=kind.code,
                    township_id=notice.township_id,
                    subject_ref=notice.subject_ref,
                    recipients=len(recipients),
                    channels=per_channel,
                    held=sum(r[4] for r in rows),
                    digested=sum(r[5] for r in rows),
                    requested_at=now,
                )
            ],
        )
        await webhooks.append(store, conn, [request], ctx)
        return len(rows)
