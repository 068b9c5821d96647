"""Every rule of the weak-village campaign, on the pure domain (seed 003 and our defaults)."""

from __future__ import annotations

import datetime as dt

import pytest
from cunzhi_platform.aggregate import DomainError, InvalidTransition, NotFound
from cunzhi_platform.clock import SHANGHAI
from cunzhi_platform.csvfile import CsvRefused
from cunzhi_platform.events import Event
from cunzhi_rectification.domain.campaign import (
    MAX_REGISTER,
    REGISTER_PAGE,
    AssessmentInput,
    Campaign,
)
from cunzhi_rectification.domain.campaign_cadence import period, periods_due, periods_ended
from cunzhi_rectification.domain.campaign_ids import (
    campaign_stream_id,
    light_stream_id,
    team_stream_id,
    village_stream_id,
)
from cunzhi_rectification.domain.campaign_progress import LightInputs, light_for, planned, roll_up
from cunzhi_rectification.domain.campaign_register import parse_register_csv
from cunzhi_rectification.domain.campaign_settings import default_settings
from cunzhi_rectification.domain.campaign_team import (
    WorkTeam,
    propose_departments,
    score_sheet,
)
from cunzhi_rectification.domain.campaign_village import (
    CampaignVillage,
    ProblemDraft,
    TargetDraft,
    VillageLight,
)
from cunzhi_rectification.domain.ranking import assess, candidate_count, rank
from cunzhi_rectification.events.campaign import (
    CandidatesSelected,
    Department,
    LightChanged,
    Member,
    Patron,
    RegisteredVillage,
    ReportDue,
    ReportLate,
    ReportSubmitted,
    Township,
    VerificationRequested,
    VillageCarriedOver,
    VillageGraduated,
    VillagesRegistered,
    WorkTeamFormed,
)

START = dt.date(2026, 9, 1)
SELECTED_ON = dt.date(2026, 9, 25)
RULES = default_settings()
TOWNSHIPS = [Township(township_id=f"t{n}", name=f"镇{n}") for n in range(10)]


def run(agg: object, events: list[Event]) -> list[Event]:
    for e in events:
        agg.apply(e)  # type: ignore[attr-defined]
    return events


def opened(settings: object = RULES) -> Campaign:
    c = Campaign(campaign_stream_id("bincheng-R3"))
    run(
        c,
        c.open(
            county_id="bincheng",
            name="第三轮薄弱村集中整顿攻坚",
            round_number=3,
            start_date=START,
            period_years=2,
            budget_per_year_yuan=2_100_000,
            townships=TOWNSHIPS,
            settings=settings,  # type: ignore[arg-type]
        ),
    )
    return c


def villages(n: int) -> list[RegisteredVillage]:
    return [
        RegisteredVillage(
            village_id=f"v{i:03d}",
            name=f"村{i}",
            kind="village",
            township_id=f"t{i % 10}",
            township_name=f"镇{i % 10}",
        )
        for i in range(n)
    ]


def ranked(n: int, settings: object = RULES) -> Campaign:
    """``n`` villages, village i with last year's score i/n·100 and no symptoms: v000 worst."""
    c = opened(settings)
    run(c, c.register(villages(n)))
    run(c, c.assess([AssessmentInput(f"v{i:03d}", {}, 100 * i / n) for i in range(n)]))
    run(c, c.select_candidates(SELECTED_ON))
    return c


# --- round ---


def test_a_round_lasts_two_years_with_its_budget() -> None:
    c = opened()
    assert (c.start_date, c.end_date) == (START, dt.date(2028, 8, 31))
    assert c.header().settings.candidate_share == 0.15
    with pytest.raises(InvalidTransition):
        c.open(
            county_id="bincheng",
            name="x",
            round_number=3,
            start_date=START,
            period_years=2,
            budget_per_year_yuan=0,
            townships=TOWNSHIPS,
            settings=RULES,
        )


