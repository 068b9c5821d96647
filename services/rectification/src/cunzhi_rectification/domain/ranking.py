"""Assessment and ranking of every village of a campaign (综合评估排名, 倒排).

Seed 003: each village is scored on the ten symptoms of a weak or lax organisation combined
with last year's village assessment, all villages ranked best to worst, and "不少于15%" of them
taken from the bottom as candidates — 90 of 602. Ours: the severity scale, the formula, the
weights (settings), the tie-breaks and the rounding rule that gives 90 (15 % of 602 is 90.3;
"不少于" read literally, rounding up, gives 91 and is the setting ``up``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from cunzhi_platform.aggregate import DomainError

from ..events.campaign import CampaignSettings, Rounding

SEVERITY_MAX = 3
"""Severity of a symptom: 0 absent, 1 minor, 2 evident, 3 severe (ours)."""


@dataclass(frozen=True, slots=True)
class Assessment:
    village_id: str
    township_id: str
    symptom_score: float
    last_year_score: float
    score: float
    symptoms_present: int


def assess(
    village_id: str,
    township_id: str,
    symptoms: Mapping[str, int],
    last_year_score: float,
    settings: CampaignSettings,
) -> Assessment:
    """Score one village: 100 for no symptom, 0 for every symptom severe; higher is better.

    ``score = symptom_weight × symptom score + last_year_weight × last year's score``, the
    two weights normalised to sum to one. A symptom not given counts as absent.
    """
    weights = {s.code: s.weight for s in settings.symptoms}
    unknown = sorted(set(symptoms) - set(weights))
    if unknown:
        raise DomainError(
            f"{village_id}: unknown symptom(s) {', '.join(unknown)}; the campaign's are "
            f"{', '.join(weights)}",
            field="symptoms",
        )
    for code, severity in symptoms.items():
        if not 0 <= severity <= SEVERITY_MAX:
            raise DomainError(
                f"{village_id}: severity of {code} is {severity}; use 0 (absent) to "
                f"{SEVERITY_MAX} (severe)",
                field="symptoms",
            )
    if not 0 <= last_year_score <= 100:
        raise DomainError(
            f"{village_id}: last year's score {last_year_score} is not within 0–100",
            field="last_year_score",
        )
    burden = sum(weights[c] * s for c, s in symptoms.items())
    symptom_score = 100 * (1 - burden / (SEVERITY_MAX * sum(weights.values())))
    total = settings.symptom_weight + settings.last_year_weight
    if total <= 0:
        raise DomainError("the symptom and last-year weights cannot both be zero")
    score = (
        settings.symptom_weight * symptom_score + settings.last_year_weight * last_year_score
    ) / total
    return Assessment(
        village_id,
        township_id,
        round(symptom_score, 4),
        float(last_year_score),
        round(score, 4),
        sum(1 for s in symptoms.values() if s > 0),
    )


def rank(assessments: Iterable[Assessment]) -> list[Assessment]:
    """Best to worst. Equal scores: the better last year first, then fewer symptoms present,
    then the village id — so the same assessments always give the same order (ours)."""
    return sorted(
        assessments,
        key=lambda a: (-a.score, -a.last_year_score, a.symptoms_present, a.village_id),
    )


def candidate_count(villages: int, share: float, rounding: Rounding) -> int:
    """How many of ``villages`` are candidates: ``nearest`` (half up) or ``up`` (不少于).

    Exact arithmetic: 0.15 × 602 is 90.3 (nearest: 90, up: 91); 0.15 × 20 is exactly 3.
    """
    exact = Fraction(str(share)) * villages
    if rounding == "up":
        return -(-exact.numerator // exact.denominator)
    return int((exact + Fraction(1, 2)).__floor__())


def candidates(ranked: Sequence[Assessment], share: float, rounding: Rounding) -> list[Assessment]:
    """The bottom of the ranking, in ranking order (the worst last)."""
    if not ranked:
        raise DomainError("the campaign has no assessed villages to rank", field="villages")
    count = candidate_count(len(ranked), share, rounding)
    return list(ranked[len(ranked) - count :]) if count else []
