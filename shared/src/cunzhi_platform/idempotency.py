"""``Idempotency-Key`` on every command of every service (IETF httpapi idempotency-key draft).

A client that may lose an answer (a timeout, a dropped connection) sends a key of its choosing
with a command (POST, PUT, PATCH, DELETE); sending the same request with the same key again
does nothing more and answers what the first answered. Without the header nothing changes.

How: the edge (``edge.EdgeRoute``) runs a keyed command as one unit of work — one connection,
one transaction — and every query the route makes through the service's pool joins it
(``UnitPool``: the route's code does not change), the events it appends and their outbox rows
included. The first answer (status and body) is written in that same transaction, beside the
ids of the events it produced, so the events and the remembered answer are stored together or
not at all: a crash between the commit and the answer loses nothing, and a retry finds the
answer. Only successful answers (2xx) are remembered: a refused command stored nothing, and
its retry is decided afresh.

Keys belong to the caller (the token's ``sub``): two people may use the same key. A retry
with the same key but another request (method, path and query, or body) is refused with 422;
one arriving while the first still runs, with 409 (the first holds a transaction-scoped
advisory lock on the key). Housekeeping deletes keys older than
``CUNZHI_IDEMPOTENCY_RETENTION_HOURS`` (24), like processed marks; a retry after that runs
the command again.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from asyncpg.pool import PoolAcquireContext
from fastapi import Request
from fastapi.responses import Response

from .aggregate import DomainError, InvalidTransition
from .migrations import Migration

HEADER = "Idempotency-Key"
COMMANDS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_KEY = r"[\x21\x23-\x5b\x5d-\x7e]{1,255}"
KEY_PATTERN = re.compile(f'{_KEY}|"{_KEY}"')
"""1–255 visible ASCII characters but ``"`` and ``\\`` (a UUID, a ULID…), bare or quoted as
the draft writes it (a structured-field string: ``"…"``, the same key); a rule of ours."""
REPLAYED = "Idempotent-Replayed"
_BOUNDARY = re.compile(r"^multipart/[^;]+;.*\bboundary=(\"[^\"]+\"|[^;\s]+)", re.IGNORECASE)

MIGRATION = Migration(
    "0007_idempotency_keys",
    """
    CREATE TABLE {schema}.idempotency_keys (
        principal text NOT NULL,
        key text NOT NULL,
        fingerprint text NOT NULL,
        status smallint NOT NULL,
        content_type text,
        body bytea NOT NULL,
        event_ids uuid[] NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (principal, key)
    );
    CREATE INDEX idempotency_keys_created_at ON {schema}.idempotency_keys
        USING brin (created_at);
    """,
)

PARAMETER = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": "Makes the command safe to retry (IETF draft-ietf-httpapi-idempotency-key-"
    "header): a retry with the same key stores nothing more and answers the first answer again "
    f"(with `{REPLAYED}: true`); the same key with another request is 422, a retry while the "
    "first still runs is 409. Keys are the caller's own (per token `sub`), remembered with the "
    "events the command stored, for 24 hours (`CUNZHI_IDEMPOTENCY_RETENTION_HOURS`); only "
    'successful answers are remembered. 1–255 visible ASCII characters but `"` and `\\` (a '
    "rule of ours).",
    "schema": {"type": "string", "pattern": f"^({KEY_PATTERN.pattern})$"},
}


# -- the unit of work ----------------------------------------------------------------------------


@dataclass
class Unit:
    """The connection (in its transaction) every query of one keyed command goes through."""

    pool: asyncpg.Pool
    conn: Any  # the pool's connection proxy; None once the unit is over
    event_ids: list[str] = field(default_factory=list)


_UNIT: ContextVar[Unit | None] = ContextVar("cunzhi_unit_of_work", default=None)


def ambient(pool: asyncpg.Pool) -> Unit | None:
    """The unit of work of the running command on ``pool``, if there is one."""
    unit = _UNIT.get()
    return unit if unit is not None and unit.pool is pool and unit.conn is not None else None


class _Shared:
    """``pool.acquire()`` inside a unit: its connection, given back to nobody."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def __aenter__(self) -> Any:
        return self.conn

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __await__(self) -> Generator[Any, None, Any]:
        return self.__aenter__().__await__()


