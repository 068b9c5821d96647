"""A tiny service for platform tests: tallies per counter, projected from its own events."""

from __future__ import annotations

from typing import ClassVar

from cunzhi_platform.consumer import Consumer, Tx
from cunzhi_platform.envelope import Envelope, topic_for
from cunzhi_platform.events import Event, EventRegistry

registry = EventRegistry()


@registry.register("cunzhi.test.Incremented", version=1)
class Incremented(Event):
    counter: str
    amount: int
    seq: int = 0


@registry.upcaster("cunzhi.test.Incremented", from_version=0)
def _count_was_amount(payload: dict[str, object]) -> dict[str, object]:
    """Version 0 called the amount ``count``; a payload without it makes the upcaster fail."""
    return {"counter": payload["counter"], "amount": payload["count"]}


class Tallies(Consumer):
    """counter → total and the number of increments seen."""

    name = "tallies"
    tables: ClassVar = {
        "tallies": "CREATE TABLE IF NOT EXISTS {table} ("
        "counter text PRIMARY KEY, total bigint NOT NULL, increments int NOT NULL)"
    }
    indexes: ClassVar = {"tallies": ["total", "increments, counter"]}
    rebuildable = True
    version = 2  # version 1 had no increments column (test_consumer.PreviousTallies)

    def __init__(self, service: str, *, batch: bool = False, fail_on: int | None = None) -> None:
        self.topics = [topic_for(service)]  # type: ignore[misc]
        self.batch = batch  # type: ignore[misc]
        self.fail_on = fail_on

    async def apply(self, tx: Tx, event: Event, envelope: Envelope) -> None:
        assert isinstance(event, Incremented)
        if event.amount == self.fail_on:
            raise RuntimeError(f"cannot count {event.amount}")
        await tx.conn.execute(
            f"INSERT INTO {tx.t('tallies')} AS t VALUES ($1, $2, 1) ON CONFLICT (counter) DO "
            "UPDATE SET total = t.total + excluded.total, increments = t.increments + 1",
            event.counter,
            event.amount,
        )

    async def apply_batch(self, tx: Tx, items) -> None:
        if any(isinstance(e, Incremented) and e.amount == self.fail_on for e, _ in items):
            raise RuntimeError("a poison event in the batch")
        sums: dict[str, list[int]] = {}
        for event, _ in items:
            assert isinstance(event, Incremented)
            s = sums.setdefault(event.counter, [0, 0])
            s[0] += event.amount
            s[1] += 1
        await tx.conn.execute(
            f"INSERT INTO {tx.t('tallies')} AS t SELECT * FROM unnest($1::text[], $2::bigint[], "
            "$3::int[]) ON CONFLICT (counter) DO UPDATE SET total = t.total + excluded.total, "
            "increments = t.increments + excluded.increments",
            list(sums),
            [v[0] for v in sums.values()],
            [v[1] for v in sums.values()],
        )
