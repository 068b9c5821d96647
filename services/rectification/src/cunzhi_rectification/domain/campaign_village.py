"""One target village of a round (整顿村), stream ``campaign-village:{campaign}:{village}``.

Its tier, the verification opinions on it, its problem list, its targets, its monthly,
quarterly and half-year reports, its light and its graduation: everything of the two years
that concerns this village alone, so a command folds only this village's events.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cunzhi_platform.aggregate import Aggregate, DomainError, InvalidTransition
from cunzhi_platform.events import Event

from ..events.campaign import (
    Light,
    LightChanged,
    OpinionSource,
    ProblemKind,
    ProblemListed,
    Recommendation,
    ReportDue,
    ReportKind,
    ReportLate,
    ReportSubmitted,
    TargetSet,
    Tier,
    TownLevelVillageRemoved,
    VerificationOpinionGiven,
    VillageCarriedOver,
    VillageGraduated,
    VillageTiered,
)
from .campaign import CampaignHeader
from .campaign_cadence import VILLAGE_KINDS
from .campaign_ids import parse_light_stream_id, parse_village_stream_id
from .campaign_progress import LightInputs, light_for
from .campaign_reports import ReportBook

MAX_WEIGHT = 100.0


@dataclass(frozen=True)
class ProblemDraft:
    problem_id: str
    kind: ProblemKind
    description: str


@dataclass(frozen=True)
class TargetDraft:
    target_id: str
    title: str
    area: str
    task_kind: str
    weight: float
    due_date: dt.date
    owner: str
    common: bool = False


class CampaignVillage(Aggregate):
    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.campaign_id, self.village_id = parse_village_stream_id(aggregate_id)
        self.township_id = ""
        self.name = ""
        self.tier: Tier | None = None
        self.placed_on = dt.date.min
        self.rank: int | None = None
        self.opinions: list[VerificationOpinionGiven] = []
        self.problems: dict[str, ProblemListed] = {}
        self.targets: dict[str, TargetSet] = {}
        self.reports = ReportBook()
        self.outcome: str | None = None

    @property
    def active(self) -> bool:
        """On the round's list and not yet evaluated."""
        return self.tier is not None and self.outcome is None

    def _require_active(self) -> None:
        if self.tier is None:
            raise InvalidTransition(
                f"village {self.village_id} is not a target of {self.campaign_id}",
                field="village_id",
            )
        if self.outcome is not None:
            raise InvalidTransition(f"village {self.village_id} was already evaluated")

    # --- verification and tier ---

    def give_opinion(
        self,
        *,
        township_id: str,
        source: OpinionSource,
        opinion: str,
        recommends: Recommendation,
        given_by: str,
    ) -> list[Event]:
        if self.tier is not None:
            raise InvalidTransition(f"village {self.village_id} is already tiered")
        return [
            VerificationOpinionGiven(
                campaign_id=self.campaign_id,
                village_id=self.village_id,
                township_id=township_id,
                source=source,
                opinion=opinion,
                recommends=recommends,
                given_by=given_by,
            )
        ]

    def place(
        self,
        *,
        name: str,
        township_id: str,
        tier: Tier,
        rank: int | None,
        reason: str,
        on: dt.date,
    ) -> list[Event]:
        if self.active:
            raise InvalidTransition(
                f"village {self.village_id} is already a {self.tier}-level target"
            )
        if self.outcome is not None:
            raise InvalidTransition(f"village {self.village_id} was already evaluated")
        if not reason.strip():
            raise DomainError("say why the village is on the list", field="reason")
        return [
            VillageTiered(
                campaign_id=self.campaign_id,
                village_id=self.village_id,
                village_name=name,
                township_id=township_id,
                tier=tier,
                rank=rank,
                reason=reason,
                placed_on=on,
            )
        ]

    def remove_from_town_list(self, reason: str) -> list[Event]:
        self._require_active()
        if self.tier != "town":
            raise InvalidTransition(
                f"village {self.village_id} is district-level: only town-level villages leave "
                "the list during the round"
            )
        if not reason.strip():
            raise DomainError("say why the village leaves the list", field="reason")
        return [
            TownLevelVillageRemoved(
                campaign_id=self.campaign_id,
                village_id=self.village_id,
                township_id=self.township_id,
                reason=reason,
            )
        ]

    # --- problems and targets ---

    def list_problems(self, drafts: Iterable[ProblemDraft]) -> list[Event]:
        self._require_active()
        events: list[Event] = []
        seen: set[str] = set()
        for d in drafts:
            if d.problem_id in self.problems or d.problem_id in seen:
                raise InvalidTransition(f"problem {d.problem_id} is already listed")
            if not d.description.strip():
                raise DomainError(
                    f"problem {d.problem_id} needs a description", field="description"
                )
            seen.add(d.problem_id)
            events.append(
                ProblemListed(
                    campaign_id=self.campaign_id,
                    village_id=self.village_id,
                    township_id=self.township_id,
                    problem_id=d.problem_id,
                    kind=d.kind,
                    description=d.description,
                )
            )
        return events

    def set_targets(self, h: CampaignHeader, drafts: Sequence[TargetDraft]) -> list[Event]:
        self._require_active()
        events: list[Event] = []
        seen: set[str] = set()
        for d in drafts:
            if d.target_id in self.targets or d.target_id in seen:
                raise InvalidTransition(f"target {d.target_id} is already set")
            seen.add(d.target_id)
            if d.area not in h.settings.areas:
                raise DomainError(
                    f"unknown area {d.area!r}; the campaign's are {', '.join(h.settings.areas)}",
                    field="area",
                )
            if d.task_kind not in h.settings.task_kinds:
                raise DomainError(f"unknown task kind {d.task_kind!r}", field="task_kind")
            if not 0 < d.weight <= MAX_WEIGHT:
                raise DomainError(
                    f"target {d.target_id}: weight {d.weight} is not within (0, {MAX_WEIGHT}]",
                    field="weight",
                )
            if not h.start_date <= d.due_date <= h.end_date:
                raise DomainError(
                    f"target {d.target_id}: due date {d.due_date} is outside the round "
                    f"{h.start_date}–{h.end_date}",
                    field="due_date",
                )
            events.append(
                TargetSet(
                    campaign_id=self.campaign_id,
                    village_id=self.village_id,
                    township_id=self.township_id,
                    target_id=d.target_id,
                    title=d.title,
                    area=d.area,
                    task_kind=d.task_kind,
                    common=d.common,
                    weight=d.weight,
                    due_date=d.due_date,
                    owner=d.owner,
                )
            )
        return events

    # --- reports ---

    def submit_report(
        self,
        h: CampaignHeader,
        *,
        kind: ReportKind,
        period: int,
        now: dt.datetime,
        by: str,
        summary: str,
    ) -> list[Event]:
        self._require_active()
        if kind not in VILLAGE_KINDS:
            raise DomainError(f"{kind} is a team's report, not a village's", field="kind")
        return [
            self.reports.submit(
                h,
                subject_id=self.village_id,
                township_id=self.township_id,
                village_ids=[self.village_id],
                kind=kind,
                index=period,
                now=now,
                by=by,
                summary=summary,
            )
        ]

    def chase_report(
        self, h: CampaignHeader, *, kind: ReportKind, period: int, now: dt.datetime
    ) -> list[Event]:
        """A report of the village due or late (``ReportBook.chase``)."""
        if not self.active:
            return []
        return list(
            self.reports.chase(
                h,
                subject_id=self.village_id,
                township_id=self.township_id,
                village_ids=[self.village_id],
                kind=kind,
                index=period,
                now=now,
                owed_from=self.placed_on,
            )
        )

    # --- light and graduation ---

    def evaluate(
        self, h: CampaignHeader, *, score: float, dissatisfaction: float, on: dt.date
    ) -> list[Event]:
        """Final evaluation (ours): score ≥ 70 and dissatisfaction ≤ 50 % → 摘帽 and 回头看."""
        self._require_active()
        if not 0 <= score <= 200:
            raise DomainError(f"score {score} is not within 0–200", field="score")
        if not 0 <= dissatisfaction <= 1:
            raise DomainError("dissatisfaction is a share within 0–1", field="dissatisfaction")
        rules = h.settings
        common = {
            "campaign_id": self.campaign_id,
            "village_id": self.village_id,
            "township_id": self.township_id,
            "score": score,
            "dissatisfaction": dissatisfaction,
        }
        if score >= rules.pass_score and dissatisfaction <= rules.max_dissatisfaction:
            review = on + dt.timedelta(days=rules.follow_up_after_days)
            return [VillageGraduated(**common, follow_up_review_on=review)]
        failed = []
        if score < rules.pass_score:
            failed.append(f"score {score:g} below {rules.pass_score:g}")
        if dissatisfaction > rules.max_dissatisfaction:
            failed.append(
                f"dissatisfaction {dissatisfaction:.0%} above {rules.max_dissatisfaction:.0%}"
            )
        return [VillageCarriedOver(**common, reason="; ".join(failed) + ": into the next round")]

    # --- folds ---

    def _on_VerificationOpinionGiven(self, e: VerificationOpinionGiven) -> None:
        self.township_id = e.township_id
        self.opinions.append(e)

    def _on_VillageTiered(self, e: VillageTiered) -> None:
        self.tier, self.rank, self.township_id = e.tier, e.rank, e.township_id
        self.name, self.placed_on = e.village_name, e.placed_on

    def _on_TownLevelVillageRemoved(self, e: TownLevelVillageRemoved) -> None:
        self.tier = None

    def _on_ProblemListed(self, e: ProblemListed) -> None:
        self.problems[e.problem_id] = e

    def _on_TargetSet(self, e: TargetSet) -> None:
        self.targets[e.target_id] = e

    def _on_ReportSubmitted(self, e: ReportSubmitted) -> None:
        self.reports.on_submitted(e)

    def _on_ReportLate(self, e: ReportLate) -> None:
        self.reports.on_late(e)

    def _on_ReportDue(self, e: ReportDue) -> None:
        self.reports.on_due(e)

    def _on_VillageGraduated(self, e: VillageGraduated) -> None:
        self.outcome = "graduated"

    def _on_VillageCarriedOver(self, e: VillageCarriedOver) -> None:
        self.outcome = "carried_over"


class VillageLight(Aggregate):
    """The village's light over time, stream ``campaign-light:{campaign}:{village}``.

    Apart from the village's stream on purpose: lights are recomputed automatically on every
    relevant event, and a recomputation must never make a person's command on the village
    fail with a version conflict.
    """

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.campaign_id, self.village_id = parse_light_stream_id(aggregate_id)
        self.light: Light | None = None

    def recompute(self, h: CampaignHeader, township_id: str, inputs: LightInputs) -> list[Event]:
        """``LightChanged`` when the rule gives another light than the current one."""
        light, reason = light_for(inputs, h.settings)
        if light == self.light:
            return []
        return [
            LightChanged(
                campaign_id=self.campaign_id,
                village_id=self.village_id,
                township_id=township_id,
                previous=self.light,
                light=light,
                reason=reason,
                progress=inputs.progress or 0.0,
                planned=inputs.planned,
                overdue_tasks=inputs.overdue_tasks,
                late_reports=inputs.late_reports,
            )
        ]

    def _on_LightChanged(self, e: LightChanged) -> None:
        self.light = e.light
