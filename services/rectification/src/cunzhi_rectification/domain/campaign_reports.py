"""The reports a village or a team owes, period by period; shared by both aggregates."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from cunzhi_platform.aggregate import DomainError, InvalidTransition
from cunzhi_platform.clock import SHANGHAI

from ..events.campaign import ReportDue, ReportKind, ReportLate, ReportOwed, ReportSubmitted
from .campaign import CampaignHeader
from .campaign_cadence import Period, period


class ReportBook:
    def __init__(self) -> None:
        self.submitted: dict[tuple[ReportKind, int], ReportSubmitted] = {}
        self.late: set[tuple[ReportKind, int]] = set()
        self.reminded: set[tuple[ReportKind, int]] = set()

    @property
    def outstanding_late(self) -> int:
        """Reports marked late and still not in."""
        return len(self.late - self.submitted.keys())

    def period(self, h: CampaignHeader, kind: ReportKind, index: int) -> Period:
        due_days = h.settings.report_due_working_days[kind]
        p = period(kind, index, h.start_date, h.end_date, due_days)
        if p is None:
            raise DomainError(
                f"{kind} period {index} is outside the round {h.start_date}–{h.end_date}",
                field="period",
            )
        return p

    def submit(
        self,
        h: CampaignHeader,
        *,
        subject_id: str,
        township_id: str,
        village_ids: Sequence[str],
        kind: ReportKind,
        index: int,
        now: dt.datetime,
        by: str,
        summary: str,
        on_duty_days: Mapping[str, int] | None = None,
    ) -> ReportSubmitted:
        p = self.period(h, kind, index)
        if (kind, index) in self.submitted:
            raise InvalidTransition(f"the {kind} report for period {index} is already in")
        if p.start > now.date():
            raise InvalidTransition(
                f"{kind} period {index} starts on {p.start}: report on it once it has begun",
                field="period",
            )
        return ReportSubmitted(
            campaign_id=h.campaign_id,
            subject_id=subject_id,
            township_id=township_id,
            village_ids=tuple(village_ids),
            kind=kind,
            period=index,
            period_start=p.start,
            period_end=p.end,
            due_at=p.due_at,
            submitted_by=by,
            late=now > p.due_at,
            summary=summary,
            on_duty_days=dict(on_duty_days or {}),
        )

    def chase(
        self,
        h: CampaignHeader,
        *,
        subject_id: str,
        township_id: str,
        village_ids: Sequence[str],
        kind: ReportKind,
        index: int,
        now: dt.datetime,
        owed_from: dt.date,
    ) -> list[ReportOwed]:
        """What a report not in calls for at ``now``, each once: ``ReportDue`` when its period
        has ended (催报), ``ReportLate`` when its due time has passed.

        Nothing is owed for a period that ended before the village or team joined the round.
        A report first looked at past its due time is only late: a reminder would come too late.
        """
        p = self.period(h, kind, index)
        key = (kind, index)
        if p.end < owed_from or key in self.submitted or key in self.late:
            return []
        owed: type[ReportOwed]
        if now > p.due_at:
            owed = ReportLate
        elif now.astimezone(SHANGHAI).date() > p.end and key not in self.reminded:
            owed = ReportDue
        else:
            return []
        return [
            owed(
                campaign_id=h.campaign_id,
                subject_id=subject_id,
                township_id=township_id,
                village_ids=tuple(village_ids),
                kind=kind,
                period=index,
                period_start=p.start,
                period_end=p.end,
                due_at=p.due_at,
            )
        ]

    def on_submitted(self, e: ReportSubmitted) -> None:
        self.submitted[(e.kind, e.period)] = e

    def on_late(self, e: ReportLate) -> None:
        self.late.add((e.kind, e.period))

    def on_due(self, e: ReportDue) -> None:
        self.reminded.add((e.kind, e.period))
