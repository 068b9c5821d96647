"""Weighted roll-up of progress and the traffic lights (红黄绿三色亮灯).

Roll-up (ours): target → village → township → campaign. A level's children are weighted by
their weights normalised to sum to one; children without a weight count with the mean of the
given weights, so a level where no child has a weight is the plain average.

Lights (ours; the seed names the mechanism, not the rule): the village's weighted progress is
compared with the time-proportional plan (the share of the round elapsed); overdue tasks and
late reports count too. Red when any red threshold is reached, yellow when any yellow one is,
green otherwise. The thresholds are campaign settings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from ..events.campaign import CampaignSettings, Light


def roll_up(children: Sequence[tuple[float | None, float]]) -> float | None:
    """Progress (0–100) of a level from ``(weight or None, progress)`` of its children."""
    if not children:
        return None
    given = [w for w, _ in children if w is not None and w > 0]
    fill = sum(given) / len(given) if given else 1.0
    weights = [w if w is not None and w > 0 else fill for w, _ in children]
    total = sum(weights)
    return round(sum(w * p for w, (_, p) in zip(weights, children, strict=True)) / total, 4)


def planned(start: dt.date, end: dt.date, today: dt.date) -> float:
    """The share of the round elapsed on ``today``, 0–100 (the time-proportional plan)."""
    days = (end - start).days + 1
    elapsed = (today - start).days + 1
    return round(100 * min(max(elapsed, 0), days) / days, 4)


@dataclass(frozen=True, slots=True)
class LightInputs:
    progress: float | None
    planned: float
    overdue_tasks: int
    late_reports: int


def light_for(i: LightInputs, rules: CampaignSettings) -> tuple[Light, str]:
    """The light and the reason in words."""
    progress = i.progress if i.progress is not None else 0.0
    gap = (i.planned - progress) / 100
    red: list[str] = []
    yellow: list[str] = []
    behind = f"progress {progress:.0f}% against {i.planned:.0f}% planned"
    if gap >= rules.light_red_gap:
        red.append(f"{behind} ({gap * 100:.0f} points behind)")
    elif gap >= rules.light_yellow_gap:
        yellow.append(f"{behind} ({gap * 100:.0f} points behind)")
    for count, what, y, r in (
        (i.overdue_tasks, "overdue task", rules.light_yellow_overdue, rules.light_red_overdue),
        (i.late_reports, "late report", rules.light_yellow_late, rules.light_red_late),
    ):
        words = f"{count} {what}{'s' if count != 1 else ''}"
        if count >= r:
            red.append(words)
        elif count >= y:
            yellow.append(words)
    if red:
        return "red", "red: " + "; ".join(red + yellow)
    if yellow:
        return "yellow", "yellow: " + "; ".join(yellow)
    targets = "" if i.progress is not None else " (no targets yet)"
    return "green", f"green: {behind}{targets}; no overdue tasks or late reports"
