"""The campaign round (整顿攻坚): register, assessment, candidates and their verification.

Stream ``campaign:{campaign_id}``. It holds the decisions over the whole list, which must see
every village at once: ranking needs every assessment, tiering every verification. Its size is
bounded by the register (about one event per village plus one per candidate); what happens to
a target village over the two years lives in that village's own stream.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cunzhi_platform.aggregate import Aggregate, DomainError, InvalidTransition, NotFound
from cunzhi_platform.clock import working_days_after
from cunzhi_platform.events import Event

from ..events.campaign import (
    CampaignOpened,
    CampaignSettings,
    CandidateConfirmed,
    CandidateRemoved,
    CandidatesSelected,
    OpinionSource,
    RegisteredVillage,
    SendingUnitRecorded,
    Tier,
    Township,
    VerificationRequested,
    VillageAssessed,
    VillagesRegistered,
)
from .campaign_ids import campaign_id
from .ranking import Assessment, assess, candidates, rank

DEPARTMENT_SOURCES: tuple[OpinionSource, ...] = ("discipline", "political_legal", "petitions")
"""Seed 003: the candidates are verified with the opinions of 纪委, 政法委 and 信访."""
MAX_PERIOD_YEARS = 5
MAX_REGISTER = 20_000
"""Villages in one round's register: a county has hundreds, a prefecture-level city some
thousands (Liaocheng 6,238); the bound keeps ``CandidatesSelected`` a plausible Kafka message."""
REGISTER_PAGE = 250
"""Villages per ``VillagesRegistered``: a register is recorded in pages, each well under the
broker's 1 MiB message limit even at the longest ids and names (about 1.1 KB a village as
UTF-8 JSON: 280 KB a page); one event of a whole register passed it at about 7,600 villages and
was set aside, leaving the round's read models empty."""