def test_default_catalogue_has_ten_symptoms_the_seeds_four_marked() -> None:
    assert len(RULES.symptoms) == 10
    assert [s.name for s in RULES.symptoms if s.from_seed] == [
        "集体经济空壳村",
        "班子不团结",
        "党务村务财务公开和民主管理混乱",
        "党组织服务能力弱",
    ]
    assert len(RULES.task_kinds) == 11 and len(RULES.areas) == 6
    assert len(RULES.common_indicators) == 8


# --- register CSV ---

CSV_HEAD = "village_id,name,kind,township_id\n"


def test_a_register_is_recorded_in_pages_each_well_under_a_kafka_message() -> None:
    c = opened()
    events = c.register(villages(MAX_REGISTER))
    assert len(events) == MAX_REGISTER // REGISTER_PAGE
    assert all(isinstance(e, VillagesRegistered) for e in events)
    run(c, events)
    assert len(c.villages) == MAX_REGISTER and list(c.villages)[-1] == f"v{MAX_REGISTER - 1:03d}"
    longest = RegisteredVillage(
        village_id="v" * 64,
        name="村" * 100,
        kind="community",
        township_id="t" * 64,
        township_name="街" * 200,
    )
    page = VillagesRegistered(
        campaign_id="c" * 64, county_id="c" * 64, villages=(longest,) * REGISTER_PAGE
    )
    assert len(page.model_dump_json().encode()) < 512 * 1024  # the broker takes 1 MiB


def test_a_register_recorded_in_one_event_still_folds() -> None:
    c = opened()
    run(
        c,
        [
            VillagesRegistered(
                campaign_id="bincheng-R3", county_id="bincheng", villages=tuple(villages(8000))
            )
        ],
    )
    assert len(c.villages) == 8000


def test_register_csv_reads_villages_and_communities() -> None:
    text = "\ufeff" + CSV_HEAD + "v1,西王,居,t1\nv2,肖家村,村,t2\n\nv3,东玉村,village,t3\n"
    got = parse_register_csv(text, {t.township_id: t.name for t in TOWNSHIPS})
    assert [(v.village_id, v.kind, v.township_name) for v in got] == [
        ("v1", "community", "镇1"),
        ("v2", "village", "镇2"),
        ("v3", "village", "镇3"),
    ]


def test_register_csv_reports_every_bad_line() -> None:
    text = CSV_HEAD + "v1,西王,居,t1\nv2,肖家,村,nowhere\nv1,重复,村,t1\nv4,x,镇,t1\nold,y,村,t1\n"
    with pytest.raises(CsvRefused) as err:
        parse_register_csv(text, {"t1": "市东街道"}, registered={"old"})
    problems = [(p.line, p.column) for p in err.value.problems]
    assert problems == [
        (3, "township_id"),
        (4, "village_id"),
        (5, "kind"),
        (6, "village_id"),
    ]
    assert "duplicate village id v1 (first on line 2)" in err.value.message
    assert err.value.field == "file"


def test_register_csv_needs_the_header() -> None:
    with pytest.raises(CsvRefused, match="column township_id: required column is missing"):
        parse_register_csv("village_id,name,kind\nv1,a,村\n", {"t1": "a"})


# --- assessment and ranking ---


def test_assessment_combines_symptoms_and_last_year() -> None:
    clean = assess("v", "t", {}, 100, RULES)
    assert (clean.symptom_score, clean.score) == (100, 100)
    worst = assess("v", "t", {s.code: 3 for s in RULES.symptoms}, 0, RULES)
    assert (worst.symptom_score, worst.score) == (0, 0)
    half = assess("v", "t", {"hollow_economy": 3, "petitions": 3}, 50, RULES)
    assert half.symptom_score == 80 and half.score == pytest.approx(0.7 * 80 + 0.3 * 50)
    only_last_year = assess("v", "t", {"hollow_economy": 3}, 40, default_settings(symptom_weight=0))
    assert only_last_year.score == 40


@pytest.mark.parametrize(
    ("symptoms", "last_year", "field"),
    [
        ({"nope": 1}, 50, "symptoms"),
        ({"hollow_economy": 4}, 50, "symptoms"),
        ({}, 101, "last_year_score"),
    ],
)
def test_assessment_refuses_what_is_out_of_range(symptoms, last_year, field) -> None:
    with pytest.raises(DomainError) as err:
        assess("v", "t", symptoms, last_year, RULES)
    assert err.value.field == field


