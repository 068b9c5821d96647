"""Typed domain events: a registry by name and schema version, upcasting, JSON Schema.

Every event a service publishes is a pydantic model registered under a stable name (the
CloudEvents ``type``) and a schema version. Stored or received payloads of older versions are
upcast step by step to the current version before they are turned into models, so handlers
only ever see the newest shape.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]
E = TypeVar("E", bound="Event")


class Event(BaseModel):
    """Base of every domain event. Immutable; unknown fields are refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str] = ""
    schema_version: ClassVar[int] = 1

    def to_payload(self) -> Payload:
        return self.model_dump(mode="json")


class Reader(Event):
    """What a consumer reads of another service's event: a tolerant reader.

    A consumer declares, under the producer's type name and schema version, only the fields it
    uses; fields it does not declare are ignored. So a producer may add fields, and no service
    imports another service's code: the suite checks every reader against the producer's
    published JSON Schema (``reader_breaks``) instead.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")


class UnknownEventType(LookupError):
    """The type/version pair is not registered (and cannot be upcast to one that is)."""


class InvalidEventPayload(ValueError):
    """The payload does not validate against the registered model."""


@dataclass(frozen=True)
class SchemaBreak:
    """A change to a published schema that old consumers or old stored events would not survive."""

    event: str
    reason: str

    def __str__(self) -> str:
        return f"{self.event}: {self.reason}"


class EventRegistry:
    """Maps (type name, schema version) to event models, with upcasters between versions."""

    def __init__(self) -> None:
        self._models: dict[str, type[Event]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, name: str, version: int = 1) -> Callable[[type[E]], type[E]]:
        def decorate(cls: type[E]) -> type[E]:
            if name in self._models and self._models[name] is not cls:
                raise ValueError(f"event type {name!r} is already registered")
            cls.event_type = name
            cls.schema_version = version
            self._models[name] = cls
            return cls

        return decorate

    def upcaster(self, name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register a function turning a ``from_version`` payload into ``from_version + 1``."""

        def decorate(fn: Upcaster) -> Upcaster:
            self._upcasters[(name, from_version)] = fn
            return fn

        return decorate

    def include(self, other: EventRegistry) -> None:
        """Know another service's events too (a consumer of its topic needs them)."""
        for name, cls in other._models.items():
            self._models.setdefault(name, cls)
        self._upcasters.update(other._upcasters)

    def model(self, name: str) -> type[Event]:
        try:
            return self._models[name]
        except KeyError:
            raise UnknownEventType(f"unknown event type {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._models

    def names(self) -> list[str]:
        return sorted(self._models)

    def decode(self, name: str, version: int, payload: Payload) -> Event:
        cls = self.model(name)
        if version > cls.schema_version:
            raise UnknownEventType(
                f"{name} schema version {version} is newer than the known {cls.schema_version}"
            )
        while version < cls.schema_version:
            step = self._upcasters.get((name, version))
            if step is None:
                raise UnknownEventType(f"no upcaster for {name} from schema version {version}")
            payload = step(payload)
            version += 1
        try:
            return cls.model_validate(payload)
        except ValidationError as exc:
            raise InvalidEventPayload(f"{name} v{version}: {exc}") from exc

    def decode_json(self, name: str, version: int, raw: str | bytes) -> Event:
        """Like ``decode`` from JSON text; the current version is parsed by pydantic directly."""
        cls = self.model(name)
        if version != cls.schema_version:
            try:
                payload = json.loads(raw)
            except ValueError as exc:
                raise InvalidEventPayload(f"{name} v{version}: not JSON: {exc}") from exc
            if not isinstance(payload, dict):
                raise InvalidEventPayload(f"{name} v{version}: the JSON is not an object")
            return self.decode(name, version, payload)
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise InvalidEventPayload(f"{name} v{version}: {exc}") from exc

    def json_schemas(self) -> dict[str, Payload]:
        """JSON Schema of every registered event, keyed by ``<name>.v<version>``."""
        return {
            f"{name}.v{cls.schema_version}": cls.model_json_schema()
            for name, cls in sorted(self._models.items())
        }

    def write_schemas(self, directory: Path) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for key, schema in self.json_schemas().items():
            path = directory / f"{key}.json"
            path.write_text(json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
            written.append(path)
        return written


def _resolve(schema: Payload, node: Payload) -> Payload:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        resolved: Payload = schema.get("$defs", {})[ref.removeprefix("#/$defs/")]
        return resolved
    return node


def _types(node: Payload) -> set[str]:
    if "anyOf" in node:
        return set().union(*(_types(n) for n in node["anyOf"]))
    t = node.get("type")
    if isinstance(t, list):
        return set(t)
    if t is None:
        return {"enum"} if "enum" in node else {"ref"} if "$ref" in node else {"any"}
    return {t}


def _values(node: Payload) -> set[str] | None:
    """The allowed values of an enum (or a one-value ``const``), else None."""
    if "enum" in node:
        return set(map(str, node["enum"]))
    if "const" in node:
        return {str(node["const"])}
    return None


def schema_breaks(name: str, published: Payload, current: Payload) -> list[SchemaBreak]:
    """Changes from ``published`` to ``current`` (same name and version) that break readers.

    Breaking: a field removed, a field newly required, a field's type changed, an enum value
    removed. Adding an optional field is compatible.
    """
    breaks: list[SchemaBreak] = []

    def compare(path: str, old: Payload, new: Payload) -> None:
        old, new = _resolve(published, old), _resolve(current, new)
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        for field in old_props:
            if field not in new_props:
                breaks.append(SchemaBreak(name, f"field {path}{field} was removed"))
        for field in set(new.get("required", [])) - set(old.get("required", [])):
            breaks.append(SchemaBreak(name, f"field {path}{field} became required"))
        for field, old_field in old_props.items():
            if field not in new_props:
                continue
            o, n = _resolve(published, old_field), _resolve(current, new_props[field])
            if not _types(o) <= _types(n) and "any" not in _types(n):
                breaks.append(
                    SchemaBreak(
                        name,
                        f"field {path}{field} changed type from {sorted(_types(o))} "
                        f"to {sorted(_types(n))}",
                    )
                )
            if _values(o) is not None and _values(n) is not None:
                for gone in sorted(_values(o) - _values(n)):  # type: ignore[operator]
                    breaks.append(SchemaBreak(name, f"value {gone!r} of {path}{field} removed"))
            if "properties" in o:
                compare(f"{path}{field}.", o, n)
            if "items" in o and "items" in n:
                ao, an = _resolve(published, o["items"]), _resolve(current, n["items"])
                if "properties" in ao:
                    compare(f"{path}{field}[].", ao, an)

    compare("", published, current)
    return breaks


def check_published(registry: EventRegistry, directory: Path) -> list[SchemaBreak]:
    """Compare every schema published under ``directory`` with the code's current one.

    A published ``<name>.v<n>.json`` must still be readable: either the registry still has that
    version compatibly, or it moved to a newer version and an upcaster chain leads there.
    """
    current = registry.json_schemas()
    breaks: list[SchemaBreak] = []
    for path in sorted(directory.glob("*.v*.json")):
        key = path.name.removesuffix(".json")
        name, _, version = key.rpartition(".v")
        if name not in registry:
            breaks.append(SchemaBreak(name, "published event type no longer exists"))
            continue
        model = registry.model(name)
        if int(version) == model.schema_version:
            breaks += schema_breaks(name, json.loads(path.read_text()), current[key])
        elif int(version) > model.schema_version:
            breaks.append(SchemaBreak(name, f"published v{version} is newer than code"))
        else:
            missing = [
                v
                for v in range(int(version), model.schema_version)
                if (name, v) not in registry._upcasters
            ]
            if missing:
                breaks.append(SchemaBreak(name, f"no upcaster from v{missing[0]}"))
    return breaks


def reader_breaks(readers: EventRegistry, published_root: Path) -> list[SchemaBreak]:
    """How the readers in ``readers`` disagree with what their producers publish.

    ``published_root`` holds ``<service>/<type>.v<n>.json`` (docs/events). A reader breaks when
    its schema version is not published, when it reads a field the producer does not publish,
    requires a field the producer may omit, or refuses a type or value the producer may send.
    """
    breaks: list[SchemaBreak] = []
    for name in readers.names():
        model = readers.model(name)
        producer = name.split(".")[1] if name.count(".") >= 2 else ""
        path = published_root / producer / f"{name}.v{model.schema_version}.json"
        if not path.exists():
            breaks.append(SchemaBreak(name, f"v{model.schema_version} is not published"))
            continue
        published, reader = json.loads(path.read_text()), model.model_json_schema()
        breaks += [
            SchemaBreak(name, reason)
            for reason in _reader_disagreements("", (published, published), (reader, reader))
        ]
    return breaks


def _reader_disagreements(
    path: str, pub_at: tuple[Payload, Payload], mine_at: tuple[Payload, Payload]
) -> list[str]:
    """Each argument: (whole schema, for ``$ref``s; the node compared)."""
    (published, pub), (reader, mine) = pub_at, mine_at
    pub, mine = _resolve(published, pub), _resolve(reader, mine)
    reasons: list[str] = []
    pub_props, pub_required = pub.get("properties", {}), set(pub.get("required", []))
    for field, mine_field in mine.get("properties", {}).items():
        if field not in pub_props:
            reasons.append(f"reads {path}{field}, not published")
            continue
        if field in mine.get("required", []) and field not in pub_required:
            reasons.append(f"requires {path}{field}, which may be absent")
        p, m = _resolve(published, pub_props[field]), _resolve(reader, mine_field)
        if not _types(p) <= _types(m) and "any" not in _types(m):
            reasons.append(
                f"reads {path}{field} as {sorted(_types(m))}, published as {sorted(_types(p))}"
            )
        pv, mv = _values(p), _values(m)
        if pv is not None and mv is not None:
            reasons += [f"refuses {path}{field} = {v!r}" for v in sorted(pv - mv)]
        if "properties" in m:
            reasons += _reader_disagreements(f"{path}{field}.", (published, p), (reader, m))
        if "items" in p and "items" in m:
            reasons += _reader_disagreements(
                f"{path}{field}[].", (published, p["items"]), (reader, m["items"])
            )
    return reasons


def merge(registries: Iterable[EventRegistry]) -> EventRegistry:
    merged = EventRegistry()
    for r in registries:
        merged.include(r)
    return merged