def anniversary(day: dt.date, years: int) -> dt.date:
    """The same date ``years`` later; 29 February falls on 1 March in a common year (ours), so
    a round opened on 29 February ends on the last day of February."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return dt.date(day.year + years, 3, 1)


@dataclass(frozen=True)
class AssessmentInput:
    village_id: str
    symptoms: Mapping[str, int]
    last_year_score: float


@dataclass(frozen=True)
class CampaignHeader:
    """What never changes once a round is open: commands on villages and teams need only this."""

    campaign_id: str
    county_id: str
    start_date: dt.date
    end_date: dt.date
    townships: Mapping[str, str]
    settings: CampaignSettings


@dataclass(frozen=True)
class TierPlacement:
    village_id: str
    township_id: str
    rank: int
    tier: Tier


class Campaign(Aggregate):
    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.campaign_id = aggregate_id.partition(":")[2]
        self.county_id = ""
        self.name = ""
        self.round_number = 0
        self.start_date = dt.date.min
        self.end_date = dt.date.min
        self.townships: dict[str, str] = {}
        self.settings: CampaignSettings | None = None
        self.villages: dict[str, RegisteredVillage] = {}
        self.assessments: dict[str, Assessment] = {}
        self.ranking: tuple[str, ...] = ()
        self.ranks: dict[str, int] = {}
        self.candidate_ranks: dict[str, int] = {}
        self.confirmed: dict[str, str] = {}
        self.removed: dict[str, str] = {}
        self.sending_units: dict[str, SendingUnitRecorded] = {}

    # --- queries ---

    @property
    def selected(self) -> bool:
        return bool(self.ranking)

    def rules(self) -> CampaignSettings:
        if self.settings is None:
            raise NotFound(f"there is no campaign {self.campaign_id}")
        return self.settings

    def header(self) -> CampaignHeader:
        return CampaignHeader(
            self.campaign_id,
            self.county_id,
            self.start_date,
            self.end_date,
            dict(self.townships),
            self.rules(),
        )

    def village(self, village_id: str) -> RegisteredVillage:
        village = self.villages.get(village_id)
        if village is None:
            raise NotFound(
                f"village {village_id} is not in the register of {self.campaign_id}",
                field="village_id",
            )
        return village

    def undecided(self) -> list[str]:
        return [
            v for v in self.candidate_ranks if v not in self.confirmed and v not in self.removed
        ]

    def tiers(self) -> list[TierPlacement]:
        """The confirmed villages worst first: the worst N district-level, the rest town-level.

        Seed: 45 confirmed, the 25 with the most prominent problems district-level.
        """
        if not self.selected:
            raise InvalidTransition("candidates have not been selected yet")
        undecided = self.undecided()
        if undecided:
            raise InvalidTransition(
                f"{len(undecided)} candidate(s) are not verified yet (e.g. {undecided[0]}): "
                "confirm or remove each before tiering"
            )
        worst_first = sorted(self.confirmed, key=lambda v: -self.candidate_ranks[v])
        n = self.rules().district_level_count
        return [
            TierPlacement(
                v,
                self.villages[v].township_id,
                self.candidate_ranks[v],
                "district" if i < n else "town",
            )
            for i, v in enumerate(worst_first)
        ]

    # --- commands ---

    def open(
        self,
        *,
        county_id: str,
        name: str,
        round_number: int,
        start_date: dt.date,
        period_years: int,
        budget_per_year_yuan: int,
        townships: Sequence[Township],
        settings: CampaignSettings,
    ) -> list[Event]:
        if self.exists:
            raise InvalidTransition(f"campaign {self.campaign_id} is already open")
        if campaign_id(county_id, round_number) != self.campaign_id:
            raise DomainError("the campaign id is county id and round number", field="county_id")
        if not 1 <= period_years <= MAX_PERIOD_YEARS:
            raise DomainError(
                f"a round lasts 1–{MAX_PERIOD_YEARS} years (seed 003: two)", field="period_years"
            )
        if not townships:
            raise DomainError("name the townships of the county", field="townships")
        ids = [t.township_id for t in townships]
        if len(set(ids)) != len(ids):
            raise DomainError("a township is listed twice", field="townships")
        codes = [s.code for s in settings.symptoms]
        if len(set(codes)) != len(codes):
            raise DomainError("a symptom code is listed twice", field="settings.symptoms")
        if settings.light_yellow_gap > settings.light_red_gap:
            raise DomainError("the yellow gap must not exceed the red gap", field="settings")
        end = anniversary(start_date, period_years) - dt.timedelta(days=1)
        return [
            CampaignOpened(
                campaign_id=self.campaign_id,
                county_id=county_id,
                name=name,
                round_number=round_number,
                start_date=start_date,
                end_date=end,
                period_years=period_years,
                budget_per_year_yuan=budget_per_year_yuan,
                townships=tuple(townships),
                settings=settings,
            )
        ]

    def register(self, villages: Iterable[RegisteredVillage]) -> list[Event]:
        self.rules()
        self._before_selection("register villages")
        batch = tuple(villages)
        if len(self.villages) + len(batch) > MAX_REGISTER:
            raise DomainError(
                f"a round's register holds at most {MAX_REGISTER:,} villages; it has "
                f"{len(self.villages):,} and {len(batch):,} more were given",
                field="villages",
            )
        for v in batch:
            if v.village_id in self.villages:
                raise InvalidTransition(f"{v.village_id} is already registered", field="village_id")
            if v.township_id not in self.townships:
                raise DomainError(f"unknown township {v.township_id}", field="township_id")
        return [
            VillagesRegistered(
                campaign_id=self.campaign_id,
                county_id=self.county_id,
                villages=batch[first : first + REGISTER_PAGE],
            )
            for first in range(0, len(batch), REGISTER_PAGE)
        ]

    def assess(self, inputs: Iterable[AssessmentInput]) -> list[Event]:
        """Assess (or assess again, before ranking) villages of the register."""
        rules = self.rules()
        self._before_selection("assess villages")
        events: list[Event] = []
        for i in inputs:
            village = self.village(i.village_id)
            a = assess(i.village_id, village.township_id, i.symptoms, i.last_year_score, rules)
            events.append(
                VillageAssessed(
                    campaign_id=self.campaign_id,
                    village_id=a.village_id,
                    township_id=a.township_id,
                    symptoms={k: v for k, v in i.symptoms.items() if v},
                    symptom_score=a.symptom_score,
                    last_year_score=a.last_year_score,
                    score=a.score,
                )
            )
        return events

    def select_candidates(self, on: dt.date) -> list[Event]:
        """The ranking and its bottom share (倒排); the departments are asked to verify them."""
        rules = self.rules()
        self._before_selection("rank again")
        if not self.villages:
            raise InvalidTransition(
                f"campaign {self.campaign_id} has no villages: import the register first"
            )
        missing = [v for v in self.villages if v not in self.assessments]
        if missing:
            raise InvalidTransition(
                f"{len(missing)} registered village(s) are not assessed yet "
                f"(e.g. {', '.join(missing[:5])}): assess every village before ranking"
            )
        ranked = rank(self.assessments.values())
        chosen = candidates(ranked, rules.candidate_share, rules.candidate_rounding)
        return [
            CandidatesSelected(
                campaign_id=self.campaign_id,
                county_id=self.county_id,
                ranking=tuple(a.village_id for a in ranked),
                candidate_ids=tuple(a.village_id for a in chosen),
                share=rules.candidate_share,
                rounding=rules.candidate_rounding,
            ),
            VerificationRequested(
                campaign_id=self.campaign_id,
                county_id=self.county_id,
                sources=DEPARTMENT_SOURCES,
                village_ids=tuple(a.village_id for a in chosen),
                respond_by=working_days_after(on, rules.verification_respond_working_days),
            ),
        ]

    def confirm(self, village_id: str, reason: str) -> list[Event]:
        rank_ = self._undecided_candidate(village_id)
        return [
            CandidateConfirmed(
                campaign_id=self.campaign_id,
                village_id=village_id,
                township_id=self.villages[village_id].township_id,
                rank=rank_,
                reason=reason,
            )
        ]

    def remove(self, village_id: str, reason: str) -> list[Event]:
        if not reason.strip():
            raise DomainError("say why the candidate is removed", field="reason")
        rank_ = self._undecided_candidate(village_id)
        return [
            CandidateRemoved(
                campaign_id=self.campaign_id,
                village_id=village_id,
                township_id=self.villages[village_id].township_id,
                rank=rank_,
                reason=reason,
            )
        ]

    def record_sending_unit(
        self,
        unit_id: str,
        name: str,
        village_ids: Sequence[str],
        funds_yuan: int,
        projects: Sequence[str],
    ) -> list[Event]:
        self.rules()
        for v in village_ids:
            self.village(v)
        if funds_yuan < 0:
            raise DomainError("funds cannot be negative", field="funds_yuan")
        return [
            SendingUnitRecorded(
                campaign_id=self.campaign_id,
                unit_id=unit_id,
                name=name,
                village_ids=tuple(village_ids),
                funds_yuan=funds_yuan,
                projects=tuple(projects),
            )
        ]

    def _before_selection(self, what: str) -> None:
        if self.selected:
            raise InvalidTransition(f"candidates are already selected: too late to {what}")

    def _undecided_candidate(self, village_id: str) -> int:
        self.rules()
        if not self.selected:
            raise InvalidTransition("candidates have not been selected yet")
        if village_id not in self.candidate_ranks:
            raise InvalidTransition(
                f"village {village_id} is not a candidate of {self.campaign_id}",
                field="village_id",
            )
        if village_id in self.confirmed or village_id in self.removed:
            verdict = "confirmed" if village_id in self.confirmed else "removed"
            raise InvalidTransition(f"candidate {village_id} is already {verdict}")
        return self.candidate_ranks[village_id]

    # --- folds ---

    def _on_CampaignOpened(self, e: CampaignOpened) -> None:
        self.county_id, self.name, self.round_number = e.county_id, e.name, e.round_number
        self.start_date, self.end_date, self.settings = e.start_date, e.end_date, e.settings
        self.townships = {t.township_id: t.name for t in e.townships}

    def _on_VillagesRegistered(self, e: VillagesRegistered) -> None:
        self.villages.update((v.village_id, v) for v in e.villages)

    def _on_VillageAssessed(self, e: VillageAssessed) -> None:
        self.assessments[e.village_id] = Assessment(
            e.village_id,
            e.township_id,
            e.symptom_score,
            e.last_year_score,
            e.score,
            sum(1 for s in e.symptoms.values() if s > 0),
        )

    def _on_CandidatesSelected(self, e: CandidatesSelected) -> None:
        self.ranking = e.ranking
        self.ranks = {v: n for n, v in enumerate(e.ranking, start=1)}
        self.candidate_ranks = {v: self.ranks[v] for v in e.candidate_ids}

    def _on_VerificationRequested(self, e: VerificationRequested) -> None:
        pass  # a request to the departments: their opinions, not the request, decide

    def _on_CandidateConfirmed(self, e: CandidateConfirmed) -> None:
        self.confirmed[e.village_id] = e.reason

    def _on_CandidateRemoved(self, e: CandidateRemoved) -> None:
        self.removed[e.village_id] = e.reason

    def _on_SendingUnitRecorded(self, e: SendingUnitRecorded) -> None:
        self.sending_units[e.unit_id] = e
