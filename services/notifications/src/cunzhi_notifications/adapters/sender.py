"""The sender: claims due deliveries, renders them, hands them to the channels, records outcomes
(each provider call's as soon as it answers, so a death costs only the call in flight).

Each channel has its own lane, claiming only that channel's deliveries: a webhook endpoint or
provider that is slow holds up nothing on the other channels. No provider is asked anything
while a transaction of ours is open. Claiming sets a lease (``claim``, ``lease_until``) under
``FOR UPDATE SKIP LOCKED``, so several senders share the ledger without taking the same row.
Sending happens outside any transaction; the outcome is recorded only by the holder of the
claim. A sender that dies after claiming leaves the row ``sending``: once the lease expires
another sender takes it, and because the first one may have sent it, asks the channel's
``receipt`` before sending again. An ``UNCLEAR`` answer is treated the same way at the next
attempt. Providers get our delivery id, derived from the ledger's unique key, so one that
dedupes recognises a resend too.

Group robots and digests: the due deliveries of one group (or of one person's digest) on one
channel go out as one message, never one per person.

At most once where nothing can tell (ours, CHANNELS.md): group robots take no idempotency key
and keep no receipt, so a message whose send was unclear (no answer after the request left, or a
sender that died holding it) is recorded as sent, unconfirmed, and never posted again — a
digest twice in a group is worse than one perhaps lost, and every notice is in each member's
inbox as well.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from cunzhi_platform.clock import Clock
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.eventstore import EventStore, StreamWrite
from cunzhi_platform.runtime import Background, Runtime
from prometheus_client import Counter

from ..channels.base import Channel, Message, Outcome, SendResult
from ..domain.errors import TemplateError
from ..domain.routing import Backoff, bundles
from ..domain.templates import Template, default, render
from ..events import (
    DeliveryEvent,
    DigestSent,
    NotificationDelivered,
    NotificationFailed,
    NotificationSent,
    WebhookEndpointDisabled,
)
from . import webhooks
from .ledger import ADDRESS_COLUMNS, derived_id

_log = structlog.get_logger(__name__)
SENDS = Counter(
    "cunzhi_notifications_sends_total",
    "What channels answered the sender (one per message; a digest is one message)",
    ["channel", "outcome"],
)
ACTOR = "notifications-sender"
GROUP_SPACING = dt.timedelta(seconds=60)
"""Ours: a group robot gets at most one message a minute, everything due for it in one digest
(DingTalk takes 20 a minute per robot, WeCom 20; several services may share a group)."""
RECEIPTS_CHANNEL = "sms"
"""The channel whose providers keep status reports (robots, e-mail and webhooks do not)."""
RECEIPTS_FOR = dt.timedelta(hours=24)
RECEIPTS_EVERY = dt.timedelta(minutes=5)
"""Ours: status reports are asked for every 5 minutes for a day after sending."""


@dataclass
class _Send:
    """One message to send, and the ledger rows it stands for."""

    channel: str
    message: Message
    rows: list[asyncpg.Record]
    unclear: bool
    kinds: list[str]

    @property
    def digest_id(self) -> str | None:
        return self.message.delivery_id if len(self.rows) > 1 else None


class Sender:
    def __init__(
        self,
        schema: str,
        channels: Mapping[str, Channel],
        *,
        backoff: Backoff | None = None,
        batch: int = 500,
        lease: dt.timedelta = dt.timedelta(minutes=2),
        rng: random.Random | None = None,
    ) -> None:
        self.s = f'"{schema}"'
        self.channels = channels
        self.backoff = backoff or Backoff()
        self.batch = batch
        self.lease = lease
        self.rng = rng or random.Random()
        self.after_claim: Callable[[], Coroutine[Any, Any, None]] | None = None
        """Tests only: runs between claiming and sending (to kill a sender right there)."""

    async def claim(
        self, pool: asyncpg.Pool, now: dt.datetime, lane: str | None
    ) -> tuple[str, list[asyncpg.Record]]:
        """A batch of the lane's due deliveries: one channel's, or (``None``) those of channels
        no adapter is configured for."""
        claim = derived_id("claim", now.isoformat(), str(self.rng.random()))
        which = "channel = $6" if lane else "channel <> ALL($6::text[])"
        rows = await pool.fetch(
            f"""WITH due AS (
                    SELECT delivery_id FROM {self.s}.deliveries c
                    WHERE not_before <= $1 AND {which} AND (status = 'pending'
                          OR (status = 'sending' AND lease_until < $1))
                      AND NOT EXISTS (
                          SELECT 1 FROM {self.s}.groups g
                          WHERE c.recipient_id = 'group:' || g.group_id
                            AND g.last_sent_at > $1::timestamptz - $5::interval)
                    ORDER BY not_before LIMIT $2 FOR UPDATE OF c SKIP LOCKED)
                UPDATE {self.s}.deliveries d SET status = 'sending', claim = $3,
                    lease_until = $1 + $4::interval, attempts = d.attempts + 1,
                    unclear = d.unclear OR d.status = 'sending'
                FROM due WHERE d.delivery_id = due.delivery_id
                RETURNING d.*""",
            now,
            self.batch,
            claim,
            self.lease,
            GROUP_SPACING,
            lane or sorted(self.channels),
        )
        return claim, rows

    async def run_once(
        self, pool: asyncpg.Pool, store: EventStore, clock: Clock, lane: str | None
    ) -> int:
        """Claim one batch of the lane's deliveries, send it, record what happened; returns
        how many rows were claimed."""
        claim, rows = await self.claim(pool, clock.now(), lane)
        if not rows:
            return 0
        if self.after_claim is not None:
            await self.after_claim()
        sends, failures = await self.prepare(pool, rows)
        if failures:
            await self.record(pool, store, clock.now(), claim, [], failures)

        async def record(outcomes: list[tuple[_Send, SendResult]]) -> None:
            for item, result in outcomes:
                SENDS.labels(item.channel, result.outcome.value).inc()
            await self.record(pool, store, clock.now(), claim, outcomes, [])

        if lane and sends:
            await self.send(lane, sends, pool, claim, record)
        return len(rows)

    async def prepare(
        self, pool: asyncpg.Pool, rows: Sequence[asyncpg.Record]
    ) -> tuple[list[_Send], list[tuple[asyncpg.Record, str]]]:
        """Render every claimed row into messages; what cannot be rendered fails with why."""
        s = self.s
        events = list({str(r["source_event_id"]) for r in rows})
        contexts = {
            (str(n["source_event_id"]), n["kind"]): n["context"]
            for n in await pool.fetch(
                f"SELECT source_event_id, kind, context FROM {s}.notices "
                "WHERE source_event_id = ANY($1::uuid[])",
                events,
            )
        }
        people = {
            p["person_id"]: p
            for p in await pool.fetch(
                f"SELECT * FROM {s}.people WHERE person_id = ANY($1::text[])",
                list({r["recipient_id"] for r in rows}),
            )
        }
        groups = {
            f"group:{g['group_id']}": g
            for g in await pool.fetch(
                f"SELECT * FROM {s}.groups WHERE group_id = ANY($1::text[])",
                [r["recipient_id"].removeprefix("group:") for r in rows],
            )
        }
        endpoints = {
            f"endpoint:{e['endpoint_id']}": e
            for e in await pool.fetch(
                f"SELECT * FROM {s}.endpoints WHERE endpoint_id = ANY($1::text[])",
                [r["recipient_id"].removeprefix("endpoint:") for r in rows],
            )
        }
        overrides = {
            (t["kind"], t["channel"]): Template(t["subject"], t["body"])
            for t in await pool.fetch(f"SELECT kind, channel, subject, body FROM {s}.templates")
        }

        def template(kind: str, channel: str) -> Template:
            return overrides.get((kind, channel)) or default(kind, channel)

        by_id = {str(r["delivery_id"]): r for r in rows}

        def address_and_name(row: asyncpg.Record) -> tuple[str, str, str | None]:
            """Where it goes, whom the text addresses, and the address's signing secret."""
            recipient, channel = row["recipient_id"], row["channel"]
            if recipient.startswith("endpoint:"):
                e = endpoints.get(recipient)
                if e is None or not e["active"]:
                    raise LookupError(f"endpoint {recipient} is unknown or disabled")
                return e["url"], e["endpoint_id"], e["secret"]
            if recipient.startswith("group:"):
                g = groups.get(recipient)
                if g is None or not g["active"]:
                    raise LookupError(f"group {recipient} is unknown or disabled")
                return g["webhook_url"], g["name"], g["secret"]
            p = people.get(recipient)
            name = p["name"] if p else recipient
            if channel == "inbox":
                return recipient, name, None
            address = p[ADDRESS_COLUMNS[channel]] if p else None
            if not address:
                raise LookupError(f"no {ADDRESS_COLUMNS[channel]} on record for this person")
            return address, name, None

        def rendered(
            row: asyncpg.Record, name: str, layout: str | None = None
        ) -> tuple[str, str, dict[str, str]]:
            """``layout``: the channel whose template to use (a digest lists inbox texts)."""
            context = contexts[(str(row["source_event_id"]), row["kind"])]
            if row["channel"] == webhooks.CHANNEL:
                return row["kind"], webhooks.body(context), {}
            context = {**context, "name": name}
            channel = layout or row["channel"]
            out = render(template(row["kind"], channel), channel, context)
            params = {k: str(v) for k, v in context.items() if v is not None}
            return out.subject, out.body, params

        def compose() -> tuple[list[_Send], list[tuple[asyncpg.Record, str]]]:
            # Rendering is CPU work (each template within its bounds, up to a second):
            # off the event loop, so a heavy template holds up no request.
            failures: list[tuple[asyncpg.Record, str]] = []
            sends: list[_Send] = []
            singles, grouped = bundles(
                (d, r["recipient_id"], r["channel"], r["digest"]) for d, r in by_id.items()
            )
            # A bundle of one is just a message: the group or digest layout would only add noise.
            singles += [ids[0] for ids in grouped.values() if len(ids) == 1]
            grouped = {key: ids for key, ids in grouped.items() if len(ids) > 1}
            for delivery in singles:
                row = by_id[delivery]
                if row["channel"] not in self.channels:
                    failures.append((row, f"no adapter is configured for channel {row['channel']}"))
                    continue
                try:
                    address, name, secret = address_and_name(row)
                    subject, body, params = rendered(row, name)
                except (LookupError, TemplateError) as exc:
                    failures.append((row, str(exc)))
                    continue
                message = Message(
                    delivery,
                    address,
                    subject,
                    body,
                    f"CUNZHI_{row['kind'].upper()}",
                    params,
                    secret=secret,
                )
                sends.append(_Send(row["channel"], message, [row], row["unclear"], [row["kind"]]))
            for (_, channel), ids in grouped.items():
                members = [by_id[d] for d in sorted(ids)]
                if channel not in self.channels:
                    failures += [
                        (m, f"no adapter is configured for channel {channel}") for m in members
                    ]
                    continue
                try:
                    address, name, secret = address_and_name(members[0])
                    items = []
                    for m in members:
                        subject, body, _ = rendered(m, name, "inbox")
                        items.append({"subject": subject, "body": body})
                    digest = render(
                        template("digest", channel), channel, {"name": name, "items": items}
                    )
                except (LookupError, TemplateError) as exc:
                    failures += [(m, str(exc)) for m in members]
                    continue
                # Stable over retries, so a provider deduping on it recognises a resend.
                message_id = derived_id("digest", *sorted(ids))
                message = Message(
                    message_id, address, digest.subject, digest.body, "CUNZHI_DIGEST", secret=secret
                )
                sends.append(
                    _Send(
                        channel,
                        message,
                        members,
                        any(m["unclear"] for m in members),
                        sorted({m["kind"] for m in members}),
                    )
                )
            return sends, failures

        return await asyncio.to_thread(compose)

    async def send(
        self,
        name: str,
        sends: list[_Send],
        pool: asyncpg.Pool,
        claim: str,
        record: Callable[[list[tuple[_Send, SendResult]]], Coroutine[Any, Any, None]],
    ) -> None:
        """Send on one channel, recording each provider call's outcomes as soon as it answers:
        a sender that dies then leaves only the call in flight to be asked about or resent
        (an e-mail sent again carries its Message-ID; still, a mailbox may show it twice)."""
        channel = self.channels[name]
        out: list[tuple[_Send, SendResult]] = []
        todo: list[_Send] = []
        for item in sends:
            known = None
            if item.unclear and channel.at_most_once:
                last = item.rows[0]["last_error"] or "a sender stopped while holding it"
                known = _unconfirmed(SendResult(Outcome.UNCLEAR, error=last))
            elif item.unclear:
                # Perhaps sent by a sender that died or timed out: ask before sending again.
                provider_id = item.rows[0]["provider_id"]
                known = await _safely(channel.receipt(item.message, provider_id))
            if known is not None and known.outcome in (Outcome.SENT, Outcome.FAILED):
                out.append((item, known))
            else:
                todo.append(item)
        if out:
            await record(out)
        for start in range(0, len(todo), channel.max_batch):
            chunk = todo[start : start + channel.max_batch]
            await self.keep_send_ids(pool, claim, channel, chunk)
            try:
                results = await channel.send([i.message for i in chunk])
            except Exception as exc:  # the contract says never; if it does, it may have sent
                _log.warning("channel_raised", channel=name, error=repr(exc))
                results = [SendResult(Outcome.UNCLEAR, error=f"the adapter raised {exc!r}")] * len(
                    chunk
                )
            if channel.at_most_once:
                results = [_unconfirmed(r) if r.outcome is Outcome.UNCLEAR else r for r in results]
            await record(list(zip(chunk, results, strict=True)))

    async def keep_send_ids(
        self, pool: asyncpg.Pool, claim: str, channel: Channel, chunk: Sequence[_Send]
    ) -> None:
        """Where a channel says ahead what its receipt will look for (SMS: the batch's
        context), keep that on the rows before sending, for a sender that takes them over."""
        send_ids = getattr(channel, "send_ids", None)
        if send_ids is None:
            return
        pairs = [
            (str(row["delivery_id"]), send_id)
            for item, send_id in zip(chunk, send_ids([i.message for i in chunk]), strict=True)
            if send_id is not None
            for row in item.rows
        ]
        await pool.execute(
            f"""UPDATE {self.s}.deliveries d SET provider_id = u.send_id
                FROM unnest($1::uuid[], $2::text[]) AS u(id, send_id)
                WHERE d.delivery_id = u.id AND d.claim = $3""",
            [p[0] for p in pairs],
            [p[1] for p in pairs],
            claim,
        )

    async def record(
        self,
        pool: asyncpg.Pool,
        store: EventStore,
        now: dt.datetime,
        claim: str,
        outcomes: Sequence[tuple[_Send, SendResult]],
        failures: Sequence[tuple[asyncpg.Record, str]],
    ) -> None:
        s = self.s
        writes: list[StreamWrite] = []
        extra: list[StreamWrite] = []
        async with pool.acquire() as conn, conn.transaction():

            async def mark(row: asyncpg.Record, sql: str, *args: Any) -> int | None:
                """Apply ``sql`` if we still hold the claim; the stream version, or None."""
                version: int | None = await conn.fetchval(
                    f"UPDATE {s}.deliveries SET lease_until = NULL, claim = NULL, {sql} "
                    "WHERE delivery_id = $1 AND claim = $2 RETURNING stream_version",
                    row["delivery_id"],
                    claim,
                    *args,
                )
                return version

            async def fail(row: asyncpg.Record, reason: str) -> None:
                version = await mark(
                    row,
                    "status = 'failed', failed_at = $3, last_error = $4, unclear = false, "
                    "stream_version = stream_version + 1",
                    now,
                    reason,
                )
                if version is not None and row["channel"] != webhooks.CHANNEL:
                    writes.append(
                        _write(
                            row,
                            version,
                            NotificationFailed,
                            attempts=row["attempts"],
                            reason=reason,
                            failed_at=now,
                        )
                    )

            for row, reason in failures:
                await fail(row, reason)
            sent = [(item, result) for item, result in outcomes if result.outcome is Outcome.SENT]
            writes += await self.mark_sent(conn, claim, now, sent)
            for item, result in outcomes:
                if result.outcome is Outcome.SENT:
                    continue
                reason = result.error or result.outcome.value
                if result.outcome is Outcome.FAILED:
                    for row in item.rows:
                        await fail(row, reason)
                    if result.address_gone:
                        extra += await self.gone(conn, item.rows[0]["recipient_id"], reason, now)
                    continue
                for row in item.rows:
                    wait = self.backoff.next_try(row["attempts"], result.retry_after_s, self.rng)
                    if wait is None:
                        await fail(row, f"gave up after {row['attempts']} attempts: {reason}")
                        continue
                    await mark(
                        row,
                        "status = 'pending', not_before = $3, last_error = $4, unclear = $5, "
                        "provider_id = coalesce($6, provider_id)",
                        now + dt.timedelta(seconds=wait),
                        reason,
                        result.outcome is Outcome.UNCLEAR,
                        result.provider_id,
                    )
            if writes or extra:
                await webhooks.append(store, conn, [*writes, *extra], CommandContext(actor=ACTOR))
            inbox = [r for i, res in outcomes if i.channel == "inbox" for r in i.rows]
            if inbox and any(res.outcome is Outcome.SENT for _, res in outcomes):
                await conn.execute(
                    "SELECT pg_notify($1, r) FROM unnest($2::text[]) r",
                    f"{store.schema}.inbox",
                    sorted({r["recipient_id"] for r in inbox}),
                )

    async def mark_sent(
        self,
        conn: asyncpg.Connection,
        claim: str,
        now: dt.datetime,
        sent: Sequence[tuple[_Send, SendResult]],
    ) -> list[StreamWrite]:
        """Record every accepted message in one statement; the events of the rows still ours."""
        rows = [(item, result, row) for item, result in sent for row in item.rows]
        if not rows:
            return []
        # A receipt may already say it reached the phone: then NotificationDelivered too.
        marked = {
            str(r["delivery_id"]): r["stream_version"]
            for r in await conn.fetch(
                f"""UPDATE {self.s}.deliveries d SET status = u.status, sent_at = $2,
                        provider_id = u.provider_id, unclear = u.unconfirmed,
                        last_error = coalesce(u.note, d.last_error), digest_id = u.digest_id,
                        subject = u.subject, body = u.body, lease_until = NULL, claim = NULL,
                        stream_version = d.stream_version + u.bump
                    FROM unnest($3::uuid[], $4::text[], $5::text[], $6::uuid[], $7::text[],
                                $8::text[], $9::int[], $10::bool[], $11::text[])
                         AS u(id, status, provider_id, digest_id, subject, body, bump,
                              unconfirmed, note)
                    WHERE d.delivery_id = u.id AND d.claim = $1
                    RETURNING d.delivery_id, d.stream_version""",
                claim,
                now,
                [row["delivery_id"] for _, _, row in rows],
                ["delivered" if res.delivered else "sent" for _, res, _ in rows],
                [res.provider_id for _, res, _ in rows],
                [item.digest_id for item, _, _ in rows],
                [item.message.subject for item, _, _ in rows],
                [item.message.body for item, _, _ in rows],
                [2 if res.delivered else 1 for _, res, _ in rows],
                [res.unconfirmed for _, res, _ in rows],
                [res.error if res.unconfirmed else None for _, res, _ in rows],
            )
        }
        groups = sorted(
            {
                r["recipient_id"].removeprefix("group:")
                for _, _, r in rows
                if r["recipient_id"].startswith("group:")
            }
        )
        if groups:
            await conn.execute(
                f"UPDATE {self.s}.groups SET last_sent_at = $2 WHERE group_id = ANY($1::text[])",
                groups,
                now,
            )
        writes: list[StreamWrite] = []
        for item, result, row in rows:
            version = marked.get(str(row["delivery_id"]))
            if version is None:
                continue  # our lease ran out and another sender took it: it records
            if row["channel"] == webhooks.CHANNEL:
                continue  # the transport of our events publishes none of its own
            events: list[DeliveryEvent] = [
                _event(
                    row,
                    NotificationSent,
                    attempt=row["attempts"],
                    provider_id=result.provider_id,
                    digest_id=item.digest_id,
                    unconfirmed=result.unconfirmed,
                    sent_at=now,
                )
            ]
            if result.delivered:
                events.append(
                    _event(
                        row, NotificationDelivered, provider_id=result.provider_id, delivered_at=now
                    )
                )
            writes.append(
                StreamWrite(f"delivery:{row['delivery_id']}", version - len(events), events)
            )
        for item, _ in sent:
            if item.digest_id is not None and any(
                str(r["delivery_id"]) in marked for r in item.rows
            ):
                digest = DigestSent(
                    digest_id=item.digest_id,
                    recipient_id=item.rows[0]["recipient_id"],
                    channel=item.channel,
                    delivery_ids=[str(r["delivery_id"]) for r in item.rows],
                    kinds=item.kinds,
                    sent_at=now,
                )
                writes.append(StreamWrite(f"digest:{item.digest_id}", 0, [digest]))
        return writes

    async def gone(
        self, conn: asyncpg.Connection, recipient: str, reason: str, now: dt.datetime
    ) -> list[StreamWrite]:
        """The address will never take anything again: stop sending to it."""
        s = self.s
        if recipient.startswith("group:"):
            await conn.execute(
                f"UPDATE {s}.groups SET active = false WHERE group_id = $1",
                recipient.removeprefix("group:"),
            )
            return []
        if not recipient.startswith("endpoint:"):
            return []
        endpoint = recipient.removeprefix("endpoint:")
        was_active = await conn.fetchval(
            f"""UPDATE {s}.endpoints SET active = false, disabled_reason = $2
                WHERE endpoint_id = $1 AND active RETURNING true""",
            endpoint,
            reason,
        )
        await conn.execute(
            f"""UPDATE {s}.deliveries SET status = 'cancelled', last_error = $2
                WHERE recipient_id = $1 AND status = 'pending'""",
            recipient,
            f"endpoint disabled: {reason}",
        )
        if not was_active:
            return []
        event = WebhookEndpointDisabled(endpoint_id=endpoint, reason=reason, disabled_at=now)
        version = await conn.fetchval(
            f"SELECT coalesce(max(stream_version), 0) FROM {s}.events WHERE stream_id = $1",
            f"endpoint:{endpoint}",
        )
        return [StreamWrite(f"endpoint:{endpoint}", version, [event])]

    async def receipts(
        self, pool: asyncpg.Pool, store: EventStore, clock: Clock, limit: int = 100
    ) -> int:
        """Ask the SMS provider what became of recent sends (status reports): delivered ones
        publish ``NotificationDelivered``, undelivered ones ``NotificationFailed``."""
        channel = self.channels.get(RECEIPTS_CHANNEL)
        if channel is None:
            return 0
        now = clock.now()
        rows = await pool.fetch(
            f"""WITH due AS (
                    SELECT delivery_id FROM {self.s}.deliveries
                    WHERE status = 'sent' AND channel = $4
                      AND sent_at > $1::timestamptz - $2::interval
                      AND (receipt_checked_at IS NULL
                           OR receipt_checked_at < $1::timestamptz - $3::interval)
                    ORDER BY sent_at LIMIT $5 FOR UPDATE SKIP LOCKED)
                UPDATE {self.s}.deliveries d SET receipt_checked_at = $1
                FROM due, {self.s}.people p
                WHERE d.delivery_id = due.delivery_id AND p.person_id = d.recipient_id
                RETURNING d.*, p.phone""",
            now,
            RECEIPTS_FOR,
            RECEIPTS_EVERY,
            RECEIPTS_CHANNEL,
            limit,
        )
        # The provider is asked outside any transaction: a slow one holds no session open.
        answers: list[tuple[asyncpg.Record, SendResult]] = []
        for row in rows:
            message = Message(str(row["delivery_id"]), row["phone"] or "", "", row["body"] or "")
            known = await _safely(channel.receipt(message, row["provider_id"]))
            if known is not None and (known.delivered or known.outcome is Outcome.FAILED):
                answers.append((row, known))
        if not answers:
            return len(rows)
        writes: list[StreamWrite] = []
        async with pool.acquire() as conn, conn.transaction():
            for row, known in answers:
                failed = known.outcome is Outcome.FAILED
                version = await conn.fetchval(
                    f"""UPDATE {self.s}.deliveries SET status = $2, last_error = $3,
                            failed_at = CASE WHEN $2 = 'failed' THEN $4::timestamptz END,
                            stream_version = stream_version + 1
                        WHERE delivery_id = $1 AND status = 'sent' RETURNING stream_version""",
                    row["delivery_id"],
                    "failed" if failed else "delivered",
                    known.error if failed else None,
                    now,
                )
                if version is None:
                    continue
                if failed:
                    event = _write(
                        row,
                        version,
                        NotificationFailed,
                        attempts=row["attempts"],
                        reason=known.error or "not delivered",
                        failed_at=now,
                    )
                else:
                    event = _write(
                        row,
                        version,
                        NotificationDelivered,
                        provider_id=row["provider_id"],
                        delivered_at=now,
                    )
                writes.append(event)
            await webhooks.append(store, conn, writes, CommandContext(actor=ACTOR))
        return len(rows)

    def loop(self) -> Background:
        """A lane per channel, and one failing what no channel handles: a slow or hanging
        channel (a webhook endpoint that never answers) holds up only its own deliveries, not
        an urgent SMS or the inbox."""

        async def sender(rt: Runtime) -> None:
            idle = min(rt.settings.scheduler_interval_s, 1.0)

            async def lane(channel: str | None) -> None:
                while True:
                    if not await self.run_once(rt.pool, rt.store, rt.clock, channel):
                        if channel == RECEIPTS_CHANNEL:
                            # Idle: the moment to ask for status reports.
                            await self.receipts(rt.pool, rt.store, rt.clock)
                        await asyncio.sleep(idle)

            async with asyncio.TaskGroup() as lanes:
                for channel in [*sorted(self.channels), None]:
                    lanes.create_task(lane(channel), name=f"sender-{channel or 'unconfigured'}")

        return sender


def _event(row: asyncpg.Record, cls: type[DeliveryEvent], **fields: Any) -> DeliveryEvent:
    return cls(
        delivery_id=str(row["delivery_id"]),
        source_event_id=str(row["source_event_id"]),
        kind=row["kind"],
        recipient_id=row["recipient_id"],
        channel=row["channel"],
        **fields,
    )


def _write(
    row: asyncpg.Record, version: int, cls: type[DeliveryEvent], **fields: Any
) -> StreamWrite:
    """An event on the delivery's stream at the version ``version`` was bumped to."""
    return StreamWrite(f"delivery:{row['delivery_id']}", version - 1, [_event(row, cls, **fields)])


def _unconfirmed(unclear: SendResult) -> SendResult:
    """An unclear send on an at-most-once channel: sent, unconfirmed, never sent again."""
    return SendResult(
        Outcome.SENT,
        provider_id=unclear.provider_id,
        error=f"sent, unconfirmed (not sent again: the channel cannot tell): {unclear.error}",
        unconfirmed=True,
    )


async def _safely(call: Coroutine[Any, Any, SendResult | None]) -> SendResult | None:
    try:
        return await call
    except Exception as exc:
        _log.warning("receipt_failed", error=repr(exc))
        return None