def test_ties_are_broken_by_last_year_then_symptoms_then_id() -> None:
    a = assess("a", "t", {"petitions": 3}, 100, RULES)  # 0.7·90 + 30 = 93
    b = assess("b", "t", {"petitions": 1, "hollow_economy": 1, "weak_service": 1}, 100, RULES)
    c = assess("c", "t", {"petitions": 3}, 100, RULES)
    d = assess("d", "t", {}, 90, RULES)  # 70 + 27 = 97
    assert a.score == b.score == c.score
    assert [x.village_id for x in rank([c, b, a, d])] == ["d", "a", "c", "b"]
    assert [x.village_id for x in rank([b, a, c, d])] == ["d", "a", "c", "b"]


def test_candidate_share_rounds_to_nearest_by_default_and_up_as_the_seed_reads() -> None:
    assert candidate_count(602, 0.15, "nearest") == 90  # seed 003: 90 of 602
    assert candidate_count(602, 0.15, "up") == 91  # "不少于15%" read literally
    assert candidate_count(20, 0.15, "nearest") == candidate_count(20, 0.15, "up") == 3
    assert candidate_count(10, 0.15, "nearest") == 2  # 1.5 rounds half up
    assert candidate_count(3, 0.15, "nearest") == 0


def test_bincheng_ranks_602_villages_into_90_candidates_worst_last() -> None:
    c = ranked(602)
    selected = c.ranking
    assert len(selected) == 602 and len(c.candidate_ranks) == 90
    assert selected[0] == "v601" and selected[-1] == "v000"
    assert set(c.candidate_ranks) == {f"v{i:03d}" for i in range(90)}
    up = ranked(602, default_settings(candidate_rounding="up"))
    assert len(up.candidate_ranks) == 91


def test_ranking_refuses_an_empty_or_unassessed_register() -> None:
    c = opened()
    with pytest.raises(InvalidTransition, match="no villages"):
        c.select_candidates(SELECTED_ON)
    run(c, c.register(villages(3)))
    run(c, c.assess([AssessmentInput("v000", {}, 10)]))
    with pytest.raises(InvalidTransition, match="2 registered village"):
        c.select_candidates(SELECTED_ON)
    with pytest.raises(NotFound):
        c.assess([AssessmentInput("v999", {}, 10)])


def test_a_register_has_a_plausible_size() -> None:
    c = opened()
    run(c, c.register(villages(15_000)))
    with pytest.raises(DomainError, match="at most 20,000"):
        c.register(villages(20_001)[15_000:])


def test_no_register_or_assessment_after_selection() -> None:
    c = ranked(20)
    with pytest.raises(InvalidTransition):
        c.register(villages(25)[20:])
    with pytest.raises(InvalidTransition):
        c.select_candidates(SELECTED_ON)


# --- verification and tiering ---


def test_verification_confirms_or_removes_candidates_only() -> None:
    c = ranked(40)  # 6 candidates: v000..v005
    with pytest.raises(InvalidTransition, match="not a candidate"):
        c.confirm("v030", "核实")
    with pytest.raises(DomainError, match="why"):
        c.remove("v001", " ")
    run(c, c.confirm("v000", "纪委意见：问题属实"))
    with pytest.raises(InvalidTransition, match="already confirmed"):
        c.remove("v000", "x")
    with pytest.raises(InvalidTransition, match="not verified"):
        c.tiers()


def test_the_worst_confirmed_are_district_level_the_rest_town_level() -> None:
    c = ranked(40, default_settings(district_level_count=2))
    for v in ("v000", "v001", "v003", "v005"):
        run(c, c.confirm(v, "核实确认"))
    for v in ("v002", "v004"):
        run(c, c.remove(v, "实地查看后问题已解决"))
    tiers = [(p.village_id, p.tier, p.rank) for p in c.tiers()]
    assert tiers == [
        ("v000", "district", 40),
        ("v001", "district", 39),
        ("v003", "town", 37),
        ("v005", "town", 35),
    ]


