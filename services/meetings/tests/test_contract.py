"""The published contract: committed AsyncAPI and JSON Schemas are current and unbroken.

Regenerate after a deliberate change with
``python -c "from cunzhi_meetings.service import write_docs; write_docs()"`` from the root.
"""

from __future__ import annotations

from pathlib import Path

from cunzhi_meetings.events import SERVICE, registry
from cunzhi_meetings.service import DESCRIPTION
from cunzhi_platform import asyncapi
from cunzhi_platform.events import check_published

DOCS = Path(__file__).resolve().parents[3] / "docs" / "events" / SERVICE


def test_committed_documents_equal_the_generated_ones() -> None:
    committed = {p.name: p.read_text() for p in DOCS.glob("*.json")}
    rendered = asyncapi.render(SERVICE, registry, DESCRIPTION)
    # Schemas of older versions stay committed as history; every current one must match.
    assert {name: committed.get(name) for name in rendered} == rendered


def test_no_published_schema_is_broken() -> None:
    assert check_published(registry, DOCS) == []
