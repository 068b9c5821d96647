"""How one notice reaches one person: channels from preferences, then quiet hours and digests.

Pure: the planner gives it the person's settings and the clock's time, and writes what it
decides into the delivery ledger.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cunzhi_platform.clock import SHANGHAI

from .errors import InvalidPreference
from .kinds import PERSON_CHANNELS, Kind

DEFAULT_DIGEST_AT = dt.time(18, 0)
"""Ours: the daily digest goes out at 18:00 unless the person chooses another time."""


@dataclass(frozen=True)
class Preference:
    """A person's choice for one kind on one channel (通知偏好)."""

    enabled: bool
    digest: bool = False


@dataclass(frozen=True)
class QuietHours:
    """A daily window (Asia/Shanghai) in which nothing interrupts; may wrap past midnight."""

    start: dt.time
    end: dt.time

    def contains(self, at: dt.time) -> bool:
        if self.start <= self.end:
            return self.start <= at < self.end
        return at >= self.start or at < self.end  # 22:00–07:00 wraps midnight

    def ends_after(self, when: dt.datetime) -> dt.datetime:
        """The end of the window ``when`` falls in (``when`` must be inside it)."""
        local = when.astimezone(SHANGHAI)
        end = dt.datetime.combine(local.date(), self.end, SHANGHAI)
        return end if end > local else end + dt.timedelta(days=1)


@dataclass(frozen=True)
class Person:
    """What routing needs of a person: which addresses exist, and their settings."""

    person_id: str
    addresses: frozenset[str]
    """Channels this person can be reached on (``inbox`` always; ``sms`` with a phone…)."""
    preferences: Mapping[tuple[str, str], Preference] = field(default_factory=dict)
    quiet: QuietHours | None = None
    digest_at: dt.time = DEFAULT_DIGEST_AT


@dataclass(frozen=True)
class Route:
    channel: str
    not_before: dt.datetime
    held: bool = False
    """Waits for quiet hours to end."""
    digest: bool = False
    """Waits for the daily digest."""


def check_preference(kind: Kind, channel: str, pref: Preference) -> None:
    """Refuse what the kind does not allow: switching a mandatory kind off, digesting it."""
    if channel not in PERSON_CHANNELS:
        raise InvalidPreference(
            f"channel must be one of {', '.join(PERSON_CHANNELS)}, not {channel!r}",
            field="channel",
        )
    if kind.mandatory and not pref.enabled and channel in kind.channels:
        raise InvalidPreference(
            f"{kind.label} ({kind.code}) is mandatory: it cannot be switched off on {channel}",
            field="enabled",
        )
    if pref.digest and channel == "inbox":
        raise InvalidPreference("the inbox interrupts no one: it needs no digest", field="digest")
    if pref.digest and not kind.digestible:
        raise InvalidPreference(
            f"{kind.label} ({kind.code}) is time-critical and cannot wait for a digest",
            field="digest",
        )


def channels_for(kind: Kind, person: Person) -> list[str]:
    """The kind's default channels as the person changed them, where they have an address."""
    chosen = []
    for channel in PERSON_CHANNELS:
        pref = person.preferences.get((kind.code, channel))
        on = channel in kind.channels if pref is None else pref.enabled
        if kind.mandatory and channel in kind.channels:
            on = True  # a preference stored before the kind became mandatory does not count
        if on and channel in person.addresses:
            chosen.append(channel)
    return chosen


def next_digest(now: dt.datetime, at: dt.time) -> dt.datetime:
    local = now.astimezone(SHANGHAI)
    due = dt.datetime.combine(local.date(), at, SHANGHAI)
    return due if due > local else due + dt.timedelta(days=1)


def routes(kind: Kind, person: Person, now: dt.datetime) -> list[Route]:
    """When each chosen channel may send: now, after quiet hours, or at the digest time.

    The inbox interrupts no one, so it is never held. Urgent kinds go through quiet hours.
    """
    out = []
    for channel in channels_for(kind, person):
        pref = person.preferences.get((kind.code, channel))
        digest = bool(pref and pref.digest and kind.digestible and channel != "inbox")
        when = next_digest(now, person.digest_at) if digest else now
        held = False
        quiet = person.quiet if channel != "inbox" and not kind.urgent else None
        if quiet is not None and quiet.contains(when.astimezone(SHANGHAI).time()):
            when, held = quiet.ends_after(when), True
        out.append(Route(channel, when, held=held, digest=digest))
    return out


@dataclass(frozen=True)
class Backoff:
    """Retry delays: exponential, capped, with jitter so that retries do not march together."""

    base_s: float = 30.0
    cap_s: float = 3600.0
    max_attempts: int = 6

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): "equal jitter",
        between half and all of ``base · 2^(attempt-1)`` (capped)."""
        full = min(self.cap_s, self.base_s * 2.0 ** max(attempt - 1, 0))
        jitter: float = (rng or random).uniform(0, full / 2)
        return full / 2 + jitter

    def next_try(
        self, attempt: int, retry_after_s: float | None, rng: random.Random | None = None
    ) -> float | None:
        """Seconds until the next try, or None when ``attempt`` was the last one.

        A provider's own wait (Retry-After, a throttling code) is honoured when it is longer.
        """
        if attempt >= self.max_attempts:
            return None
        return max(self.delay(attempt, rng), retry_after_s or 0.0)


def bundle_key(recipient_id: str, channel: str, digest: bool) -> tuple[str, str] | None:
    """Deliveries sent together as one message: every group delivery, and digest ones."""
    if recipient_id.startswith("group:") or digest:
        return (recipient_id, channel)
    return None


def bundles(
    rows: Iterable[tuple[str, str, str, bool]],
) -> tuple[list[str], dict[tuple[str, str], list[str]]]:
    """Split ``(delivery_id, recipient_id, channel, digest)`` into single sends and bundles."""
    singles: list[str] = []
    grouped: dict[tuple[str, str], list[str]] = {}
    for delivery_id, recipient, channel, digest in rows:
        key = bundle_key(recipient, channel, digest)
        if key is None:
            singles.append(delivery_id)
        else:
            grouped.setdefault(key, []).append(delivery_id)
    return singles, grouped