def village(tier: str = "town") -> CampaignVillage:
    v = CampaignVillage(village_stream_id("bincheng-R3", "v001"))
    run(
        v, v.place(name="肖家村", township_id="t1", tier=tier, rank=39, reason="核实确认", on=START)
    )  # type: ignore[arg-type]
    return v


def test_the_town_list_stays_open_with_reasons() -> None:
    v = village("town")
    with pytest.raises(InvalidTransition, match="already a town-level"):
        v.place(
            name="肖家村", township_id="t1", tier="town", rank=None, reason="动态出现", on=START
        )
    with pytest.raises(DomainError, match="why"):
        v.remove_from_town_list("")
    run(v, v.remove_from_town_list("班子调整到位"))
    assert not v.active
    with pytest.raises(InvalidTransition, match="not a target"):
        v.list_problems([ProblemDraft("p1", "weak", "班子弱")])
    run(
        v,
        v.place(
            name="肖家村", township_id="t1", tier="town", rank=None, reason="动态出现", on=START
        ),
    )
    assert v.active
    with pytest.raises(InvalidTransition, match="district-level"):
        village("district").remove_from_town_list("x")


def test_opinions_are_attached_before_tiering() -> None:
    v = CampaignVillage(village_stream_id("bincheng-R3", "v002"))
    for source in ("discipline", "political_legal", "petitions", "earlier_rounds", "site_check"):
        run(
            v,
            v.give_opinion(
                township_id="t2", source=source, opinion="属实", recommends="confirm", given_by="u"
            ),
        )  # type: ignore[arg-type]
    assert len(v.opinions) == 5
    with pytest.raises(InvalidTransition):
        village().give_opinion(
            township_id="t1", source="petitions", opinion="x", recommends="none", given_by="u"
        )


# --- problems and targets ---


def test_problems_are_typed_and_listed_once() -> None:
    v = village("district")
    run(
        v,
        v.list_problems(
            [ProblemDraft("p1", "weak", "班子软弱"), ProblemDraft("p2", "poor", "空壳村")]
        ),
    )
    with pytest.raises(InvalidTransition):
        v.list_problems([ProblemDraft("p1", "disorderly", "again")])
    assert sorted(v.problems) == ["p1", "p2"]


def target(**changes: object) -> TargetDraft:
    values: dict[str, object] = {
        "target_id": "g1",
        "title": "配齐两委班子",
        "area": "班子队伍建设",
        "task_kind": "配强班子",
        "weight": 2,
        "due_date": dt.date(2027, 6, 30),
        "owner": "team-1",
    }
    values.update(changes)
    return TargetDraft(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"due_date": dt.date(2026, 8, 31)}, "due_date"),
        ({"due_date": dt.date(2028, 9, 1)}, "due_date"),
        ({"area": "体育"}, "area"),
        ({"task_kind": "x"}, "task_kind"),
        ({"weight": 0}, "weight"),
    ],
)
def test_targets_refuse_bad_input(changes, field) -> None:
    with pytest.raises(DomainError) as err:
        village().set_targets(opened().header(), [target(**changes)])
    assert err.value.field == field


# --- work teams ---

DEPARTMENTS = [
    Department(department_id="zzb", name="区委组织部", type="party_committee"),
    Department(department_id="zfw", name="区委政法委", type="political_legal"),
    Department(department_id="nyj", name="区农业农村局", type="economic"),
    Department(department_id="fgj", name="区发改局", type="economic"),
    Department(department_id="sl", name="区水利局", type="sector"),
]


def test_departments_are_matched_to_problem_kinds() -> None:
    p = propose_departments(["weak", "poor"], DEPARTMENTS)
    assert [d.department_id for d in p.departments] == ["zzb", "nyj", "fgj"]
    assert p.uncovered == ()
    p = propose_departments(["disorderly", "specialised"], DEPARTMENTS[:1])
    assert p.departments == () and p.uncovered == ("disorderly", "specialised")


