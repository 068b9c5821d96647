"""Timers: calls for topics open at ``opens_at`` and close at ``closes_at``.

Due calls are found in the ``calls`` read model, which may lag a little behind the store or
already be stale (another instance acted): the domain decides on the stream itself, and a
refusal or a concurrent append only means someone else got there first.
"""

from __future__ import annotations

import asyncio

import structlog
from cunzhi_platform.aggregate import DomainError
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.eventstore import ConcurrencyError
from cunzhi_platform.runtime import Runtime

from .. import application
from .projections import read_model_tables

_log = structlog.get_logger(__name__)


async def fire_due_calls(rt: Runtime) -> int:
    """Open and close every call that is due now; returns how many changed."""
    calls = read_model_tables(rt.store.schema)["calls"]
    due = await rt.pool.fetch(
        f"SELECT township_id, forum_id, state FROM {calls} "
        "WHERE (state = 'scheduled' AND opens_at <= $1) OR (state = 'open' AND closes_at <= $1) "
        "ORDER BY opens_at",
        rt.clock.now(),
    )
    fired = 0
    for call in due:
        act = application.open_call if call["state"] == "scheduled" else application.close_call
        try:
            await act(rt.store, CommandContext(), call["township_id"], call["forum_id"])
            fired += 1
        except (DomainError, ConcurrencyError) as exc:
            _log.info("call_timer_skipped", forum_id=call["forum_id"], reason=str(exc))
    return fired


async def call_timers(rt: Runtime) -> None:
    while True:
        await fire_due_calls(rt)
        await asyncio.sleep(rt.settings.scheduler_interval_s)
