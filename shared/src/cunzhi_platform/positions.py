"""How far a consumer has applied each stream: what makes an old redelivery a no-op.

One row per stream a consumer has seen (``source``, ``stream_id``): the highest
``stream_version`` applied and, below it, the versions not applied (``missing``, an
``int4multirange``). A stream's events reach a consumer in version order (one key, one
partition, the relay publishes in per-key commit order), so the row only moves forward; what
arrives out of order is what was held back — dead-lettered and replayed, set aside by the relay
and queued again — and its version is among the missing ones. Bounded by the number of streams,
so never pruned, unlike the processed marks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import asyncpg

from .envelope import Envelope

DDL = (
    "CREATE TABLE IF NOT EXISTS {table} (source text NOT NULL, stream_id text NOT NULL, "
    "version integer NOT NULL, missing int4multirange NOT NULL DEFAULT '{{}}', "
    "PRIMARY KEY (source, stream_id))"
)

Stream = tuple[str, str]


def stream_of(envelope: Envelope) -> Stream | None:
    """The stream ``envelope`` belongs to, if it says its version in it (ours all do)."""
    if envelope.stream_version is None or not envelope.subject:
        return None
    return envelope.source, envelope.subject


@dataclass
class Position:
    """A stream's position in one consumer: applied up to ``version`` but for ``missing``
    (half-open ranges of versions, ascending)."""

    version: int = 0
    missing: list[tuple[int, int]] = field(default_factory=list)

    def admit(self, version: int) -> bool:
        """Whether the event at ``version`` is to be applied now; if so, it is noted as applied."""
        if version > self.version:
            if version > self.version + 1:
                self.missing.append((self.version + 1, version))
            self.version = version
            return True
        for i, (low, high) in enumerate(self.missing):
            if low <= version < high:
                self.missing[i : i + 1] = [
                    r for r in ((low, version), (version + 1, high)) if r[0] < r[1]
                ]
                return True
        return False

    def covers(self, version: int) -> bool:
        return version <= self.version and not any(lo <= version < hi for lo, hi in self.missing)

    def missing_text(self) -> str:
        return "{" + ",".join(f"[{lo},{hi})" for lo, hi in self.missing) + "}"


async def load(
    conn: asyncpg.Connection, table: str, streams: Iterable[Stream]
) -> dict[Stream, Position]:
    """The positions of ``streams``, locked for this transaction (in key order: no deadlock)."""
    keys = sorted(set(streams))
    if not keys:
        return {}
    rows = await conn.fetch(
        f"SELECT source, stream_id, version, missing FROM {table} WHERE (source, stream_id) IN "
        "(SELECT * FROM unnest($1::text[], $2::text[])) ORDER BY source, stream_id FOR UPDATE",
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    found = {
        (r["source"], r["stream_id"]): Position(
            r["version"], [(m.lower, m.upper) for m in r["missing"]]
        )
        for r in rows
    }
    return {k: found.get(k) or Position() for k in keys}


async def save(conn: asyncpg.Connection, table: str, positions: dict[Stream, Position]) -> None:
    if not positions:
        return
    keys = sorted(positions)
    await conn.execute(
        f"INSERT INTO {table} (source, stream_id, version, missing) "
        "SELECT s, i, v, m::int4multirange "
        "FROM unnest($1::text[], $2::text[], $3::int[], $4::text[]) AS p(s, i, v, m) "
        "ON CONFLICT (source, stream_id) DO UPDATE SET version = excluded.version, "
        "missing = excluded.missing",
        [k[0] for k in keys],
        [k[1] for k in keys],
        [positions[k].version for k in keys],
        [positions[k].missing_text() for k in keys],
    )


async def advance(conn: asyncpg.Connection, table: str, envelopes: Sequence[Envelope]) -> None:
    """Note streams applied in order up to the envelopes' versions (a rebuild's fold)."""
    latest: dict[Stream, int] = {}
    for envelope in envelopes:
        stream = stream_of(envelope)
        if stream is not None and envelope.stream_version is not None:
            latest[stream] = max(latest.get(stream, 0), envelope.stream_version)
    if not latest:
        return
    await conn.execute(
        f"INSERT INTO {table} AS p (source, stream_id, version) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::int[]) "
        "ON CONFLICT (source, stream_id) DO UPDATE "
        "SET version = greatest(excluded.version, p.version)",
        [k[0] for k in latest],
        [k[1] for k in latest],
        list(latest.values()),
    )