def form(
    level: str, members: list[Member], patrons: list[Patron], assistant: str | None
) -> WorkTeamFormed:
    t = WorkTeam(team_stream_id("bincheng-R3", "team-1"))
    (e,) = t.form(
        level=level,
        township_id="t1",
        village_ids=["v001"],
        departments=DEPARTMENTS,  # type: ignore[arg-type]
        members=members,
        patrons=patrons,
        township_assistant=assistant,
        on=START,
    )
    assert isinstance(e, WorkTeamFormed)
    return e


def test_a_team_missing_an_age_band_is_formed_with_a_warning() -> None:
    lead = Patron(person_id="L1", name="区领导")
    full = [
        Member(person_id=f"m{b}", name=b, department_id="zzb", age_band=b)
        for b in ("old", "middle", "young")
    ]  # type: ignore[arg-type]
    assert form("district", full, [lead], "镇委员").warnings == ()
    partial = [full[0], Member(person_id="mx", name="无档", department_id="zzb")]
    warnings = form("district", partial, [lead], None).warnings
    assert any("no middle cadre" in w for w in warnings)
    assert any("no young cadre" in w for w in warnings)
    assert any("age band not given for 无档" in w for w in warnings)
    assert any("assist" in w for w in warnings)


def test_team_rules_refuse_what_cannot_work() -> None:
    m = Member(person_id="m1", name="a", department_id="zzb", age_band="young")
    with pytest.raises(DomainError, match="patron"):
        form("district", [m], [], None)
    with pytest.raises(DomainError, match="led by a leadership member"):
        form("town", [m], [], None)
    with pytest.raises(DomainError, match="not listed"):
        form(
            "district",
            [Member(person_id="m2", name="b", department_id="nope")],
            [Patron(person_id="L", name="x")],
            None,
        )


def test_the_assessment_sheet_adds_common_differentiated_and_bonus_minus_penalty() -> None:
    common = {i.code: 8.0 for i in RULES.common_indicators}
    assert score_sheet(RULES, common, 15, 3, 2) == 64 + 15 + 3 - 2
    with pytest.raises(DomainError, match="missing ledger"):
        score_sheet(RULES, {k: v for k, v in common.items() if k != "ledger"}, 0, 0, 0)
    with pytest.raises(DomainError) as err:
        score_sheet(RULES, common, 0, 6, 0)
    assert err.value.field == "bonus"
    with pytest.raises(DomainError):
        score_sheet(RULES, {**common, "on_duty": 11}, 0, 0, 0)


# --- roll-up and lights ---


def test_roll_up_normalises_weights_and_averages_unweighted_children() -> None:
    assert roll_up([(3, 100), (1, 0)]) == 75
    assert roll_up([(30, 100), (10, 0)]) == 75
    assert roll_up([(None, 100), (None, 50), (None, 0)]) == 50
    assert roll_up([(2, 100), (None, 0), (4, 0)]) == pytest.approx(100 * 2 / 9, abs=1e-4)
    assert roll_up([]) is None
    villages_ = [roll_up([(1, 100), (1, 50)]), roll_up([(5, 20)])]
    township = roll_up([(None, p) for p in villages_ if p is not None])
    assert township == pytest.approx((75 + 20) / 2)


def test_the_plan_is_proportional_to_time() -> None:
    end = dt.date(2028, 8, 31)
    assert planned(START, end, dt.date(2026, 8, 1)) == 0
    assert planned(START, end, end) == 100
    assert planned(START, end, dt.date(2027, 9, 1)) == pytest.approx(100 * 366 / 731, abs=1e-3)


