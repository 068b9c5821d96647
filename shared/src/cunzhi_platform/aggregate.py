"""Aggregates as folds of their events, and the errors a decision can raise.

A command method on an aggregate checks invariants against the folded state and returns the
new events (it never mutates state itself); the application layer appends them with the
version the aggregate was loaded at, and ``Aggregate.apply`` folds them in.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Self

from .events import Event


class DomainError(Exception):
    """A command refused by the domain, with a message a person can act on."""

    status = 422

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidTransition(DomainError):
    """The command does not fit the aggregate's current state (HTTP 409)."""

    status = 409


class NotFound(DomainError):
    status = 404


class Forbidden(DomainError):
    """Outside the caller's role or jurisdiction (HTTP 403)."""

    status = 403


class Aggregate:
    """State rebuilt by folding events; ``version`` is the number of events folded."""

    def __init__(self, aggregate_id: str) -> None:
        self.id = aggregate_id
        self.version = 0

    @classmethod
    def fold(cls, aggregate_id: str, events: Iterable[Event]) -> Self:
        agg = cls(aggregate_id)
        for event in events:
            agg.apply(event)
        return agg

    def apply(self, event: Event) -> None:
        handler = getattr(self, f"_on_{type(event).__name__}", None)
        if handler is None:
            raise TypeError(f"{type(self).__name__} cannot apply {type(event).__name__}")
        handler(event)
        self.version += 1

    @property
    def exists(self) -> bool:
        return self.version > 0
