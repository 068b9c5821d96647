"""A person's roles in the directory: those given here, and one per township's roster.

``manual_roles`` are what our API or CSV import gave; ``roster_roles`` holds the one role each
township's roster (meetings) gives, which a roster update replaces and a removal takes away.
``people.roles``, what notices are addressed by, is always their union. A role the roster gives
is the roster's: one given here as well is counted as the roster's (change it in the roster).
"""

from __future__ import annotations

import asyncpg


async def settle_roles(conn: asyncpg.Connection, s: str, person_id: str) -> None:
    """``people.roles`` := the manual roles and every roster's role, sorted, once each."""
    await conn.execute(
        f"""UPDATE {s}.people p SET roles = ARRAY(
                SELECT DISTINCT r FROM unnest(p.manual_roles || ARRAY(
                    SELECT x.role FROM {s}.roster_roles x WHERE x.person_id = p.person_id)) r
                ORDER BY r)
            WHERE p.person_id = $1""",
        person_id,
    )


def manual(s: str, roles_param: str, person_param: str) -> str:
    """SQL for the roles given (``roles_param``) that no roster already gives the person."""
    return (
        f"ARRAY(SELECT r FROM unnest({roles_param}::text[]) r WHERE NOT EXISTS ("
        f"SELECT 1 FROM {s}.roster_roles x WHERE x.person_id = {person_param} AND x.role = r))"
    )
