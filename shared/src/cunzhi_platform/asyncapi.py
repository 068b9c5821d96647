"""AsyncAPI 3.0 document of a service's events, generated from its registry.

Written under ``docs/events/<service>/`` beside the JSON Schema of each event and the readable
catalog page (``README.md``, see ``catalog``); the test suite fails when the committed documents
are stale or a change breaks a published schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import catalog
from .envelope import dlq_for, topic_for
from .events import EventRegistry

PAYLOAD_FORMAT = "application/schema+json;version=draft-07"
"""The payload schemas' format for AsyncAPI parsers: JSON Schema, whose validators ignore the
keywords they do not know (pydantic's ``discriminator`` objects; its schemas are draft 2020-12,
which AsyncAPI 3.0 does not list, and use nothing draft-07 reads otherwise: their ``$defs`` are
reached by JSON pointer)."""

HEADERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "CloudEvents 1.0 binary content mode attributes, plus cunzhi extensions",
    "required": ["ce_id", "ce_type", "ce_source", "ce_specversion", "ce_time", "ce_subject"],
    "properties": {
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_id": {"type": "string", "description": "event id (UUID); consumers dedupe on it"},
        "ce_type": {"type": "string", "description": "event type name"},
        "ce_source": {"type": "string", "description": "/cunzhi/<service>"},
        "ce_subject": {"type": "string", "description": "aggregate (stream) id = Kafka key"},
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_schemaversion": {"type": "string", "description": "schema version of the payload"},
        "ce_dataschema": {
            "type": "string",
            "format": "uri",
            "description": "the payload's JSON Schema, urn:cunzhi:schema:<ce_type>:v<version> "
            "(the file <ce_type>.v<version>.json beside this document); absent on events "
            "published before it was carried",
        },
        "ce_streamversion": {
            "type": "string",
            "description": "version of the event in its stream (1, 2, …): a gap means a missed "
            "event; absent on events published before it was carried",
        },
        "ce_correlationid": {"type": "string"},
        "ce_causationid": {"type": "string"},
        "ce_actor": {"type": "string", "description": "person who issued the command"},
    },
}


def asyncapi_document(
    service: str, registry: EventRegistry, description: str = ""
) -> dict[str, Any]:
    topic = topic_for(service)
    messages: dict[str, Any] = {}
    for name in registry.names():
        model = registry.model(name)
        short = name.rsplit(".", 1)[-1]
        messages[short] = {
            "name": name,
            "title": short,
            "summary": (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else "",
            "contentType": "application/json",
            "headers": HEADERS_SCHEMA,
            # JSON Schema named as such: pydantic's schemas carry OpenAPI-style `discriminator`
            # objects, which the default (AsyncAPI Schema) format rejects.
            "payload": {
                "schemaFormat": PAYLOAD_FORMAT,
                "schema": {"$ref": f"./{name}.v{model.schema_version}.json"},
            },
            "x-schema-version": model.schema_version,
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": f"cunzhi {service} events",
            "version": "1.0.0",
            "description": description,
        },
        "channels": {
            "events": {
                "address": topic,
                "description": "key = aggregate id; per-key order is guaranteed",
                "messages": {k: {"$ref": f"#/components/messages/{k}"} for k in messages},
            },
            "deadLetters": {
                "address": dlq_for(topic),
                "description": "messages a consumer could not process; reason in dlq_* headers",
            },
        },
        "operations": {
            "publishEvents": {"action": "send", "channel": {"$ref": "#/channels/events"}},
        },
        "components": {"messages": messages},
    }


def render(service: str, registry: EventRegistry, description: str = "") -> dict[str, str]:
    """File name → content of every document for the service."""
    files = {
        "asyncapi.json": asyncapi_document(service, registry, description),
        **{f"{key}.json": schema for key, schema in registry.json_schemas().items()},
    }
    rendered = {
        name: json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        for name, doc in files.items()
    }
    # The same schemas as a page to read, so it is never staler than they are.
    rendered["README.md"] = catalog.markdown(service, registry, description)
    return rendered


def write(directory: Path, service: str, registry: EventRegistry, description: str = "") -> None:
    """Write the documents; schemas already published are never deleted (history is kept)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in render(service, registry, description).items():
        (directory / name).write_text(content)