@pytest.mark.parametrize(
    ("inputs", "light", "words"),
    [
        (LightInputs(50, 55, 0, 0), "green", "green: progress 50% against 55% planned"),
        (LightInputs(None, 1, 0, 0), "green", "(no targets yet)"),
        (LightInputs(40, 55, 0, 0), "yellow", "15 points behind"),
        (LightInputs(60, 50, 1, 0), "yellow", "1 overdue task"),
        (LightInputs(60, 50, 0, 1), "yellow", "1 late report"),
        (LightInputs(20, 50, 0, 0), "red", "30 points behind"),
        (LightInputs(60, 50, 3, 1), "red", "red: 3 overdue tasks; 1 late report"),
        (LightInputs(60, 50, 0, 2), "red", "2 late reports"),
    ],
)
def test_lights_follow_progress_overdue_tasks_and_late_reports(inputs, light, words) -> None:
    got, reason = light_for(inputs, RULES)
    assert got == light and words in reason


def test_light_changed_only_on_a_change_with_the_reason() -> None:
    v, h = VillageLight(light_stream_id("bincheng-R3", "v001")), opened().header()
    (first,) = run(v, v.recompute(h, "t1", LightInputs(0, 1, 0, 0)))
    assert isinstance(first, LightChanged) and (first.previous, first.light) == (None, "green")
    assert v.recompute(h, "t1", LightInputs(0, 5, 0, 0)) == []
    (second,) = run(v, v.recompute(h, "t1", LightInputs(0, 5, 3, 0)))
    assert isinstance(second, LightChanged)
    assert (second.previous, second.light, second.reason) == (
        "green",
        "red",
        "red: 3 overdue tasks",
    )


# --- cadence and late reports ---


def test_reports_fall_due_in_working_days() -> None:
    end = dt.date(2028, 8, 31)
    week = period("weekly_on_duty", 1, START, end, 1)
    assert week is not None and (week.start, week.end) == (START, dt.date(2026, 9, 7))
    assert week.due_at == dt.datetime(2026, 9, 8, 17, 30, tzinfo=SHANGHAI)
    month = period("monthly_progress", 1, START, end, 3)
    # National Day: 1–7 October off, Saturday 10 October a working day
    assert month is not None and month.due_at == dt.datetime(2026, 10, 10, 17, 30, tzinfo=SHANGHAI)
    quarter = period("quarterly_visit", 1, START, end, 5)
    assert quarter is not None and (quarter.start, quarter.end) == (START, dt.date(2026, 9, 30))
    q2 = period("quarterly_visit", 2, START, end, 5)
    assert q2 is not None and (q2.start, q2.end) == (dt.date(2026, 10, 1), dt.date(2026, 12, 31))
    assert period("half_year_review", 5, START, end, 10) is not None
    last = period("half_year_review", 5, START, end, 10)
    assert last is not None and last.end == end
    assert period("half_year_review", 6, START, end, 10) is None
    now = dt.datetime(2026, 10, 10, 17, 31, tzinfo=SHANGHAI)
    assert [p.index for p in periods_due("monthly_progress", START, end, 3, now)] == [1]


def test_a_missing_report_becomes_late_once_and_a_late_one_says_so() -> None:
    v, h = village(), opened().header()
    before = dt.datetime(2026, 10, 10, 17, 0, tzinfo=SHANGHAI)
    after = dt.datetime(2026, 10, 12, 9, 0, tzinfo=SHANGHAI)
    (late,) = run(v, v.chase_report(h, kind="monthly_progress", period=1, now=after))
    assert isinstance(late, ReportLate)
    assert v.chase_report(h, kind="monthly_progress", period=1, now=after) == []
    # first looked at once past due, it was never said to be due: a reminder comes too late
    assert v.reports.reminded == set()
    assert v.chase_report(h, kind="monthly_progress", period=1, now=before) == []
    assert v.reports.outstanding_late == 1
    (e,) = run(
        v, v.submit_report(h, kind="monthly_progress", period=1, now=after, by="m1", summary="进展")
    )
    assert isinstance(e, ReportSubmitted) and e.late
    assert v.reports.outstanding_late == 0
    with pytest.raises(InvalidTransition, match="already in"):
        v.submit_report(h, kind="monthly_progress", period=1, now=after, by="m1", summary="x")
    with pytest.raises(InvalidTransition, match="once it has begun"):
        v.submit_report(h, kind="monthly_progress", period=3, now=after, by="m1", summary="x")
    with pytest.raises(DomainError, match="team's report"):
        v.submit_report(h, kind="weekly_on_duty", period=1, now=after, by="m1", summary="x")


