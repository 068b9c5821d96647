"""Rules of a tracked work item (任务), on the aggregate alone."""

from __future__ import annotations

import datetime as dt

import pytest
from cunzhi_platform.aggregate import DomainError, Forbidden, InvalidTransition, NotFound
from cunzhi_platform.clock import SHANGHAI
from cunzhi_platform.events import Event
from cunzhi_rectification.domain.tasks import (
    Actor,
    EscalationPolicy,
    Task,
    TaskDraft,
    TaskStatus,
    deadline,
    effective_due_day,
    escalation_cutoff,
    task_stream_id,
    working_days_overdue,
)
from cunzhi_rectification.events import (
    Assignee,
    Evidence,
    TaskAssigned,
    TaskCompleted,
    TaskEscalated,
    TaskOverdue,
    TaskProgressReported,
    TaskRescheduled,
)

START = dt.date(2026, 3, 2)  # a Monday
DUE = dt.date(2026, 3, 31)  # a Tuesday
SECRETARY = Actor("wang-jianguo", secretary_of=frozenset({"qianguandi"}))
OTHER_SECRETARY = Actor("li-guoqiang", secretary_of=frozenset({"houguandi"}))
OFFICE = Actor("ma-xiaodong", office_of=frozenset({"guandi"}))
OTHER_OFFICE = Actor("someone", office_of=frozenset({"liangcai"}))
COUNTY = Actor("county-org", county=True)
PHOTO = Evidence(kind="file", value="evidence://e/ledger.jpg", title="流动党员台账")
POLICY = EscalationPolicy(township_after=3, county_after=8)


def draft(**changes: object) -> TaskDraft:
    fields: dict[str, object] = {
        "task_id": "guandi-F018-T1",
        "source": "forum_resolution",
        "township_id": "guandi",
        "assignee": Assignee(kind="village", id="qianguandi"),
        "title": "建立流动党员台账",
        "starts_on": START,
        "due_on": DUE,
        "forum_id": "guandi-F018",
        "resolution_id": "guandi-F018-R1",
        "topic_id": "topic-1",
    }
    fields.update(changes)
    return TaskDraft(**fields)  # type: ignore[arg-type]


def run(task: Task, events: list[Event]) -> list[Event]:
    for e in events:
        task.apply(e)
    return events


def assigned(**changes: object) -> Task:
    task = Task(task_stream_id("guandi-F018-T1"))
    run(task, task.assign(draft(**changes)))
    return task


def at(day: dt.date, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=SHANGHAI)


# --- assignment ----------------------------------------------------------------------------


def test_a_village_task_concerns_its_village_and_starts_open():
    task = assigned()
    assert task.assigned is not None and task.assigned.village_id == "qianguandi"
    assert (task.status, task.percent, task.level) == (TaskStatus.OPEN, 0, None)


def test_assigning_the_same_task_again_does_nothing_but_differently_is_refused():
    task = assigned()
    assert task.assign(draft()) == []
    with pytest.raises(InvalidTransition, match=r"already assigned .*forum guandi-F018"):
        task.assign(draft(title="另一项任务"))


def test_a_due_date_before_the_start_is_refused_naming_the_field():
    with pytest.raises(DomainError, match="before the task starts") as refused:
        Task("task:x").assign(draft(due_on=START - dt.timedelta(days=1)))
    assert refused.value.field == "due_on" and refused.value.status == 422


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"title": "  "}, "title"),
        ({"due_on": START + dt.timedelta(days=5 * 366 + 1)}, "due_on"),
        ({"weight": 0.0}, "weight"),
        ({"weight": 1001.0}, "weight"),
        ({"assignee": Assignee(kind="person", id=" ")}, "assignee"),
        ({"forum_id": None}, "forum_id"),
        ({"source": "campaign_target", "campaign_id": "bincheng-3"}, "campaign_id"),
    ],
)
def test_an_invalid_assignment_is_refused(changes, field):
    with pytest.raises(DomainError) as refused:
        Task("task:x").assign(draft(**changes))
    assert refused.value.field == field


def test_a_campaign_target_carries_its_campaign_village_area_and_weight():
    (event,) = Task("task:x").assign(
        draft(
            task_id="bincheng-3-v001-01",
            source="campaign_target",
            forum_id=None,
            resolution_id=None,
            topic_id=None,
            campaign_id="bincheng-3",
            village_id="v001",
            assignee=Assignee(kind="person", id="team-leader-1", name="张组长"),
            area="班子队伍建设",
            weight=2.5,
        )
    )
    assert isinstance(event, TaskAssigned)
    assert (event.campaign_id, event.village_id, event.area, event.weight) == (
        "bincheng-3",
        "v001",
        "班子队伍建设",
        2.5,
    )


# --- progress ------------------------------------------------------------------------------


def test_the_assignee_reports_progress_with_evidence():
    task = assigned()
    (event,) = run(
        task,
        task.report_progress(SECRETARY, percent=40, note="已摸排23名", evidence=[PHOTO], today=DUE),
    )
    assert isinstance(event, TaskProgressReported)
    assert (event.percent, event.previous_percent, event.reported_by) == (40, 0, "wang-jianguo")
    assert task.percent == 40 and task.reports[0].evidence == (PHOTO,)


