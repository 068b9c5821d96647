"""Defaults of a campaign round, and which of them come from seed 003.

The seed (滨城区薄弱村集中整顿攻坚) names: four of the ten symptoms, the 15 % share, 25
district-level villages, four of the six target areas, the four report cadences, "eight common
indicators" (unnamed), differentiated indicators and bonus/penalty items. Everything else here
is **ours**, a setting a county may change when it opens a round — among them
``verification_respond_working_days`` (5), the time the departments asked for verification
opinions have to answer (its default lives on ``CampaignSettings``, so rounds opened before it
existed read it too).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from ..events.campaign import CampaignSettings, Indicator, ReportKind, Symptom

SEED_SYMPTOMS = (
    Symptom(code="hollow_economy", name="集体经济空壳村", from_seed=True),
    Symptom(code="disunited_committee", name="班子不团结", from_seed=True),
    Symptom(code="disorderly_openness", name="党务村务财务公开和民主管理混乱", from_seed=True),
    Symptom(code="weak_service", name="党组织服务能力弱", from_seed=True),
)
OUR_SYMPTOMS = (
    Symptom(code="weak_secretary", name="书记长期缺职或不胜任"),
    Symptom(code="petitions", name="信访矛盾突出"),
    Symptom(code="lax_organisation_life", name="组织生活不正常"),
    Symptom(code="clan_or_gang_influence", name="宗族宗教或黑恶势力干扰"),
    Symptom(code="poor_discipline", name="违纪违法问题突出"),
    Symptom(code="stalled_development", name="发展思路不清、工作停滞"),
)
SEED_AREAS = ("社会和谐稳定", "班子队伍建设", "经济社会发展", "民生实事落实")
OUR_AREAS = ("基层组织建设", "村务规范管理")
TASK_KINDS = (
    "配强班子",
    "发展党员和后备人选",
    "规范组织生活",
    "化解矛盾纠纷",
    "打击黑恶势力",
    "发展集体经济",
    "盘活集体资产",
    "实施民生项目",
    "改善基础设施",
    "规范三务公开",
    "健全村规民约",
)
"""The eleven task kinds (11项具体工作任务): the seed counts them, the names are ours."""

REPORT_DUE_WORKING_DAYS: dict[ReportKind, int] = {
    "weekly_on_duty": 1,
    "monthly_progress": 3,
    "quarterly_visit": 5,
    "half_year_review": 10,
}
"""Working days after a period ends until its report is due (ours)."""

COMMON_INDICATORS = (
    Indicator(code="on_duty", name="驻村在岗", max_points=10),
    Indicator(code="team_building", name="班子建设", max_points=10),
    Indicator(code="conflicts", name="矛盾化解", max_points=10),
    Indicator(code="collective_economy", name="集体经济增收", max_points=10),
    Indicator(code="livelihood", name="民生实事", max_points=10),
    Indicator(code="openness", name="三务公开", max_points=10),
    Indicator(code="ledger", name="整顿台账", max_points=10),
    Indicator(code="satisfaction", name="群众满意度", max_points=10),
)
"""八大共性指标: the seed counts eight; names and marks are ours."""

CommonIndicatorCode = Literal[
    "on_duty",
    "team_building",
    "conflicts",
    "collective_economy",
    "livelihood",
    "openness",
    "ledger",
    "satisfaction",
]
"""The eight common indicators' codes: fixed, so a team's sheet is scored on the same eight in
every round (a round may rename them and change their marks, ours)."""
COMMON_CODES: tuple[str, ...] = get_args(CommonIndicatorCode)


def common_indicators(overrides: dict[str, dict[str, Any]]) -> tuple[Indicator, ...]:
    """The eight, each with the name and marks a round gives it (by code) or its default."""
    return tuple(i.model_copy(update=overrides.get(i.code, {})) for i in COMMON_INDICATORS)


def default_settings(**overrides: Any) -> CampaignSettings:
    values: dict[str, Any] = {
        "symptoms": SEED_SYMPTOMS + OUR_SYMPTOMS,
        "symptom_weight": 0.7,
        "last_year_weight": 0.3,
        "candidate_share": 0.15,
        "candidate_rounding": "nearest",
        "district_level_count": 25,
        "areas": SEED_AREAS + OUR_AREAS,
        "task_kinds": TASK_KINDS,
        "report_due_working_days": REPORT_DUE_WORKING_DAYS,
        "light_yellow_gap": 0.10,
        "light_red_gap": 0.25,
        "light_yellow_overdue": 1,
        "light_red_overdue": 3,
        "light_yellow_late": 1,
        "light_red_late": 2,
        "common_indicators": COMMON_INDICATORS,
        "differentiated_max": 20,
        "bonus_max": 5,
        "penalty_max": 10,
        "pass_score": 70,
        "max_dissatisfaction": 0.5,
        "follow_up_after_days": 365,
    }
    values.update(overrides)
    return CampaignSettings.model_validate(values)
