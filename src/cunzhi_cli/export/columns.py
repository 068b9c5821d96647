"""The columns of an event type's table, from the event's JSON Schema.

Envelope columns first (the same for every table), then one column per payload field: scalars
as typed columns (text, integer, number, boolean, date, timestamp), arrays and objects as JSON
text. JSON text rather than Arrow lists/structs because a table's files span schema versions
and months: an optional field added inside a nested object would change a struct's type and
DuckDB could no longer read the old and new files as one table, while a JSON text column never
changes type; DuckDB reads it directly (``col->>'field'``, ``json_array_length(col)``,
``unnest(col::JSON[])``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from cunzhi_platform.envelope import Envelope
from cunzhi_platform.events import Event
from pydantic_core import to_json

TIMEZONE = "Asia/Shanghai"
TIMESTAMP = pa.timestamp("us", tz=TIMEZONE)

ENVELOPE_COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("event_id", pa.string(), "the event's id (CloudEvents id); unique"),
    ("event_type", pa.string(), "the event type's full name"),
    ("schema_version", pa.int32(), "the schema version of this row's payload columns"),
    ("stream_id", pa.string(), "the aggregate (stream) the event belongs to"),
    ("stream_version", pa.int64(), "the event's version in its stream (1, 2, …)"),
    ("position", pa.int64(), "global position in the service's event store (null from Kafka)"),
    ("recorded_at", TIMESTAMP, "when the event was recorded"),
    ("correlation_id", pa.string(), "the conversation the event belongs to"),
    ("causation_id", pa.string(), "the event or command that caused it"),
    ("actor", pa.string(), "who issued the command"),
]
RESERVED = {name for name, _, _ in ENVELOPE_COLUMNS} | {"month"}
"""``month`` is the Hive partition column readers add."""

Convert = Callable[[Any], Any]


def _json_text(value: Any) -> str | None:
    # pydantic-core's encoder: compact, UTF-8 as it is, and several times faster than json's.
    return None if value is None else to_json(value).decode()


def _date(value: str | None) -> dt.date | None:
    return None if value is None else dt.date.fromisoformat(value)


def _timestamp(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


def _same(value: Any) -> Any:
    return value


_SCALARS: dict[tuple[str, str | None], tuple[pa.DataType, Convert]] = {
    ("string", None): (pa.string(), _same),
    ("string", "date"): (pa.date32(), _date),
    ("string", "date-time"): (TIMESTAMP, _timestamp),
    ("integer", None): (pa.int64(), _same),
    ("number", None): (pa.float64(), _same),
    ("boolean", None): (pa.bool_(), _same),
}


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        resolved: dict[str, Any] = schema["$defs"][ref.removeprefix("#/$defs/")]
        return resolved
    return node


def _column(schema: dict[str, Any], node: dict[str, Any]) -> tuple[pa.DataType, Convert, bool]:
    """Arrow type, converter from the payload's JSON value, and whether it is JSON text."""
    node = _resolve(schema, node)
    if "anyOf" in node:
        present = [_resolve(schema, n) for n in node["anyOf"] if n.get("type") != "null"]
        if len(present) == 1:
            return _column(schema, present[0])
        return pa.string(), _json_text, True
    kind = node.get("type", "string" if "enum" in node or "const" in node else None)
    fmt = node.get("format") if node.get("format") in ("date", "date-time") else None
    if isinstance(kind, str) and (kind, fmt) in _SCALARS:
        arrow, convert = _SCALARS[(kind, fmt)]
        return arrow, convert, False
    return pa.string(), _json_text, True


@dataclass(frozen=True, eq=False)
class TableSpec:
    """One event type's table: its folder, Arrow schema and how a row is made (compared by
    identity: it keys the writer's buffers, one lookup per row)."""

    service: str
    event_type: str
    schema: pa.Schema
    converters: tuple[tuple[str, Convert], ...]

    @property
    def name(self) -> str:
        return self.event_type.rsplit(".", 1)[-1]

    def row(self, envelope: Envelope, event: Event, position: int | None) -> dict[str, Any]:
        payload = event.to_payload()
        row: dict[str, Any] = {
            "event_id": envelope.id,
            "event_type": envelope.type,
            "schema_version": event.schema_version,
            "stream_id": envelope.subject,
            "stream_version": envelope.stream_version,
            "position": position,
            "recorded_at": envelope.time,
            "correlation_id": envelope.correlation_id,
            "causation_id": envelope.causation_id,
            "actor": envelope.actor,
        }
        for name, convert in self.converters:
            row[name] = convert(payload.get(name))
        return row


def table_spec(service: str, model: type[Event]) -> TableSpec:
    schema = model.model_json_schema()
    fields = [
        pa.field(name, arrow, metadata={"description": text})
        for name, arrow, text in ENVELOPE_COLUMNS
    ]
    converters: list[tuple[str, Convert]] = []
    for name, node in schema.get("properties", {}).items():
        if name in RESERVED:
            raise ValueError(f"{model.event_type}: payload field {name!r} clashes with a column")
        arrow, convert, as_json = _column(schema, node)
        description = _resolve(schema, node).get("description", "")
        metadata = {"description": description, "json": "true" if as_json else "false"}
        fields.append(pa.field(name, arrow, metadata=metadata))
        converters.append((name, convert))
    return TableSpec(service, model.event_type, pa.schema(fields), tuple(converters))
