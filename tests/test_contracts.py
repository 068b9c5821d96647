"""The published event contracts under docs/events: current, and never broken.

After changing an event, regenerate them with ``uv run cunzhi docs`` from the repository root.
A schema version once published stays in the folder, so old events and old consumers remain
described; changing it incompatibly fails here — publish a new version with an upcaster.
"""

import ast
from pathlib import Path

import pytest
from cunzhi_platform import asyncapi
from cunzhi_platform.events import check_published, merge, reader_breaks

from cunzhi_cli.services import RUNNABLE, SERVICES

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "events"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_committed_documents_are_what_the_code_generates(service):
    registry, description = SERVICES[service]
    expected = asyncapi.render(service, registry, description)
    committed = {
        name: (DOCS / service / name).read_text()
        for name in expected
        if (DOCS / service / name).exists()
    }
    assert committed == expected, "run `uv run cunzhi docs` and commit docs/events"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_no_change_breaks_a_published_schema(service):
    registry, _ = SERVICES[service]
    assert check_published(registry, DOCS / service) == []


@pytest.mark.parametrize("service", sorted(RUNNABLE))
def test_every_reader_agrees_with_what_its_producer_publishes(service):
    readers = merge(RUNNABLE[service]().consumes)
    assert readers.names(), f"{service} reads no other service's events"
    assert reader_breaks(readers, DOCS) == []


SERVICE_PACKAGES = {p.parent.name: p for p in (ROOT / "services").glob("*/src/cunzhi_*")}


@pytest.mark.parametrize("service", sorted(SERVICE_PACKAGES))
def test_a_service_imports_no_other_service(service):
    """Services are upgraded one at a time: they share events, never code."""
    others = {p.name for s, p in SERVICE_PACKAGES.items() if s != service}
    offending = []
    for path in SERVICE_PACKAGES[service].rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offending += [f"{path.name}: {n}" for n in names if n.split(".")[0] in others]
    assert offending == []
