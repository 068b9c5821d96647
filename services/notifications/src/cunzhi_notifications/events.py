"""Events the notifications service publishes on ``cunzhi.notifications.events``.

What happened to every notice (通知), so that other systems and analytics can follow
deliveries: a notice planned for the recipients of a source event, each delivery sent, delivered
(where a provider's receipt says so), failed for good or read, digests sent, and webhook
endpoints disabled because they answered that they are gone.

Streams: ``notice:{source_event_id}:{kind}`` (the plan), ``delivery:{delivery_id}`` (one
recipient on one channel), ``digest:{digest_id}``, ``endpoint:{endpoint_id}``. Personal data
(phone numbers, e-mail addresses) never appears in these events: recipients are person ids.
"""

from __future__ import annotations

import datetime as dt

from cunzhi_platform.events import Event, EventRegistry

SERVICE = "notifications"
registry = EventRegistry()


@registry.register("cunzhi.notifications.NotificationRequested", version=1)
class NotificationRequested(Event):
    """A source event asks for a notice of ``kind``: the deliveries planned for it.

    ``channels`` counts the deliveries per channel; ``held`` those waiting for quiet hours to
    end and ``digested`` those waiting for the recipient's daily digest.
    """

    source_event_id: str
    source_type: str
    kind: str
    township_id: str | None = None
    subject_ref: str
    """What the notice is about (``forum:{id}``, ``topic:{id}``, ``call:{forum_id}``…)."""
    recipients: int
    channels: dict[str, int]
    held: int
    digested: int
    requested_at: dt.datetime


class DeliveryEvent(Event):
    """What every delivery event carries: which delivery, of which notice, to whom, how."""

    delivery_id: str
    source_event_id: str
    kind: str
    recipient_id: str
    """A person id, or ``group:{id}`` for a group robot, or ``endpoint:{id}``."""
    channel: str


@registry.register("cunzhi.notifications.NotificationSent", version=1)
class NotificationSent(DeliveryEvent):
    """The channel accepted the notice (for the inbox: it is in the person's inbox)."""

    attempt: int
    provider_id: str | None = None
    digest_id: str | None = None
    sent_at: dt.datetime
    unconfirmed: bool = False
    """Sent without the channel's word (a group robot that did not answer after the request
    left): it may not have arrived and is not sent again (at most once, CHANNELS.md)."""


@registry.register("cunzhi.notifications.NotificationDelivered", version=1)
class NotificationDelivered(DeliveryEvent):
    """A provider's receipt says the notice reached the handset, mailbox or group."""

    provider_id: str | None = None
    delivered_at: dt.datetime


@registry.register("cunzhi.notifications.NotificationFailed", version=1)
class NotificationFailed(DeliveryEvent):
    """The notice will not be sent: refused for good, or the last attempt failed."""

    attempts: int
    reason: str
    failed_at: dt.datetime


@registry.register("cunzhi.notifications.NotificationRead", version=1)
class NotificationRead(DeliveryEvent):
    """The person opened the notice in the in-app inbox (已读)."""

    read_at: dt.datetime


@registry.register("cunzhi.notifications.DigestSent", version=1)
class DigestSent(Event):
    """Several notices went to one recipient or group as one message (汇总)."""

    digest_id: str
    recipient_id: str
    channel: str
    delivery_ids: list[str]
    kinds: list[str]
    sent_at: dt.datetime


@registry.register("cunzhi.notifications.WebhookEndpointDisabled", version=1)
class WebhookEndpointDisabled(Event):
    """An endpoint answered that it is gone (HTTP 410): nothing more is sent to it."""

    endpoint_id: str
    reason: str
    disabled_at: dt.datetime
