"""What the HTTP channels share: a provider's silence or garbage turned into an outcome.

The line between RETRY and UNCLEAR is whether the request may have reached the provider: a
refused or timed-out *connection* sent nothing (RETRY); a time-out or a dropped connection
*after* the request went out may have sent the notice (UNCLEAR: check a receipt first).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
from typing import Any

import httpcore
import httpx

from .base import Outcome, SendResult

NOTHING_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
    httpcore.ConnectError,
    httpcore.ConnectTimeout,
    httpcore.PoolTimeout,
    httpcore.UnsupportedProtocol,
)
"""Failures before a byte of the request left: sending again cannot double anything."""

TRANSPORT_ERRORS = (
    httpx.TransportError,
    httpcore.NetworkError,
    httpcore.TimeoutException,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
)
"""Every way a request can end without an HTTP answer (httpx's and httpcore's own)."""

MAX_RETRY_AFTER_S = 24 * 3600.0
"""A provider asking for more than a day is asking for something else: cap it."""


def transport_failure(exc: Exception, provider: str) -> SendResult:
    """The outcome of a request that got no HTTP answer at all."""
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, NOTHING_SENT):
        return SendResult(Outcome.RETRY, error=f"{provider} could not be reached ({detail})")
    return SendResult(
        Outcome.UNCLEAR,
        error=f"{provider} did not answer after the request was sent ({detail}); "
        "it may have been sent: check the receipt before sending again",
    )


def garbage(status: int, body: bytes, provider: str) -> SendResult:
    """An answer that cannot be read: after a 2xx the notice may be out, otherwise not."""
    excerpt = body[:200].decode("utf-8", "replace")
    if 200 <= status < 300:
        return SendResult(
            Outcome.UNCLEAR,
            error=f"{provider} answered HTTP {status} with something unreadable ({excerpt!r}); "
            "it may have been sent: check the receipt before sending again",
        )
    return SendResult(
        Outcome.RETRY, error=f"{provider} answered HTTP {status}, unreadable ({excerpt!r})"
    )


def json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is anything else."""
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def retry_after(value: str | None, now: dt.datetime) -> float | None:
    """``Retry-After`` in seconds, from either of its forms (delay-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT even when it does not say so
        when = when.replace(tzinfo=dt.UTC)
    return min(max((when - now).total_seconds(), 0.0), MAX_RETRY_AFTER_S)
