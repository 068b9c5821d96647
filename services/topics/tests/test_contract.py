"""The published contract of the topics service: AsyncAPI and JSON Schemas under docs/events.

After changing an event, regenerate from the repository root with
``python -c "from cunzhi_topics.service import write_contract; write_contract()"``.
"""

from __future__ import annotations

from pathlib import Path

from cunzhi_platform import asyncapi
from cunzhi_platform.events import check_published
from cunzhi_topics.events import SERVICE, registry
from cunzhi_topics.service import CONTRACT_DIR, DESCRIPTION

DOCS = Path(__file__).resolve().parents[3] / CONTRACT_DIR


def test_committed_documents_are_what_the_code_generates() -> None:
    expected = asyncapi.render(SERVICE, registry, DESCRIPTION)
    # Older schema versions stay published beside the current ones; only these must match.
    committed = {name: (DOCS / name).read_text() for name in expected if (DOCS / name).exists()}
    assert committed == expected


def test_no_change_breaks_a_published_schema() -> None:
    assert check_published(registry, DOCS) == []