def test_progress_never_goes_below_the_last_report():
    task = assigned()
    run(task, task.report_progress(SECRETARY, percent=60, today=START))
    with pytest.raises(DomainError, match="below the last report") as refused:
        task.report_progress(SECRETARY, percent=50, today=START)
    assert refused.value.field == "percent" and refused.value.status == 422


@pytest.mark.parametrize("percent", [-1, 101, 150])
def test_progress_is_within_0_and_100(percent):
    with pytest.raises(DomainError, match="from 0 to 100") as refused:
        assigned().report_progress(SECRETARY, percent=percent, today=START)
    assert refused.value.field == "percent"


def test_a_report_without_new_progress_needs_a_note_or_evidence():
    task = assigned()
    with pytest.raises(DomainError, match="note or evidence"):
        task.report_progress(SECRETARY, percent=0, today=START)
    assert task.report_progress(SECRETARY, percent=0, note="遇到困难", today=START)


@pytest.mark.parametrize("actor", [OTHER_SECRETARY, OTHER_OFFICE, COUNTY, Actor("wang-jianguo")])
def test_only_the_assignee_or_the_township_office_reports(actor):
    with pytest.raises(Forbidden, match="only its assignee or the office of township guandi"):
        assigned().report_progress(actor, percent=10, today=START)


def test_the_township_office_reports_on_any_task_of_its_township():
    assert assigned().report_progress(OFFICE, percent=10, today=START)


def test_a_person_assignee_reports_on_their_own_task_only():
    task = assigned(assignee=Assignee(kind="person", id="feng-bo"))
    assert task.assigned is not None and task.assigned.village_id is None
    assert task.report_progress(Actor("feng-bo"), percent=10, today=START)
    with pytest.raises(Forbidden):
        task.report_progress(SECRETARY, percent=10, today=START)


# --- completion ----------------------------------------------------------------------------


def test_completion_carries_the_forum_and_needs_evidence_or_a_summary():
    task = assigned()
    with pytest.raises(DomainError, match="evidence or a summary") as refused:
        task.complete(SECRETARY, today=DUE)
    assert refused.value.field == "evidence"
    (event,) = run(task, task.complete(SECRETARY, summary="台账已建立", today=DUE))
    assert isinstance(event, TaskCompleted)
    assert (event.task_id, event.forum_id, event.township_id) == (
        "guandi-F018-T1",
        "guandi-F018",
        "guandi",
    )
    assert event.completed_by == "wang-jianguo" and task.status == TaskStatus.COMPLETED


def test_a_task_completes_once_and_takes_no_report_after():
    task = assigned()
    run(task, task.complete(SECRETARY, evidence=[PHOTO], today=DUE))
    with pytest.raises(InvalidTransition, match="completed on 2026-03-31") as refused:
        task.complete(SECRETARY, summary="again", today=DUE)
    assert refused.value.status == 409
    with pytest.raises(InvalidTransition):
        task.report_progress(SECRETARY, percent=100, today=DUE)


def test_completing_is_for_the_assignee_or_the_office_too():
    with pytest.raises(Forbidden):
        assigned().complete(OTHER_SECRETARY, summary="done", today=DUE)


# --- deadlines and escalation --------------------------------------------------------------


def test_a_task_is_overdue_at_the_end_of_its_due_day_in_shanghai():
    assert deadline(DUE) == at(dt.date(2026, 4, 1))
    task = assigned()
    assert task.check_deadline(at(DUE, 23, 59), POLICY) == []
    (event,) = run(task, task.check_deadline(at(dt.date(2026, 4, 1)), POLICY))
    assert isinstance(event, TaskOverdue)
    assert (event.due_on, event.deadline, event.percent) == (DUE, at(dt.date(2026, 4, 1)), 0)
    assert (task.status, task.level) == (TaskStatus.OVERDUE, "village")


def test_a_due_day_on_a_holiday_runs_to_the_end_of_the_next_working_day():
    # 2026 National Day: 1–7 October off, Saturday 10 October a working day.
    assert effective_due_day(dt.date(2026, 10, 3)) == dt.date(2026, 10, 8)
    assert deadline(dt.date(2026, 10, 3)) == at(dt.date(2026, 10, 9))
    # An adjusted weekend working day is a working day: it is its own deadline.
    assert effective_due_day(dt.date(2026, 10, 10)) == dt.date(2026, 10, 10)
    task = assigned(starts_on=dt.date(2026, 9, 1), due_on=dt.date(2026, 10, 3))
    assert task.assigned is not None and task.assigned.deadline == at(dt.date(2026, 10, 9))
    assert task.check_deadline(at(dt.date(2026, 10, 8), 18), POLICY) == []
    assert task.check_deadline(at(dt.date(2026, 10, 9)), POLICY)


