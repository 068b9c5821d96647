"""A stream's position in a consumer: what it applies, what it knows it has applied."""

from cunzhi_platform.positions import Position


def test_in_order_events_are_applied_once_and_the_history_again_never():
    at = Position()
    assert [at.admit(v) for v in (1, 2, 3)] == [True, True, True]
    assert [at.admit(v) for v in (1, 2, 3)] == [False, False, False]
    assert at == Position(3, [])


def test_versions_passed_over_are_applied_when_they_come_and_only_once():
    at = Position()
    at.admit(1)
    assert at.admit(5)  # 2 dead-lettered, 3 and 4 set aside by the relay, say
    assert at.missing == [(2, 5)] and at.missing_text() == "{[2,5)}"
    assert not at.covers(3) and at.covers(5) and at.covers(1)
    assert at.admit(3)  # 3 queued again
    assert at.missing == [(2, 3), (4, 5)]
    assert not at.admit(3)
    assert at.admit(2) and at.admit(4)
    assert at == Position(5, [])
    assert not any(at.admit(v) for v in range(1, 6))


def test_a_consumer_that_first_sees_a_stream_late_takes_its_earlier_history_when_it_comes():
    at = Position()
    assert at.admit(4)  # what the topic still held
    assert at.missing == [(1, 4)]
    assert [at.admit(v) for v in (1, 2, 3, 4)] == [True, True, True, False]  # republished
