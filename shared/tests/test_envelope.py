import datetime as dt

import pytest
from cunzhi_platform.clock import SHANGHAI
from cunzhi_platform.envelope import Envelope, EnvelopeError, dlq_for, topic_for

WHEN = dt.datetime(2026, 11, 23, 9, 30, tzinfo=SHANGHAI)


def test_headers_carry_every_cloudevents_attribute_and_round_trip():
    env = Envelope.new(
        type="cunzhi.topics.TopicSubmitted",
        source="/cunzhi/topics",
        subject="topic:1",
        time=WHEN,
        schema_version=2,
        causation_id="c-1",
        actor="secretary-7",
        stream_version=4,
    )
    headers = dict(env.to_headers())
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_id"] == env.id.encode()
    assert headers["ce_type"] == b"cunzhi.topics.TopicSubmitted"
    assert headers["ce_source"] == b"/cunzhi/topics"
    assert headers["ce_subject"] == b"topic:1"
    assert dt.datetime.fromisoformat(headers["ce_time"].decode()) == WHEN
    assert headers["ce_schemaversion"] == b"2"
    assert headers["ce_correlationid"] == env.id.encode()  # a command starts the conversation
    assert headers["ce_causationid"] == b"c-1"
    assert headers["ce_actor"] == b"secretary-7"
    assert headers["ce_streamversion"] == b"4"
    assert headers["ce_dataschema"] == b"urn:cunzhi:schema:cunzhi.topics.TopicSubmitted:v2"
    assert Envelope.from_headers(env.to_headers()) == env


def test_dataschema_may_be_absent_and_is_not_read():
    """Events published before ``ce_dataschema`` was carried decode as before; the schema
    follows from the type and version, whatever the header says."""
    env = Envelope.new(type="t", source="/s", subject="x", time=WHEN, schema_version=3)
    without = [(k, v) for k, v in env.to_headers() if k != "ce_dataschema"]
    assert len(without) == len(env.to_headers()) - 1
    assert Envelope.from_headers(without) == env
    other = [*without, ("ce_dataschema", b"https://example.org/other.json")]
    assert Envelope.from_headers(other).dataschema == "urn:cunzhi:schema:t:v3"


def test_missing_attributes_are_named():
    env = Envelope.new(type="t", source="/s", subject="x", time=WHEN)
    headers = [(k, v) for k, v in env.to_headers() if k not in ("ce_id", "ce_source")]
    with pytest.raises(EnvelopeError, match="ce_id, ce_source"):
        Envelope.from_headers(headers)


def test_time_is_optional_and_then_the_received_time_stands_for_it():
    """CloudEvents makes ``time`` optional; a header without a value counts as absent."""
    env = Envelope.new(type="t", source="/s", subject="x", time=WHEN)
    headers = [(k, v) for k, v in env.to_headers() if k != "ce_time"]
    received = dt.datetime(2026, 11, 24, 8, 0, tzinfo=SHANGHAI)
    decoded = Envelope.from_headers([*headers, ("ce_actor", None)], received=received)
    assert decoded.time == received
    assert decoded.actor is None
    assert decoded.stream_version is None  # events stored before it was carried


@pytest.mark.parametrize(
    ("header", "value", "message"),
    [
        ("ce_specversion", b"0.3", "specversion"),
        ("ce_time", b"yesterday", "ce_time"),
        ("ce_schemaversion", b"two", "ce_schemaversion"),
        ("ce_streamversion", b"4th", "ce_streamversion"),
        ("ce_type", b"\xff", "UTF-8"),
    ],
)
def test_malformed_attributes_are_refused(header, value, message):
    env = Envelope.new(type="t", source="/s", subject="x", time=WHEN)
    headers = dict(env.to_headers())
    headers[header] = value
    with pytest.raises(EnvelopeError, match=message):
        Envelope.from_headers(headers)


def test_topic_names():
    assert topic_for("topics") == "cunzhi.topics.events"
    assert dlq_for(topic_for("topics")) == "cunzhi.topics.events.dlq"
