"""Rectification's events as notices: task reminders, overdue, escalation, red lights, reports."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

from cunzhi_notifications import readers
from cunzhi_notifications.adapters.planner import Planner
from cunzhi_notifications.adapters.schema import MIGRATIONS
from cunzhi_platform.consumer import Tx, table_names
from cunzhi_platform.envelope import Envelope
from cunzhi_platform.migrations import migrate


def task_assigned(kit, township: str, task: str, village: str, **kw):
    return {
        "task_id": task,
        "source": "forum_resolution",
        "township_id": township,
        "assignee": {"kind": "village", "id": village, "name": "后关堤村"},
        "title": "建立流动党员台账",
        "starts_on": "2026-10-30",
        "due_on": "2026-11-30",
        "deadline": "2026-11-30T23:59:59+08:00",
        "weight": 1.0,
        **kw,
    }


async def campaign_in(kit, county: str, *townships: str) -> str:
    """A campaign of ``county`` over ``townships``, read by the planner before what follows (the
    events of its stream and of others are keyed apart)."""
    campaign = kit.fresh("c")
    await kit.publish(
        "rectification",
        "CampaignOpened",
        {
            "campaign_id": campaign,
            "county_id": county,
            "name": "第三轮整顿",
            "round_number": 3,
            "start_date": "2026-01-01",
            "end_date": "2027-12-31",
            "townships": [{"township_id": t, "name": "关堤乡"} for t in townships],
        },
        f"campaign:{campaign}",
    )
    await kit.until_ready(
        lambda: kit.pool.fetchval(
            f"SELECT true FROM {kit.s}.campaign_counties WHERE campaign_id = $1", campaign
        )
    )
    return campaign


async def other_desks(kit) -> list[str]:
    """Organisation departments that must not hear of Bincheng's villages: one of another
    county, one the directory gives no county."""
    return [
        await kit.person(
            None, name="邻县组织部", roles=["county_organisation_department"], county_id="zhanhua"
        ),
        await kit.person(None, name="无县组织部", roles=["county_organisation_department"]),
    ]


async def test_a_task_reminds_its_village_moves_with_its_due_date_and_tells_submitters(kit):
    township, village, task, topic = (kit.fresh(x) for x in ("tw", "v", "T", "t"))
    secretary = await kit.person(township, village_id=village, phone="13812340001")
    submitter = await kit.person(township, name="孙书记")
    await kit.publish(
        "topics",
        "TopicSubmitted",
        {
            "topic_id": topic,
            "township_id": township,
            "forum_id": "f",
            "village_ids": [],
            "submitter_ids": [submitter],
            "title": "流动党员管理难",
            "description": "d",
            "category": "c",
            "submitted_by": submitter,
            "submitter_role": "village_secretary",
            "submitted_at": kit.start.isoformat(),
        },
        f"topic:{topic}",
    )
    await kit.publish(
        "rectification",
        "TaskAssigned",
        task_assigned(kit, township, task, village, topic_id=topic),
        task,
    )
    reminders = await kit.until_ready(
        lambda: kit.pool.fetch(
            f"SELECT step, due_at FROM {kit.s}.reminders WHERE cancel_key = $1 ORDER BY step",
            f"task:{task}",
        )
    )
    shanghai = kit.start.tzinfo
    # due Monday 30 November: 3 working days before is Wednesday 25th, 1 is Friday 27th
    assert [(r["step"], r["due_at"]) for r in reminders] == [
        ("1", dt.datetime(2026, 11, 27, 9, 0, tzinfo=shanghai)),
        ("3", dt.datetime(2026, 11, 25, 9, 0, tzinfo=shanghai)),
    ]
    kit.clock.set(dt.datetime(2026, 11, 25, 9, 5, tzinfo=shanghai))
    rows = await kit.settled("kind = 'task_due' AND recipient_id = $1", secretary, count=2)
    by_channel = {r["channel"]: r for r in rows}
    assert "还有3个工作日" in by_channel["inbox"]["body"]
    assert "11月30日到期" in by_channel["sms"]["body"]

    await kit.publish(
        "rectification",
        "TaskRescheduled",
        {
            "task_id": task,
            "township_id": township,
            "previous_due_on": "2026-11-30",
            "due_on": "2026-12-14",
            "deadline": "2026-12-14T23:59:59+08:00",
            "reason": "天气",
            "rescheduled_by": "office",
        },
        task,
    )
    moved = await kit.until_ready(
        lambda: kit.pool.fetchval(
            f"""SELECT due_at FROM {kit.s}.reminders WHERE cancel_key = $1 AND step = '1'
                AND due_at > '2026-12-01'""",
            f"task:{task}",
        )
    )
    assert moved == dt.datetime(2026, 12, 11, 9, 0, tzinfo=shanghai)
    await kit.publish(
        "rectification",
        "TaskProgressReported",
        {
            "task_id": task,
            "township_id": township,
            "percent": 60,
            "previous_percent": 0,
            "reported_by": secretary,
            "reported_on": "2026-11-26",
            "note": "已建档",
        },
        task,
    )
    await kit.publish(
        "rectification",
        "TaskCompleted",
        {"task_id": task, "township_id": township, "completed_on": "2026-12-01"},
        task,
    )
    rows = await kit.settled("kind = 'task_progress' AND recipient_id = $1", submitter, count=2)
    bodies = sorted(r["body"] for r in rows)
    assert "进展至60%" in bodies[1] and "已完成" in bodies[0]
    statuses = await kit.pool.fetch(
        f"SELECT status FROM {kit.s}.reminders WHERE cancel_key = $1", f"task:{task}"
    )
    assert {r["status"] for r in statuses} == {"cancelled"}


async def test_overdue_and_escalation_reach_the_assignee_and_the_level_above(kit):
    township, village, task = kit.fresh("tw"), kit.fresh("v"), kit.fresh("T")
    secretary = await kit.person(township, village_id=village)
    office = await kit.person(township, roles=["party_building_office"])
    county = await kit.person(
        None, name="组织部", roles=["county_organisation_department"], county_id="bincheng"
    )
    others = await other_desks(kit)
    await campaign_in(kit, "bincheng", township)  # a forum's task: the township's county
    await kit.publish(
        "rectification", "TaskAssigned", task_assigned(kit, township, task, village), task
    )
    await kit.until_ready(
        lambda: kit.pool.fetchval(f"SELECT true FROM {kit.s}.tasks WHERE task_id = $1", task)
    )
    assignee = {"kind": "village", "id": village, "name": "后关堤村"}
    await kit.publish(
        "rectification",
        "TaskOverdue",
        {
            "task_id": task,
            "township_id": township,
            "assignee": assignee,
            "due_on": "2026-11-30",
            "deadline": "2026-11-30T23:59:59+08:00",
            "percent": 40,
        },
        task,
    )
    await kit.publish(
        "rectification",
        "TaskEscalated",
        {
            "task_id": task,
            "township_id": township,
            "level": "county",
            "previous_level": "township",
            "working_days_overdue": 5,
            "due_on": "2026-11-30",
        },
        task,
    )
    overdue = await kit.settled(
        "kind = 'task_overdue' AND recipient_id = ANY($1)", [secretary, office, county], count=1
    )
    assert overdue[0]["recipient_id"] == secretary
    escalated = await kit.settled(
        "kind = 'task_escalated' AND recipient_id = ANY($1)",
        [secretary, office, county, *others],
        count=2,
    )
    assert {r["recipient_id"] for r in escalated} == {secretary, county}
    body = (await kit.client.get("/inbox", headers=kit.me(county))).json()["items"][0]["body"]
    assert "逾期5个工作日" in body and "县级" in body


async def test_a_red_light_goes_through_quiet_hours_to_county_and_township(kit):
    township, village = kit.fresh("tw"), kit.fresh("v")
    county = await kit.person(
        None,
        name="组织部",
        roles=["county_organisation_department"],
        phone="13812340002",
        county_id="bincheng",
    )
    others = await other_desks(kit)
    campaign = await campaign_in(kit, "bincheng", township)
    office = await kit.person(township, roles=["party_building_office"], phone="13812340003")
    for p in (county, office):
        r = await kit.client.put(
            f"/people/{p}/schedule",
            json={"quiet_start": "09:00", "quiet_end": "12:00"},
            headers=kit.me(p),
        )
        assert r.status_code == 200
    light = {
        "campaign_id": campaign,
        "village_id": village,
        "township_id": township,
        "previous": "yellow",
        "light": "red",
        "reason": "2项任务逾期",
        "progress": 0.2,
        "planned": 0.5,
        "overdue_tasks": 2,
        "late_reports": 0,
    }
    await kit.publish(
        "rectification", "LightChanged", {**light, "light": "yellow", "previous": "green"}, village
    )
    event_id = await kit.publish("rectification", "LightChanged", light, village)
    rows = await kit.settled("source_event_id = $1", event_id, count=4)
    assert not {r["recipient_id"] for r in rows} & set(others)
    assert {(r["recipient_id"], r["channel"]) for r in rows} == {
        (county, "inbox"),
        (county, "sms"),
        (office, "inbox"),
        (office, "sms"),
    }
    assert not any(r["held"] for r in rows)  # urgent: quiet hours do not hold it
    yellow = await kit.pool.fetchval(
        f"SELECT count(*) FROM {kit.s}.deliveries WHERE kind = 'red_light' AND township_id = $1",
        township,
    )
    assert yellow == 4


async def test_a_late_report_tells_the_work_team_and_the_office(kit):
    township, team = kit.fresh("tw"), kit.fresh("team")
    leader = await kit.person(township, name="张组长", roles=["middle_cadre"])
    office = await kit.person(township, roles=["party_building_office"])
    await kit.publish(
        "rectification",
        "WorkTeamFormed",
        {
            "campaign_id": "c3",
            "team_id": team,
            "level": "district",
            "township_id": township,
            "village_ids": ["v1"],
            "departments": [],
            "members": [{"person_id": leader, "name": "张组长", "department_id": "d1"}],
            "patrons": [],
            "township_assistant": None,
            "warnings": [],
            "formed_on": "2026-10-01",
        },
        team,
    )
    await kit.until_ready(
        lambda: kit.pool.fetchval(f"SELECT true FROM {kit.s}.team_members WHERE team_id = $1", team)
    )
    event_id = await kit.publish(
        "rectification",
        "ReportLate",
        {
            "campaign_id": "c3",
            "subject_id": "v1",  # a village's report: the team working for it is told
            "township_id": township,
            "village_ids": ["v1"],
            "kind": "monthly_progress",
            "period": 3,
            "period_start": "2026-10-01",
            "period_end": "2026-10-31",
            "due_at": "2026-11-05T17:30:00+08:00",
        },
        team,
    )
    rows = await kit.settled("source_event_id = $1", event_id, count=2)
    assert {r["recipient_id"] for r in rows} == {leader, office}
    assert "第3期月度进展报告" in rows[0]["body"]


def team_formed(team: str, township: str, village: str, members: list[str]) -> dict:
    return {
        "campaign_id": "c3",
        "team_id": team,
        "level": "district",
        "township_id": township,
        "village_ids": [village],
        "departments": [],
        "members": [{"person_id": m, "name": "组员", "department_id": "d1"} for m in members],
        "patrons": [],
        "township_assistant": None,
        "warnings": [],
        "formed_on": "2026-09-01",
    }


def report(team: str, township: str, village: str, kind: str, period: int, **dates: str) -> dict:
    subject = team if kind == "weekly_on_duty" else village
    return {
        "campaign_id": "c3",
        "subject_id": subject,
        "township_id": township,
        "village_ids": [village],
        "kind": kind,
        "period": period,
        **dates,
    }


async def test_a_report_due_tells_the_team_at_once_and_the_working_day_before(kit):
    township, team, village = kit.fresh("tw"), kit.fresh("team"), kit.fresh("v")
    leader = await kit.person(township, name="张组长", roles=["middle_cadre"], phone="13812340011")
    member = await kit.person(township, name="李组员", roles=["middle_cadre"])
    office = await kit.person(township, roles=["party_building_office"])
    other_team = kit.fresh("team")
    stranger = await kit.person(township, roles=["middle_cadre"])
    await kit.publish(
        "rectification",
        "WorkTeamFormed",
        team_formed(team, township, village, [leader, member]),
        team,
    )
    await kit.publish(
        "rectification",
        "WorkTeamFormed",
        team_formed(other_team, township, kit.fresh("v"), [stranger]),
        other_team,
    )
    # teams are formed long before a report falls due; here they are keyed apart from it
    await kit.until_ready(
        lambda: kit.pool.fetchval(
            f"SELECT count(DISTINCT team_id) = 2 FROM {kit.s}.team_members WHERE team_id = ANY($1)",
            [team, other_team],
        )
    )

    def due(kind: str, period: int, end: str, due_at: str) -> dict:
        return report(
            team,
            township,
            village,
            kind,
            period,
            period_start="2026-10-01",
            period_end=end,
            due_at=due_at,
        )

    # the October summary: due 17:30 on Wednesday 4 November, recalled on Tuesday the 3rd
    monthly = await kit.publish(
        "rectification",
        "ReportDue",
        due("monthly_progress", 2, "2026-10-31", "2026-11-04T17:30:00+08:00"),
        village,
    )
    rows = await kit.settled("source_event_id = $1", monthly, count=3)
    assert {(r["recipient_id"], r["channel"]) for r in rows} == {
        (leader, "inbox"),
        (leader, "sms"),
        (member, "inbox"),
    }
    inbox = next(r for r in rows if r["channel"] == "inbox")
    assert (
        f"薄弱村{village}第2期月度进展报告（10月1日至10月31日）请于11月4日 17:30前报送"
        in inbox["body"]
    )
    # the fourth quarter's visit, said due in the day too
    quarterly = due("quarterly_visit", 2, "2026-12-31", "2027-01-08T17:30:00+08:00")
    quarterly_id = await kit.publish("rectification", "ReportDue", quarterly, village)
    await kit.settled("source_event_id = $1", quarterly_id, count=3)
    # the team's week ended at midnight: told at 09:00, not in the night
    shanghai = kit.start.tzinfo
    kit.clock.set(dt.datetime(2026, 10, 22, 0, 5, tzinfo=shanghai))
    weekly = due("weekly_on_duty", 8, "2026-10-21", "2026-10-22T17:30:00+08:00")
    weekly_id = await kit.publish("rectification", "ReportDue", weekly, team)

    async def reminders():
        rows = await kit.pool.fetch(
            f"SELECT cancel_key, step, due_at, status, recipients FROM {kit.s}.reminders "
            "WHERE kind = 'report_due' AND cancel_key LIKE $1 ORDER BY cancel_key",
            "report:c3:%",
        )
        mine = [r for r in rows if r["cancel_key"].split(":")[2] in (team, village)]
        return mine if len(mine) == 3 else None

    by_key = {r["cancel_key"]: r for r in await kit.until_ready(reminders)}
    month_key = f"report:c3:{village}:monthly_progress:2"
    quarter_key = f"report:c3:{village}:quarterly_visit:2"
    week_key = f"report:c3:{team}:weekly_on_duty:8"
    month, week = by_key[month_key], by_key[week_key]
    assert (month["step"], month["due_at"]) == (
        "eve",
        dt.datetime(2026, 11, 3, 9, 0, tzinfo=shanghai),
    )
    assert sorted(month["recipients"]) == sorted([leader, member])
    # the week's eve (21 October) has passed: only the morning notice is left
    assert (week["step"], week["due_at"]) == (
        "ended",
        dt.datetime(2026, 10, 22, 9, 0, tzinfo=shanghai),
    )
    # the month's report comes in, the quarter's is late: their reminders are cancelled
    submitted = report(team, township, village, "monthly_progress", 2)
    await kit.publish("rectification", "ReportSubmitted", {**submitted, "late": False}, village)
    late = due("quarterly_visit", 2, "2026-12-31", "2027-01-08T17:30:00+08:00")
    late_id = await kit.publish("rectification", "ReportLate", late, village)
    told = await kit.settled("source_event_id = $1", late_id, count=4)
    assert {r["recipient_id"] for r in told} == {leader, member, office}

    async def cancelled():
        rows = await kit.pool.fetch(
            f"SELECT cancel_key, status FROM {kit.s}.reminders WHERE cancel_key = ANY($1)",
            [month_key, quarter_key, week_key],
        )
        states = {r["cancel_key"]: r["status"] for r in rows}
        return states if states[month_key] == states[quarter_key] == "cancelled" else None

    assert (await kit.until_ready(cancelled))[week_key] == "scheduled"
    kit.clock.set(dt.datetime(2026, 10, 22, 9, 5, tzinfo=shanghai))
    fired = await kit.settled(
        f"kind = 'report_due' AND recipient_id = ANY($1) AND source_event_id IN "
        f"(SELECT source_event_id FROM {kit.s}.notices WHERE source_type = 'reminder')",
        [leader, member],
        count=3,
    )
    assert all("本工作组第8期周驻村考勤" in r["body"] for r in fired if r["channel"] == "inbox")
    assert await kit.rows("source_event_id = $1", weekly_id) == []  # nothing in the night
    assert not await kit.rows("kind = 'report_due' AND recipient_id = $1", stranger)
    assert not await kit.rows("kind = 'report_due' AND recipient_id = $1", office)


async def test_verification_asks_the_departments_and_the_county(kit):
    township = kit.fresh("tw")
    discipline = await kit.person(
        None,
        name="区纪委",
        roles=["discipline_commission"],
        email="jw@example.cn",
        county_id="bincheng",
    )
    petitions = await kit.person(
        None, name="区信访局", roles=["petitions_bureau"], county_id="bincheng"
    )
    # a department the directory gives no county may be another county's: not asked either
    await kit.person(None, name="某纪委", roles=["discipline_commission"])
    county = await kit.person(
        None, name="组织部", roles=["county_organisation_department"], county_id="bincheng"
    )
    await kit.person(township)  # a village secretary: not asked
    # another county's departments are not told of Bincheng's candidate villages
    await kit.person(None, name="邻县纪委", roles=["discipline_commission"], county_id="zhanhua")
    await kit.person(
        None, name="邻县组织部", roles=["county_organisation_department"], county_id="zhanhua"
    )
    event_id = await kit.publish(
        "rectification",
        "VerificationRequested",
        {
            "campaign_id": "c3",
            "county_id": "bincheng",
            "sources": ["discipline", "petitions"],
            "village_ids": ["v1", "v2", "v3"],
            "respond_by": "2026-10-30",
        },
        "campaign:c3",
    )
    rows = await kit.settled("source_event_id = $1", event_id, count=4)
    assert {(r["recipient_id"], r["channel"]) for r in rows} == {
        (discipline, "inbox"),
        (discipline, "email"),
        (petitions, "inbox"),
        (county, "inbox"),
    }
    body = (await kit.client.get("/inbox", headers=kit.me(petitions))).json()["items"][0]
    assert "共3个村居" in body["body"] and "10月30日前" in body["body"]
    notice = await kit.pool.fetchrow(
        f"SELECT subject_ref, township_id FROM {kit.s}.notices WHERE source_event_id = $1",
        event_id,
    )
    assert tuple(notice) == ("campaign:c3", None)


async def test_reports_that_come_before_their_team_are_told_once_it_is_formed(kit):
    """The team's stream and the reports' are keyed apart: after a backlog a report said due or
    late may be read before the team that owes it; it waits for the team, told under its own
    event, and a report that came in meanwhile is not told at all."""
    township, team, village = kit.fresh("tw"), kit.fresh("team"), kit.fresh("v")
    member = await kit.person(township, name="李组员", roles=["middle_cadre"])
    office = await kit.person(township, roles=["party_building_office"])
    dates = {"period_start": "2026-10-01", "period_end": "2026-10-31"}
    monthly = report(team, township, village, "monthly_progress", 2, **dates)
    due_id = await kit.publish(
        "rectification", "ReportDue", {**monthly, "due_at": "2026-11-04T17:30:00+08:00"}, village
    )
    weekly = report(team, township, village, "weekly_on_duty", 5, **dates)
    late_id = await kit.publish(
        "rectification", "ReportLate", {**weekly, "due_at": "2026-11-03T17:30:00+08:00"}, team
    )
    quarterly = report(team, township, village, "quarterly_visit", 1, **dates)
    await kit.publish(
        "rectification", "ReportDue", {**quarterly, "due_at": "2026-11-06T17:30:00+08:00"}, village
    )
    await kit.publish(
        "rectification",
        "ReportSubmitted",
        {**quarterly, "due_at": "2026-11-06T17:30:00+08:00", "submitted_by": member},
        village,
    )

    async def waiting() -> list[str] | None:
        rows = await kit.pool.fetch(
            f"SELECT event_id FROM {kit.s}.reports_awaiting_team WHERE subject_id = ANY($1)",
            [team, village],
        )
        return sorted(r["event_id"] for r in rows) if len(rows) == 2 else None

    assert await kit.until_ready(waiting) == sorted([due_id, late_id])  # the submitted one left
    assert await kit.rows("recipient_id = ANY($1)", [member, office]) == []

    await kit.publish(
        "rectification", "WorkTeamFormed", team_formed(team, township, village, [member]), team
    )
    due = await kit.settled("source_event_id = $1", due_id, count=1)
    assert [(r["recipient_id"], r["kind"]) for r in due] == [(member, "report_due")]
    late = await kit.settled("source_event_id = $1", late_id, count=2)
    assert {(r["recipient_id"], r["kind"]) for r in late} == {
        (member, "report_late"),
        (office, "report_late"),
    }
    assert await kit.rows("recipient_id = $1 AND kind = 'report_due'", member) == due
    assert await waiting() is None


async def test_a_round_s_notices_reach_only_its_own_team_of_the_same_id(kit):
    """The round builder names a team after its village (``team-{vid}``): a village carried
    over to the next round has a team of the same id there, with other members."""
    township, village = kit.fresh("tw"), kit.fresh("v")
    team = f"team-{village}"
    first, second = kit.fresh("round1"), kit.fresh("round2")
    old = await kit.person(township, name="上轮组员", roles=["work_team_member"])
    new = await kit.person(township, name="本轮组员", roles=["work_team_member"])
    for campaign, member in ((first, old), (second, new)):
        formed = {**team_formed(team, township, village, [member]), "campaign_id": campaign}
        await kit.publish("rectification", "WorkTeamFormed", formed, team)
    await kit.until_ready(
        lambda: kit.pool.fetchval(
            f"SELECT count(*) = 2 FROM {kit.s}.team_villages WHERE team_id = $1", team
        )
    )
    dates = {"period_start": "2026-10-01", "period_end": "2026-10-31"}
    ids = {}
    for kind, subject in (("weekly_on_duty", team), ("monthly_progress", village)):
        due = {
            **report(team, township, village, kind, 4, **dates),
            "campaign_id": second,
            "due_at": "2026-11-04T17:30:00+08:00",
        }
        ids[kind] = await kit.publish("rectification", "ReportDue", due, subject)
    for event_id in ids.values():
        rows = await kit.settled("source_event_id = $1", event_id, count=1)
        assert [r["recipient_id"] for r in rows] == [new]
    assert await kit.rows("recipient_id = $1", old) == []


async def test_team_members_already_kept_are_carried_into_their_campaigns(pool):
    """The migration keying members by campaign keeps each member in the campaigns whose
    villages the team worked for."""
    schema = f"nmig{uuid.uuid4().hex[:10]}"
    s = f'"{schema}"'
    async with pool.acquire() as conn:
        await migrate(conn, schema, MIGRATIONS[:3])
        await conn.execute(
            f"""INSERT INTO {s}.team_members VALUES ('team-v1', 'p1'), ('team-v1', 'p2'),
                    ('team-v2', 'p3'), ('team-old', 'p4')"""
        )
        await conn.execute(
            f"""INSERT INTO {s}.team_villages VALUES ('c1', 'v1', 'team-v1'),
                    ('c1', 'v2', 'team-v2'), ('c2', 'v2', 'team-v2')"""
        )
        assert "0005_team_members_by_campaign" in await migrate(conn, schema, MIGRATIONS)
        rows = await conn.fetch(
            f"SELECT campaign_id, team_id, person_id FROM {s}.team_members ORDER BY 1, 2, 3"
        )
    assert [tuple(r) for r in rows] == [
        ("c1", "team-v1", "p1"),
        ("c1", "team-v1", "p2"),
        ("c1", "team-v2", "p3"),
        ("c2", "team-v2", "p3"),
    ]


RACE_ROUNDS = 10


async def _blocked_or_done(kit, pid: int, task: asyncio.Task) -> None:
    """Until ``task`` has finished, or its session waits for a lock (the other replica's)."""

    async def settled() -> bool:
        waiting = await kit.pool.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
        )
        return task.done() or bool(waiting)

    await kit.until_ready(settled)


