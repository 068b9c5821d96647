"""A small, idempotent migration runner for asyncpg (one PostgreSQL schema per service).

Alembic and yoyo assume a synchronous driver; a service here has a handful of forward-only
SQL steps, so a runner of thirty lines is clearer than an adapter. Each step runs once, in a
transaction, under an advisory lock so several instances starting together do not race.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class Migration:
    """A forward-only step; ``{schema}`` in the SQL is replaced by the service's schema."""

    id: str
    sql: str


async def migrate(conn: asyncpg.Connection, schema: str, steps: Sequence[Migration]) -> list[str]:
    """Apply the steps not yet applied; returns the ids applied now."""
    applied_now: list[str] = []
    async with conn.transaction():
        # Lock first: even CREATE SCHEMA IF NOT EXISTS races between two starting instances.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"migrate:{schema}")
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(
            f"""CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations (
                id text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["id"] for r in await conn.fetch(f'SELECT id FROM "{schema}".schema_migrations')}
        for step in steps:
            if step.id in done:
                continue
            await conn.execute(step.sql.replace("{schema}", f'"{schema}"'))
            await conn.execute(
                f'INSERT INTO "{schema}".schema_migrations (id) VALUES ($1)', step.id
            )
            applied_now.append(step.id)
    return applied_now
