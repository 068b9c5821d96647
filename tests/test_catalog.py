"""The event catalog page of each service (docs/events/<service>/README.md): every event type
with its description, schema version and fields. ``test_contracts`` checks it is not stale."""

import re
from pathlib import Path

import pytest
from cunzhi_platform import catalog

from cunzhi_cli.services import SERVICES

DOCS = Path(__file__).resolve().parents[1] / "docs" / "events"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_the_catalog_describes_every_event_and_field(service):
    registry, _ = SERVICES[service]
    page = (DOCS / service / "README.md").read_text()
    for name in registry.names():
        model = registry.model(name)
        section = page.split(f"\n## {name.rsplit('.', 1)[1]}\n", 1)[1].split("\n## ", 1)[0]
        assert f"`{name}`, schema version {model.schema_version}" in section
        summary = (model.__doc__ or "").strip().splitlines()[0]
        assert summary in section
        schema = model.model_json_schema()
        for field in schema.get("properties", {}):
            required = "yes" if field in schema.get("required", []) else "no"
            assert re.search(rf"\| `{field}` \| [^\n]+ \| {required} \|", section), field


def test_field_types_read_as_words():
    from cunzhi_meetings.events import registry

    page = catalog.markdown("meetings", registry)
    past = page.split("\n## PastForumRecorded\n", 1)[1].split("\n## ", 1)[0]
    assert "| `date` | date | yes |" in past
    assert "| `problem_solved` | boolean | yes |" in past
    assert "| `host_unit` | string or null | no | (default `null`) |" in past
    assert "| `mode` | one of `at_township`" in past
    assert "### GuestSpeaker" in page