async def test_a_report_read_beside_its_team_on_another_replica_is_never_left_waiting(kit):
    """A report said due and the team that owes it, applied at once by two planners whose
    partitions differ: whichever starts first, the report is told to the team, nothing waits."""
    planners = [Planner(sorted(kit.rt.service.channels)) for _ in range(2)]
    names = table_names(kit.name, planners[0])
    dates = {"period_start": "2026-10-01", "period_end": "2026-10-31"}
    township = kit.fresh("tw")
    member = await kit.person(township, name="李组员", roles=["work_team_member"])

    def envelope(type_name: str, key: str) -> Envelope:
        return Envelope.new(
            type=f"cunzhi.rectification.{type_name}",
            source="/cunzhi/rectification",
            subject=key,
            time=kit.clock.now(),
        )

    reports = []
    for _ in range(RACE_ROUNDS):
        for report_first in (True, False):
            team, village = kit.fresh("team"), kit.fresh("v")
            due = {
                **report(team, township, village, "monthly_progress", 2, **dates),
                "due_at": "2026-11-04T17:30:00+08:00",
            }
            applied = [
                (readers.ReportDue.model_validate(due), envelope("ReportDue", village)),
                (
                    readers.WorkTeamFormed.model_validate(
                        team_formed(team, township, village, [member])
                    ),
                    envelope("WorkTeamFormed", team),
                ),
            ]
            if not report_first:
                applied.reverse()
            reports.append(applied[0 if report_first else 1][1].id)
            async with kit.pool.acquire() as first, kit.pool.acquire() as second:
                async with first.transaction():
                    await planners[0].apply(Tx(first, names, kit.rt.store), *applied[0])
                    other = second.transaction()
                    await other.start()
                    task = asyncio.create_task(
                        planners[1].apply(Tx(second, names, kit.rt.store), *applied[1])
                    )
                    await _blocked_or_done(kit, second.get_server_pid(), task)
                await task
                await other.commit()
    waiting = await kit.pool.fetchval(f"SELECT count(*) FROM {kit.s}.reports_awaiting_team")
    assert waiting == 0
    rows = await kit.settled("source_event_id = ANY($1::uuid[])", reports, count=len(reports))
    assert {r["recipient_id"] for r in rows} == {member}


