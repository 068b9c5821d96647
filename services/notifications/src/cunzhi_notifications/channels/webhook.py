"""Outbound webhooks for other systems, signed per the Standard Webhooks specification.

Each message is one POST of its ``body`` (the JSON the core made) to its ``address``, with
``webhook-id`` = our delivery id (the same on every attempt, so a receiver dedupes),
``webhook-timestamp`` and ``webhook-signature`` (``v1,`` HMAC-SHA256 with the endpoint's
``whsec_`` secret, by the ``standardwebhooks`` package). Answers: 2xx SENT; 410 FAILED and the
address gone (the core disables the endpoint); 408, 429 and 5xx RETRY honouring
``Retry-After``; a redirect or any other 4xx FAILED; no answer RETRY or UNCLEAR (http.py).
Connections go only where the ``AddressPolicy`` allows (guard.py); redirects are not followed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence

import httpcore
from cunzhi_platform.clock import Clock, SystemClock
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from .base import Message, Outcome, SendResult
from .guard import AddressPolicy, ForbiddenAddress, GuardedBackend
from .http import TRANSPORT_ERRORS, retry_after, transport_failure

USER_AGENT = "cunzhi-notifications/1 (Standard Webhooks)"
EXCERPT_BYTES = 512
"""How much of a refusal's body we keep in the error (a receiver may answer anything)."""


def sign(secret: str, msg_id: str, timestamp: dt.datetime, body: str) -> str:
    """The ``webhook-signature`` header value for one delivery."""
    # standardwebhooks reads the datetime's fields as UTC: hand it UTC.
    return Webhook(secret).sign(msg_id, timestamp.astimezone(dt.UTC), body)


class WebhookChannel:
    name = "webhook"
    max_batch = 50
    at_most_once = False  # receivers dedupe on ``webhook-id``

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        timeout_s: float = 10.0,
        clock: Clock | None = None,
        max_connections: int = 100,
    ) -> None:
        self.policy = policy
        self.clock = clock or SystemClock()
        self.timeout_s = timeout_s
        # httpcore, not httpx: its network backend is where the address check belongs, and it
        # neither follows redirects nor reads proxy settings from the environment.
        self.pool = httpcore.AsyncConnectionPool(
            network_backend=GuardedBackend(policy),
            max_connections=max_connections,
            keepalive_expiry=30,
        )

    async def aclose(self) -> None:
        await self.pool.aclose()

    async def send(self, messages: Sequence[Message]) -> list[SendResult]:
        return list(await asyncio.gather(*(self._send_one(m) for m in messages)))

    async def receipt(self, message: Message, provider_id: str | None) -> SendResult | None:
        return None  # a receiver keeps no record we can ask for; webhook-id lets it dedupe

    async def _send_one(self, message: Message) -> SendResult:
        try:
            self.policy.check_url(message.address)
        except ForbiddenAddress as exc:
            return SendResult(Outcome.FAILED, error=f"webhook: {exc}")
        if not message.secret:
            return SendResult(Outcome.FAILED, error="webhook: the endpoint has no signing secret")
        now = self.clock.now()
        try:
            signature = sign(message.secret, message.delivery_id, now, message.body)
        except (ValueError, EmptyWebhookSecretError) as exc:  # not base64, or empty
            return SendResult(
                Outcome.FAILED, error=f"webhook: the endpoint's secret is unusable ({exc})"
            )
        headers = {
            **message.headers,
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": message.delivery_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        }
        timeout = dict.fromkeys(("connect", "read", "write", "pool"), self.timeout_s)
        try:
            async with self.pool.stream(
                "POST",
                message.address,
                headers=list(headers.items()),
                content=message.body.encode(),
                extensions={"timeout": timeout},
            ) as response:
                excerpt = b""
                async for chunk in response.aiter_stream():
                    excerpt += chunk
                    if len(excerpt) >= EXCERPT_BYTES:
                        break
        except ForbiddenAddress as exc:
            return SendResult(Outcome.FAILED, error=f"webhook: {exc}")
        except TRANSPORT_ERRORS as exc:
            return transport_failure(exc, "the webhook endpoint")
        return self.judge(response.status, dict(_headers(response.headers)), excerpt, now)

    def judge(
        self, status: int, headers: dict[str, str], body: bytes, now: dt.datetime
    ) -> SendResult:
        text = body[:EXCERPT_BYTES].decode("utf-8", "replace").strip()
        said = f"HTTP {status}" + (f": {text}" if text else "")
        if 200 <= status < 300:
            return SendResult(Outcome.SENT)
        if status == 410:
            return SendResult(
                Outcome.FAILED, error=f"webhook endpoint is gone ({said})", address_gone=True
            )
        if status in (408, 429) or status >= 500:
            return SendResult(
                Outcome.RETRY,
                error=f"webhook endpoint asked to try later ({said})",
                retry_after_s=retry_after(headers.get("retry-after"), now),
            )
        if 300 <= status < 400:
            return SendResult(
                Outcome.FAILED,
                error=f"webhook endpoint redirects to {headers.get('location')!r}; redirects are "
                "not followed: register the final URL",
            )
        return SendResult(Outcome.FAILED, error=f"webhook endpoint refused it ({said})")


def _headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw]
