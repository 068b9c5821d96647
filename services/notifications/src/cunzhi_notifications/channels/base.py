"""What every channel adapter offers the sender, and what it answers.

The sender claims deliveries from the ledger, renders them into ``Message``s and hands them to
the channel in batches of at most ``max_batch``. The channel answers one ``SendResult`` per
message, in order. It never raises for a provider's answer: a refusal, a throttle, garbage or a
time-out are outcomes the sender acts on (retry with backoff, fail for good, check a receipt).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Outcome(StrEnum):
    SENT = "sent"
    """The provider accepted it (a later receipt may still say delivered or failed)."""
    RETRY = "retry"
    """Not sent, and trying again later may work (throttled, provider down, 5xx)."""
    FAILED = "failed"
    """Not sent, and never will be (bad number, template refused, 4xx, 410 Gone)."""
    UNCLEAR = "unclear"
    """Perhaps sent (time-out after the request left): check ``receipt`` before retrying."""


@dataclass(frozen=True)
class Message:
    """One rendered notice to one recipient (or one group, for robots) on one channel."""

    delivery_id: str
    """Our ledger id: passed to providers that take a caller id, so a resend is recognised."""
    address: str = field(repr=False)
    """What the channel needs: a phone number, an e-mail address, a robot or endpoint URL.
    Personal data: kept out of ``repr`` so that logging a message does not log it."""
    subject: str
    body: str
    template_code: str | None = None
    """The provider's template (SMS providers send only registered templates)."""
    template_params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    secret: str | None = field(default=None, repr=False)
    """The address's own signing secret, where it has one: a DingTalk robot's ``SEC…`` secret,
    a webhook endpoint's ``whsec_…`` secret. Kept out of ``repr`` so it never reaches a log."""


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    provider_id: str | None = None
    """The provider's id of the send (BizId, SerialNo, msgid…), for receipts."""
    error: str | None = None
    """In words, with the provider's code: what a person reads in the failures list."""
    retry_after_s: float | None = None
    """A provider's own wait (429 Retry-After, a throttling code): honoured over our backoff."""
    address_gone: bool = False
    """The address will never take anything again (a webhook endpoint answering 410 Gone)."""
    delivered: bool = False
    """A receipt says it reached the person's phone (SMS status report), not only the provider."""
    unconfirmed: bool = False
    """Recorded as sent without the provider's word (an unclear send on an at-most-once
    channel): it may not have arrived, and it is not sent again."""


class Channel(Protocol):
    name: str
    """``sms``, ``wecom``, ``dingtalk``, ``email`` or ``webhook``; ``inbox`` needs no adapter."""
    max_batch: int

    @property
    def at_most_once(self) -> bool:
        """True where a resend after an unclear outcome could arrive twice and nothing can tell
        (no idempotency key, no receipt: group robots). The sender then records an unclear
        send as sent, unconfirmed, instead of sending it again."""
        ...

    async def send(self, messages: Sequence[Message]) -> list[SendResult]:
        """One result per message, in order; never raises for what a provider answers."""
        ...

    async def receipt(self, message: Message, provider_id: str | None) -> SendResult | None:
        """What the provider knows of an earlier send, or None if it cannot tell."""
        ...