def test_an_owed_report_is_due_once_when_its_period_ends_then_late_once() -> None:
    v, h = village(), opened().header()
    last_evening = dt.datetime(2026, 9, 30, 23, 59, tzinfo=SHANGHAI)
    assert v.chase_report(h, kind="monthly_progress", period=1, now=last_evening) == []
    ended = dt.datetime(2026, 9, 30, 16, 30, tzinfo=dt.UTC)  # 00:30 on 1 October in Shanghai
    (due,) = run(v, v.chase_report(h, kind="monthly_progress", period=1, now=ended))
    assert isinstance(due, ReportDue)
    assert (due.subject_id, due.village_ids, due.period) == ("v001", ("v001",), 1)
    assert (due.period_start, due.period_end) == (START, dt.date(2026, 9, 30))
    assert due.due_at == dt.datetime(2026, 10, 10, 17, 30, tzinfo=SHANGHAI)
    assert v.chase_report(h, kind="monthly_progress", period=1, now=ended) == []
    past_due = dt.datetime(2026, 10, 10, 17, 31, tzinfo=SHANGHAI)
    (late,) = run(v, v.chase_report(h, kind="monthly_progress", period=1, now=past_due))
    assert isinstance(late, ReportLate)
    assert v.chase_report(h, kind="monthly_progress", period=1, now=past_due) == []
    end = dt.date(2028, 8, 31)
    assert [p.index for p in periods_ended("monthly_progress", START, end, 3, ended)] == [1]
    assert periods_due("monthly_progress", START, end, 3, ended) == []


def test_a_report_in_before_its_period_ends_is_never_due() -> None:
    v, h = village(), opened().header()
    on_time = dt.datetime(2026, 9, 29, 10, 0, tzinfo=SHANGHAI)
    run(
        v,
        v.submit_report(h, kind="monthly_progress", period=1, now=on_time, by="m1", summary="x"),
    )
    for now in (
        dt.datetime(2026, 10, 2, tzinfo=SHANGHAI),
        dt.datetime(2026, 10, 12, tzinfo=SHANGHAI),
    ):
        assert v.chase_report(h, kind="monthly_progress", period=1, now=now) == []


def test_weekly_on_duty_counts_members_only() -> None:
    t = WorkTeam(team_stream_id("bincheng-R3", "team-1"))
    m = Member(person_id="m1", name="a", department_id="zzb", age_band="young")
    run(
        t,
        t.form(
            level="district",
            township_id="t1",
            village_ids=["v001"],
            departments=DEPARTMENTS,
            members=[m],
            patrons=[Patron(person_id="L", name="x")],
            township_assistant="w",
            on=START,
        ),
    )
    h = opened().header()
    now = dt.datetime(2026, 9, 8, 10, tzinfo=SHANGHAI)
    with pytest.raises(DomainError, match="not members"):
        t.submit_on_duty(h, period=1, now=now, by="m1", on_duty_days={"zz": 5})
    (e,) = run(t, t.submit_on_duty(h, period=1, now=now, by="m1", on_duty_days={"m1": 5}))
    assert isinstance(e, ReportSubmitted) and not e.late and e.on_duty_days == {"m1": 5}
    assert t.is_member("L") and t.is_member("m1") and not t.is_member("x")


# --- graduation ---


@pytest.mark.parametrize(
    ("score", "dissatisfaction", "graduates"),
    [(70, 0.5, True), (95, 0.1, True), (69.9, 0.1, False), (90, 0.51, False)],
)
def test_graduation_needs_score_70_and_at_most_half_dissatisfied(
    score, dissatisfaction, graduates
) -> None:
    v, h = village(), opened().header()
    (e,) = run(
        v, v.evaluate(h, score=score, dissatisfaction=dissatisfaction, on=dt.date(2028, 8, 20))
    )
    if graduates:
        assert isinstance(e, VillageGraduated) and e.follow_up_review_on == dt.date(2029, 8, 20)
    else:
        assert isinstance(e, VillageCarriedOver) and "next round" in e.reason
    with pytest.raises(InvalidTransition, match="already evaluated"):
        v.evaluate(h, score=80, dissatisfaction=0, on=dt.date(2028, 8, 21))


