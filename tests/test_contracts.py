"""The published event contracts under docs/events: current, and never broken.

After changing an event, regenerate them with ``uv run cunzhi docs`` from the repository root.
A schema version once published stays in the folder, so old events and old consumers remain
described; changing it incompatibly fails here — publish a new version with an upcaster.
"""

from pathlib import Path

import pytest
from cunzhi_platform import asyncapi
from cunzhi_platform.events import check_published

from cunzhi_cli.services import SERVICES

DOCS = Path(__file__).resolve().parents[1] / "docs" / "events"


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
