"""SMS (短信): what the Alibaba Cloud and Tencent Cloud adapters share.

Both providers send only registered templates under an approved signature (签名), take a
caller context that they echo back and keep with the receipt (Alibaba ``OutId``, Tencent
``SessionContext``), and put several numbers in one request. A request's context is the
delivery id of its first message: a message sent alone is found again by its own delivery id,
and a message of an unclear batch carries the batch's context in ``provider_id`` (``ctx:…``)
for ``receipt`` to look for. A batch never holds the same number twice, so number + context
name one message.

A provider's error code becomes an outcome by one rule of ours: a refusal of *the message*
(bad number, template or parameters, blacklisted) is FAILED; a refusal of *us* (throttled,
out of credit, a key or signature problem, the provider's own fault) is RETRY, because the
same message goes through once the county fixes its account. Codes we do not know are RETRY:
the sender's bounded attempts then end with the code in the failure.
"""

from __future__ import annotations

import abc
import asyncio
import datetime as dt
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import httpx
from cunzhi_platform.clock import SHANGHAI, Clock, SystemClock

from .base import Message, Outcome, SendResult
from .http import TRANSPORT_ERRORS, transport_failure

SINGLE_SMS_CHARS = 70
"""Characters (signature 【…】 included) that one SMS carries; both providers count so."""
PART_CHARS = 67
"""Characters per part of a longer SMS (the rest of each part carries the joining header)."""
MAX_SMS_CHARS = 500
"""The longest text the providers take (signature, template text and parameters)."""

UNTIL_MIDNIGHT = -1.0
"""A daily limit: wait until the provider's day (Beijing time) starts again."""

CONTEXT_PREFIX = "ctx:"


@dataclass(frozen=True)
class Rule:
    """What a provider's code means for us: the outcome, in words, and how long to wait."""

    outcome: Outcome
    meaning: str
    wait_s: float | None = None

    def wait(self, now: dt.datetime) -> float | None:
        return seconds_to_midnight(now) if self.wait_s == UNTIL_MIDNIGHT else self.wait_s


def sms_parts(text: str, sign_name: str) -> int:
    """How many SMS ``text`` is billed as once the provider adds 【sign_name】."""
    length = len(text) + len(sign_name) + 2
    return 1 if length <= SINGLE_SMS_CHARS else -(-length // PART_CHARS)


def seconds_to_midnight(now: dt.datetime) -> float:
    local = now.astimezone(SHANGHAI)
    midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), SHANGHAI)
    return (midnight - local).total_seconds()


def judge(
    provider: str,
    code: str,
    message: str,
    exact: Mapping[str, Rule],
    prefixes: Sequence[tuple[str, Rule]],
    now: dt.datetime,
) -> SendResult:
    """A provider's error code as an outcome, with the code and its meaning in words."""
    rule = exact.get(code) or next((r for p, r in prefixes if code.startswith(p)), None)
    if rule is None:
        rule = Rule(Outcome.RETRY, "a code this adapter does not know")
    return SendResult(
        rule.outcome,
        error=f"{provider}: {code} ({message}): {rule.meaning}",
        retry_after_s=rule.wait(now),
    )


class SmsChannel(abc.ABC):
    """Groups messages into provider requests and spreads each answer over its messages."""

    name = "sms"
    at_most_once = False  # the receipt finds an earlier send (OutId, SessionContext)
    provider: str
    max_batch: int
    """Messages per ``send`` call (the sender's claim size)."""
    per_request: int
    """Numbers per provider request (the provider's batch limit)."""

    def __init__(
        self,
        *,
        endpoint: str,
        sign_name: str,
        timeout_s: float = 5.0,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.sign_name = sign_name
        self.clock = clock or SystemClock()
        # trust_env off: a proxy from the environment must not see the keys or the numbers.
        self.client = httpx.AsyncClient(timeout=timeout_s, transport=transport, trust_env=False)

    async def aclose(self) -> None:
        await self.client.aclose()

    def send_ids(self, messages: Sequence[Message]) -> list[str | None]:
        """For ``receipt``, the context each message's request will carry (``ctx:…``; None:
        no request), for the sender to keep before sending: the messages of a batch held by a
        sender that died are found under the batch's context, not under their own ids."""
        out: list[str | None] = [None] * len(messages)
        for batch in self._requests(messages):
            for i in batch:
                out[i] = CONTEXT_PREFIX + messages[batch[0]].delivery_id
        return out

    def _requests(self, messages: Sequence[Message]) -> list[list[int]]:
        """Indexes of ``messages`` per provider request: one template (and, for Tencent, one
        parameter set) each, never one number twice; messages without a template in none."""
        requests: dict[Hashable, list[list[int]]] = {}
        for i, message in enumerate(messages):
            if not message.template_code:
                continue
            chunks = requests.setdefault(self.batch_key(message), [])
            chunk = next(
                (
                    c
                    for c in chunks
                    if len(c) < self.per_request
                    and all(messages[j].address != message.address for j in c)
                ),
                None,
            )
            if chunk is None:
                chunks.append([i])
            else:
                chunk.append(i)
        return [chunk for chunks in requests.values() for chunk in chunks]

    async def send(self, messages: Sequence[Message]) -> list[SendResult]:
        results = [
            SendResult(
                Outcome.FAILED,
                error=f"{self.provider}: no SMS template for this notice "
                "(providers send registered templates only)",
            )
        ] * len(messages)
        batches = self._requests(messages)
        answers = await asyncio.gather(
            *(self._send_batch([messages[i] for i in b]) for b in batches)
        )
        for batch, answer in zip(batches, answers, strict=True):
            for i, result in zip(batch, answer, strict=True):
                results[i] = result
        return results

    async def _send_batch(self, batch: list[Message]) -> list[SendResult]:
        try:
            return await self.send_batch(batch, batch[0].delivery_id)
        except TRANSPORT_ERRORS as exc:
            failure = transport_failure(exc, self.provider)
            if failure.outcome is Outcome.UNCLEAR:
                failure = SendResult(
                    failure.outcome,
                    provider_id=CONTEXT_PREFIX + batch[0].delivery_id,
                    error=failure.error,
                )
            return [failure] * len(batch)

    def unclear(self, batch: list[Message], context: str, why: str) -> list[SendResult]:
        return [SendResult(Outcome.UNCLEAR, provider_id=CONTEXT_PREFIX + context, error=why)] * len(
            batch
        )

    def now(self) -> dt.datetime:
        return self.clock.now()

    @staticmethod
    def context_of(message: Message, provider_id: str | None) -> str:
        """The context an earlier send of ``message`` carried."""
        if provider_id and provider_id.startswith(CONTEXT_PREFIX):
            return provider_id[len(CONTEXT_PREFIX) :]
        return message.delivery_id

    @staticmethod
    def own_id(provider_id: str | None) -> str | None:
        """The provider's own id of a send (BizId, SerialNo), None if we only know a context."""
        if provider_id is None or provider_id.startswith(CONTEXT_PREFIX):
            return None
        return provider_id

    @abc.abstractmethod
    def batch_key(self, message: Message) -> Hashable:
        """Messages with equal keys may share one provider request."""

    @abc.abstractmethod
    async def send_batch(self, batch: list[Message], context: str) -> list[SendResult]:
        """One provider request; transport errors propagate (``send`` maps them)."""

    @abc.abstractmethod
    async def receipt(self, message: Message, provider_id: str | None) -> SendResult | None: ...