async def test_a_task_due_earlier_moves_its_reminders_and_drops_the_one_already_past(kit):
    """The reminders take the new due date's words; the one whose moment has passed is dropped
    and kept as the record of it, not left to fire later with the old date."""
    township, village, task = kit.fresh("tw"), kit.fresh("v"), kit.fresh("T")
    secretary = await kit.person(township, village_id=village, phone="13812340002")
    await kit.publish(
        "rectification", "TaskAssigned", task_assigned(kit, township, task, village), task
    )

    async def reminders(status: str):
        rows = await kit.pool.fetch(
            f"""SELECT * FROM {kit.s}.reminders WHERE cancel_key = $1 AND status = $2
                ORDER BY step""",
            f"task:{task}",
            status,
        )
        return rows if len(rows) == 2 or (status == "dropped" and rows) else None

    await kit.until_ready(lambda: reminders("scheduled"))
    # brought forward to Friday 23 October: 3 working days before is Tuesday 20th, gone by
    await kit.publish(
        "rectification",
        "TaskRescheduled",
        {
            "task_id": task,
            "township_id": township,
            "previous_due_on": "2026-11-30",
            "due_on": "2026-10-23",
            "deadline": "2026-10-23T23:59:59+08:00",
            "reason": "提前验收",
            "rescheduled_by": "office",
        },
        task,
    )
    shanghai = kit.start.tzinfo
    (dropped,) = await kit.until_ready(lambda: reminders("dropped"))
    assert (dropped["step"], dropped["due_at"], dropped["context"]["due_on"]) == (
        "3",
        dt.datetime(2026, 10, 20, 9, 0, tzinfo=shanghai),
        "10月23日",
    )
    (moved,) = await kit.pool.fetch(
        f"SELECT * FROM {kit.s}.reminders WHERE cancel_key = $1 AND status = 'scheduled'",
        f"task:{task}",
    )
    assert (moved["step"], moved["due_at"], moved["context"]["due_on"]) == (
        "1",
        dt.datetime(2026, 10, 22, 9, 0, tzinfo=shanghai),
        "10月23日",
    )
    kit.clock.set(dt.datetime(2026, 10, 22, 9, 5, tzinfo=shanghai))
    rows = await kit.settled("kind = 'task_due' AND recipient_id = $1", secretary, count=2)
    assert all("10月23日" in r["body"] for r in rows)