class UnitPool(asyncpg.Pool):  # type: ignore[misc]
    """The service's pool: inside a keyed command, ``acquire`` (and so ``fetch``, ``execute``…
    and every ``conn.transaction()``, then a savepoint) gives the command's own connection, so
    all it writes commits with its remembered answer; elsewhere, the pool as usual."""

    def acquire(self, *, timeout: float | None = None) -> PoolAcquireContext:
        unit = ambient(self)
        if unit is not None:
            return _Shared(unit.conn)
        return super().acquire(timeout=timeout)

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:
        unit = ambient(self)
        if unit is not None and connection is unit.conn:
            return
        await super().release(connection, timeout=timeout)

    @classmethod
    def create(cls, dsn: str, **options: Any) -> UnitPool:
        """Like ``asyncpg.create_pool`` (await it)."""
        defaults: dict[str, Any] = {
            "min_size": 10,
            "max_size": 10,
            "max_queries": 50_000,
            "max_inactive_connection_lifetime": 300.0,
            "loop": None,
            "connection_class": asyncpg.Connection,
            "record_class": asyncpg.Record,
        }
        return cls(dsn, **{**defaults, **options})


# -- the key -------------------------------------------------------------------------------------


def key_of(request: Request) -> str | None:
    """The command's ``Idempotency-Key``, checked; None when absent or not a command."""
    if request.method not in COMMANDS:
        return None
    given = request.headers.get(HEADER)
    if given is None:
        return None
    if not KEY_PATTERN.fullmatch(given):
        raise DomainError(
            f"{HEADER} must be 1–255 visible ASCII characters without quotes or backslashes "
            "(a UUID, for instance), or left out",
            field=HEADER,
        )
    return given.strip('"')


def fingerprint(request: Request, body: bytes) -> str:
    """What makes two requests the same: method, path and query, body — a multipart body
    without its boundary, which a client draws anew for each request, a retry included."""
    target = request.url.path + ("?" + request.url.query if request.url.query else "")
    boundary = _BOUNDARY.search(request.headers.get("content-type", ""))
    if boundary is not None:
        body = body.replace(boundary.group(1).strip('"').encode("latin-1"), b"")
    digest = hashlib.sha256()
    for part in (request.method.encode(), target.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


@contextlib.asynccontextmanager
async def _unit(pool: asyncpg.Pool) -> AsyncIterator[Unit]:
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        unit = Unit(pool, conn)
        token = _UNIT.set(unit)
        try:
            yield unit
        except BaseException:
            unit.conn = None
            with contextlib.suppress(Exception):  # a lost connection has rolled back already
                await transaction.rollback()
            raise
        finally:
            _UNIT.reset(token)
        unit.conn = None  # a task the command left behind uses the pool, not this connection
        await transaction.commit()


class _Refused(Exception):
    """Rolls back the unit of a command that did not succeed: nothing of it is kept."""

    def __init__(self, response: Response) -> None:
        self.response = response


async def run(
    request: Request,
    key: str,
    principal: str,
    handler: Callable[[Request], Awaitable[Response]],
) -> Response:
    """Run the command under ``key`` once: the first time for real, then its answer again."""
    rt = request.app.state.runtime
    table = f'"{rt.store.schema}".idempotency_keys'
    asked = fingerprint(request, await request.body())
    try:
        async with _unit(rt.pool) as unit:
            conn = unit.conn
            lock = f"{rt.store.schema}:{principal}:{key}"
            if not await conn.fetchval(
                "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))", lock
            ):
                raise InvalidTransition(
                    f"a request with this {HEADER} is still running; wait for its answer, "
                    "then retry with the same key",
                    field=HEADER,
                )
            # Read after the lock: the first request, if it finished, has committed by now.
            first = await conn.fetchrow(
                f"SELECT fingerprint, status, content_type, body FROM {table} "
                "WHERE principal = $1 AND key = $2",
                principal,
                key,
            )
            if first is not None:
                if first["fingerprint"] != asked:
                    raise DomainError(
                        f"this {HEADER} was used for another request (method, path or body); "
                        "choose a new key for a new request",
                        field=HEADER,
                    )
                return _replay(first)
            response = await handler(request)
            if not 200 <= response.status_code < 300:
                raise _Refused(response)
            await conn.execute(
                f"INSERT INTO {table} (principal, key, fingerprint, status, content_type, body, "
                "event_ids) VALUES ($1, $2, $3, $4, $5, $6, $7::text[]::uuid[])",
                principal,
                key,
                asked,
                response.status_code,
                response.headers.get("content-type"),
                bytes(response.body),
                unit.event_ids,
            )
    except _Refused as refused:
        return refused.response
    if unit.event_ids:
        rt.store.wake()
    return response


def _replay(first: asyncpg.Record) -> Response:
    headers = {REPLAYED: "true"}
    return Response(
        first["body"],
        status_code=first["status"],
        media_type=first["content_type"],
        headers=headers,
    )