def test_candidates_selected_event_carries_the_whole_ranking() -> None:
    c = opened()
    run(c, c.register(villages(7)))
    run(c, c.assess([AssessmentInput(f"v{i:03d}", {}, 50) for i in range(7)]))
    e, asked = c.select_candidates(SELECTED_ON)
    assert isinstance(e, CandidatesSelected)
    # all tie: ordered by id, the last one (v006) the single candidate (7·0.15 = 1.05 → 1)
    assert e.ranking == tuple(f"v{i:03d}" for i in range(7))
    assert e.candidate_ids == ("v006",)
    assert isinstance(asked, VerificationRequested)
    assert asked.sources == ("discipline", "political_legal", "petitions")
    assert asked.village_ids == ("v006",) and asked.county_id == "bincheng"
    # five working days after Friday 25 September (Mid-Autumn): 28, 29, 30 September, then
    # National Day (1–7 October off), 8 and 9 October
    assert asked.respond_by == dt.date(2026, 10, 9)
    quicker = opened(default_settings(verification_respond_working_days=1))
    run(quicker, quicker.register(villages(7)))
    run(quicker, quicker.assess([AssessmentInput(f"v{i:03d}", {}, 50) for i in range(7)]))
    assert quicker.select_candidates(SELECTED_ON)[1].respond_by == dt.date(2026, 9, 28)


def test_a_village_joining_late_owes_no_earlier_report() -> None:
    h = opened().header()
    v = CampaignVillage(village_stream_id("bincheng-R3", "v009"))
    joined = dt.date(2026, 11, 16)  # 动态出现 in November
    run(
        v,
        v.place(
            name="大王村", township_id="t9", tier="town", rank=None, reason="动态出现", on=joined
        ),
    )
    now = dt.datetime(2026, 12, 10, 9, 0, tzinfo=SHANGHAI)  # September–November all past due
    assert v.chase_report(h, kind="monthly_progress", period=1, now=now) == []  # September
    assert v.chase_report(h, kind="monthly_progress", period=2, now=now) == []  # October
    (late,) = v.chase_report(h, kind="monthly_progress", period=3, now=now)  # November: owed
    assert late.period_start == dt.date(2026, 11, 1)
    first_of_december = dt.datetime(2026, 12, 1, 9, 0, tzinfo=SHANGHAI)
    assert v.chase_report(h, kind="monthly_progress", period=2, now=first_of_december) == []
    (due,) = v.chase_report(h, kind="monthly_progress", period=3, now=first_of_december)
    assert isinstance(due, ReportDue) and due.period_end == dt.date(2026, 11, 30)


def test_a_team_formed_late_owes_weekly_reports_from_its_week_on() -> None:
    h = opened().header()
    t = WorkTeam(team_stream_id("bincheng-R3", "team-9"))
    m = Member(person_id="m1", name="a", department_id="zzb", age_band="young")
    run(
        t,
        t.form(
            level="town",
            township_id="t1",
            village_ids=["v001"],
            departments=DEPARTMENTS,
            members=[m.model_copy(update={"role": "leader"})],
            patrons=[],
            township_assistant="w",
            on=dt.date(2026, 9, 10),  # in the second week (8–14 September)
        ),
    )
    now = dt.datetime(2026, 9, 15, 8, 0, tzinfo=SHANGHAI)  # both weeks ended, neither due
    assert t.chase_report(h, period=1, now=now) == []
    (due,) = run(t, t.chase_report(h, period=2, now=now))
    assert isinstance(due, ReportDue) and due.subject_id == "team-9"
    assert due.kind == "weekly_on_duty" and due.village_ids == ("v001",)
    assert t.chase_report(h, period=2, now=now) == []
    assert WorkTeam(team_stream_id("bincheng-R3", "none")).chase_report(h, period=2, now=now) == []
