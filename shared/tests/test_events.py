import json
from typing import Literal

import pytest
from cunzhi_platform.events import (
    Event,
    EventRegistry,
    InvalidEventPayload,
    Reader,
    UnknownEventType,
    check_published,
    reader_breaks,
    schema_breaks,
)
from pydantic import ValidationError


def make_registry(version: int = 2) -> tuple[EventRegistry, type[Event]]:
    registry = EventRegistry()

    @registry.register("cunzhi.test.TopicSubmitted", version=version)
    class TopicSubmitted(Event):
        topic_id: str
        title: str
        village_ids: list[str]

    @registry.upcaster("cunzhi.test.TopicSubmitted", from_version=1)
    def v1_to_v2(payload):
        # v1 had one village; v2 allows several.
        payload = dict(payload)
        payload["village_ids"] = [payload.pop("village_id")]
        return payload

    return registry, TopicSubmitted


def test_decode_current_version():
    registry, cls = make_registry()
    event = registry.decode(
        "cunzhi.test.TopicSubmitted", 2, {"topic_id": "t1", "title": "x", "village_ids": ["v1"]}
    )
    assert event == cls(topic_id="t1", title="x", village_ids=["v1"])
    assert event.event_type == "cunzhi.test.TopicSubmitted" and event.schema_version == 2


def test_older_versions_are_upcast_on_read():
    registry, cls = make_registry()
    event = registry.decode(
        "cunzhi.test.TopicSubmitted", 1, {"topic_id": "t1", "title": "x", "village_id": "v9"}
    )
    assert event == cls(topic_id="t1", title="x", village_ids=["v9"])


def test_unknown_type_newer_version_and_missing_upcaster_are_refused():
    registry, _ = make_registry()
    with pytest.raises(UnknownEventType, match="unknown event type"):
        registry.decode("cunzhi.test.Nope", 1, {})
    with pytest.raises(UnknownEventType, match="newer"):
        registry.decode("cunzhi.test.TopicSubmitted", 3, {})
    registry3, _ = make_registry(version=3)
    with pytest.raises(UnknownEventType, match=r"no upcaster .* version 2"):
        registry3.decode("cunzhi.test.TopicSubmitted", 2, {"topic_id": "t"})


def test_invalid_payload_never_becomes_an_event():
    registry, cls = make_registry()
    with pytest.raises(InvalidEventPayload, match="title"):
        registry.decode("cunzhi.test.TopicSubmitted", 2, {"topic_id": "t1", "village_ids": []})
    with pytest.raises(ValidationError):
        cls(topic_id="t1", title="x", village_ids=[], extra="no")


def test_registering_two_classes_under_one_name_is_an_error():
    registry, _ = make_registry()
    with pytest.raises(ValueError, match="already registered"):

        @registry.register("cunzhi.test.TopicSubmitted")
        class Other(Event):
            pass


def test_json_schema_export_names_type_and_version(tmp_path):
    registry, _ = make_registry()
    [path] = registry.write_schemas(tmp_path)
    assert path.name == "cunzhi.test.TopicSubmitted.v2.json"
    schema = json.loads(path.read_text())
    assert schema["required"] == ["topic_id", "title", "village_ids"]


def _schema(**fields):
    class M(Event):
        __annotations__ = fields

    return M.model_json_schema()


def test_compatible_change_adding_an_optional_field():
    class Old(Event):
        a: str

    class New(Event):
        a: str
        b: int | None = None

    assert schema_breaks("E", Old.model_json_schema(), New.model_json_schema()) == []


def test_breaking_changes_are_each_reported():
    class Old(Event):
        a: str
        b: int
        state: Literal["open", "closed"]

    class New(Event):
        a: int
        state: Literal["open"]
        c: str

    reasons = {
        b.reason for b in schema_breaks("E", Old.model_json_schema(), New.model_json_schema())
    }
    assert reasons == {
        "field b was removed",
        "field c became required",
        "field a changed type from ['string'] to ['integer']",
        "value 'closed' of state removed",
    }


def test_published_schemas_are_checked_against_code(tmp_path):
    registry, _ = make_registry()
    registry.write_schemas(tmp_path)
    assert check_published(registry, tmp_path) == []

    # The code drops a field that was published: the check fails, naming it.
    changed = EventRegistry()

    @changed.register("cunzhi.test.TopicSubmitted", version=2)
    class TopicSubmitted(Event):
        topic_id: str
        title: str

    breaks = check_published(changed, tmp_path)
    assert [str(b) for b in breaks] == ["cunzhi.test.TopicSubmitted: field village_ids was removed"]

    # Bumping the version without an upcaster from the published one is also a break.
    bumped, _ = make_registry(version=3)
    assert [b.reason for b in check_published(bumped, tmp_path)] == ["no upcaster from v2"]
    # A published type that vanished from the code is a break.
    assert [b.reason for b in check_published(EventRegistry(), tmp_path)] == [
        "published event type no longer exists"
    ]


def _publish(tmp_path, registry):
    registry.write_schemas(tmp_path / "test")
    return tmp_path


def _readers(**fields):
    readers = EventRegistry()
    model = type("TopicSubmittedReader", (Reader,), {"__annotations__": fields})
    readers.register("cunzhi.test.TopicSubmitted", version=2)(model)
    return readers


def test_a_reader_of_a_subset_of_the_published_fields_agrees(tmp_path):
    registry, _ = make_registry()
    root = _publish(tmp_path, registry)
    readers = _readers(topic_id=str, village_ids=list[str])
    assert reader_breaks(readers, root) == []
    # and it ignores what it does not read, so the producer may add fields
    event = readers.decode(
        "cunzhi.test.TopicSubmitted",
        2,
        {"topic_id": "t", "title": "x", "village_ids": [], "new": 1},
    )
    assert event.topic_id == "t"


def test_a_reader_that_expects_what_the_producer_does_not_publish_breaks(tmp_path):
    registry, _ = make_registry()
    root = _publish(tmp_path, registry)
    assert [str(b) for b in reader_breaks(_readers(forum_id=str), root)] == [
        "cunzhi.test.TopicSubmitted: reads forum_id, not published"
    ]
    assert [str(b) for b in reader_breaks(_readers(title=int), root)] == [
        "cunzhi.test.TopicSubmitted: reads title as ['integer'], published as ['string']"
    ]


def test_a_reader_of_an_unpublished_version_breaks(tmp_path):
    registry, _ = make_registry(version=1)
    root = _publish(tmp_path, registry)
    assert [str(b) for b in reader_breaks(_readers(topic_id=str), root)] == [
        "cunzhi.test.TopicSubmitted: v2 is not published"
    ]


def test_a_reader_that_narrows_an_enum_or_requires_an_optional_field_breaks(tmp_path):
    registry = EventRegistry()

    @registry.register("cunzhi.test.ForumHeld")
    class ForumHeld(Event):
        mode: Literal["township", "field_visit"]
        minutes: str | None = None

    registry.write_schemas(tmp_path / "test")
    readers = EventRegistry()

    @readers.register("cunzhi.test.ForumHeld")
    class ForumHeldReader(Reader):
        mode: Literal["township"]
        minutes: str

    assert sorted(str(b) for b in reader_breaks(readers, tmp_path)) == [
        "cunzhi.test.ForumHeld: reads minutes as ['string'], published as ['null', 'string']",
        "cunzhi.test.ForumHeld: refuses mode = 'field_visit'",
        "cunzhi.test.ForumHeld: requires minutes, which may be absent",
    ]