def test_overdue_escalates_to_the_township_then_the_county_after_working_days():
    task = assigned()
    run(task, task.check_deadline(at(dt.date(2026, 4, 1)), POLICY))
    # 1 April (Wed) is working day 1 overdue; 2 April is day 2; 3 April day 3 (Qingming is the
    # 4th–6th in 2026: Saturday to Monday).
    assert task.check_deadline(at(dt.date(2026, 4, 2), 23), POLICY) == []
    (step,) = run(task, task.check_deadline(at(dt.date(2026, 4, 3)), POLICY))
    assert isinstance(step, TaskEscalated)
    assert (step.level, step.previous_level, step.working_days_overdue) == (
        "township",
        "village",
        3,
    )
    assert working_days_overdue(DUE, dt.date(2026, 4, 13)) == 8
    assert task.check_deadline(at(dt.date(2026, 4, 10)), POLICY) == []
    (step,) = run(task, task.check_deadline(at(dt.date(2026, 4, 13)), POLICY))
    assert isinstance(step, TaskEscalated) and (step.level, step.previous_level) == (
        "county",
        "township",
    )
    assert task.check_deadline(at(dt.date(2026, 6, 1)), POLICY) == []


def test_a_timer_that_was_down_catches_up_with_every_step_each_its_own_event():
    events = assigned().check_deadline(at(dt.date(2026, 5, 20)), POLICY)
    assert [type(e).__name__ for e in events] == ["TaskOverdue", "TaskEscalated", "TaskEscalated"]
    assert [getattr(e, "level", None) for e in events] == [None, "township", "county"]


def test_a_completed_task_is_never_overdue():
    task = assigned()
    run(task, task.complete(OFFICE, summary="done", today=DUE))
    assert task.check_deadline(at(dt.date(2026, 5, 20)), POLICY) == []


def test_the_escalation_cutoff_agrees_with_counting_working_days():
    today = dt.date(2026, 4, 13)
    for n in (1, 3, 8):
        cutoff = escalation_cutoff(today, n)
        for offset in range(40):
            due = today - dt.timedelta(days=offset)
            reached = working_days_overdue(due, today) >= n
            assert (deadline(due) <= cutoff) == reached, (n, due)


def test_the_escalation_policy_is_ordered():
    with pytest.raises(ValueError, match="escalation needs"):
        EscalationPolicy(township_after=5, county_after=5)


# --- rescheduling --------------------------------------------------------------------------


def test_the_office_moves_an_overdue_task_due_date_and_it_is_open_again():
    task = assigned()
    now = at(dt.date(2026, 4, 8))
    run(task, task.check_deadline(now, POLICY))
    assert task.level == "township"
    (event,) = run(
        task,
        task.reschedule(OFFICE, due_on=dt.date(2026, 4, 30), reason="汛期顺延", now=now),
    )
    assert isinstance(event, TaskRescheduled) and event.previous_due_on == DUE
    assert (task.status, task.level, task.due_on) == (TaskStatus.OPEN, None, dt.date(2026, 4, 30))
    assert task.check_deadline(now, POLICY) == []


@pytest.mark.parametrize(
    ("actor", "due_on", "reason", "error", "match"),
    [
        (SECRETARY, dt.date(2026, 4, 30), "顺延", Forbidden, "only the office"),
        (OFFICE, START - dt.timedelta(days=1), "顺延", DomainError, "before the task starts"),
        (OFFICE, dt.date(2026, 3, 20), "顺延", DomainError, "already ended"),
        (OFFICE, DUE, "顺延", DomainError, "already due"),
        (OFFICE, dt.date(2026, 4, 30), " ", DomainError, "say why"),
    ],
)
def test_rescheduling_is_refused(actor, due_on, reason, error, match):
    with pytest.raises(error, match=match):
        assigned().reschedule(actor, due_on=due_on, reason=reason, now=at(dt.date(2026, 3, 25)))


def test_the_county_reschedules_too():
    assert assigned().reschedule(COUNTY, due_on=dt.date(2026, 4, 30), reason="顺延", now=at(START))


def test_the_villages_work_team_reports_on_its_campaign_targets_only():
    team = Actor("team-member", team_of=frozenset({("bincheng-3", "v001")}))
    target = assigned(
        source="campaign_target",
        forum_id=None,
        resolution_id=None,
        campaign_id="bincheng-3",
        village_id="v001",
        assignee=Assignee(kind="person", id="team-leader"),
    )
    assert target.report_progress(team, percent=20, today=START)
    forum_task = assigned(assignee=Assignee(kind="village", id="v001"))
    with pytest.raises(Forbidden):
        forum_task.report_progress(team, percent=20, today=START)
    # the same village carried over into the next round: that round's target is not theirs
    next_round = assigned(
        source="campaign_target",
        forum_id=None,
        resolution_id=None,
        campaign_id="bincheng-4",
        village_id="v001",
        assignee=Assignee(kind="person", id="team-leader"),
    )
    with pytest.raises(Forbidden, match="work team of village v001 in bincheng-4"):
        next_round.report_progress(team, percent=20, today=START)
    with pytest.raises(NotFound):
        next_round.require_target_of("bincheng-3")
    with pytest.raises(NotFound):
        forum_task.require_target_of("bincheng-3")
