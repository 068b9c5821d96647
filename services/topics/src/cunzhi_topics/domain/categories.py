"""Topic categories: the kinds of problem the reports show townships bringing to a forum.

Codes are stable snake_case strings stored in events. A township may use further codes of its
own: its party-building office adds them to ``TownshipCategories`` (stream
``categories:{township_id}``), and the application layer passes them as ``extra_categories`` to
the commands that set one.

A township's categories are only ever added, never changed or removed: a code stored in a
topic's events always keeps its meaning, and checking a topic against categories loaded a
moment ago can only refuse a code just added, never accept one that is gone.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection
from enum import StrEnum

from cunzhi_platform.aggregate import Aggregate, DomainError, InvalidTransition
from cunzhi_platform.events import Event

from ..events import CategoryAdded
from . import values

CODE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
"""A category code; also what the HTTP API accepts wherever a category is given."""


class Category(StrEnum):
    VILLAGE_GOVERNANCE = "village_governance"  # 村级治理
    MEMBER_RECRUITMENT = "member_recruitment"  # 发展党员 ("近亲发展" close-relative recruitment)
    MEMBER_MANAGEMENT = "member_management"  # 党员管理: 流动党员, 不合格党员
    FIVE_REFORMS = "five_reforms"  # 五项改革 / 集体产权制度改革
    WEAK_ORGANISATIONS = "weak_organisations"  # 软弱涣散党组织
    COMMITTEE_ELECTIONS = "committee_elections"  # 村两委换届
    RURAL_REVITALISATION = "rural_revitalisation"  # 乡村振兴
    LAND_ACQUISITION_DEMOLITION = "land_acquisition_demolition"  # 征地拆迁
    COLLECTIVE_ECONOMY = "collective_economy"  # 集体经济
    DISPUTES_PETITIONS = "disputes_petitions"  # 矛盾纠纷, 信访
    LIVELIHOOD_WORKS = "livelihood_works"  # 民生实事


_CODES = frozenset(c.value for c in Category)


def check_category(code: str, extra_categories: Collection[str] = ()) -> str:
    """``code`` if it is a known category or one of the township's own, else a 422."""
    if code in _CODES or code in extra_categories:
        return code
    known = ", ".join([*Category, *sorted(extra_categories)])
    raise DomainError(f"unknown category {code!r}; use one of: {known}", field="category")


def categories_stream_id(township_id: str) -> str:
    if ":" in township_id:
        raise ValueError(f"township id {township_id!r} must not contain ':'")
    return f"categories:{township_id}"


class TownshipCategories(Aggregate):
    """The categories a township uses besides the built-in ones, with their labels."""

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        prefix, separator, township_id = aggregate_id.partition(":")
        if prefix != "categories" or not separator:
            raise ValueError(
                f"{aggregate_id!r} is not a categories stream id; use categories_stream_id()"
            )
        self.township_id = township_id
        self.labels: dict[str, str] = {}

    @property
    def codes(self) -> frozenset[str]:
        return frozenset(self.labels)

    # -- commands -----------------------------------------------------------------------------

    def add(self, code: str, label: str, added_by: str, now: dt.datetime) -> list[Event]:
        """The party-building office adds a category; adding it again as it is changes nothing."""
        if not CODE_PATTERN.fullmatch(code):
            raise DomainError(
                f"the code {code!r} is not usable; give lower-case letters, digits and '_', "
                "starting with a letter (at most 64 characters), e.g. ecological_farming",
                field="code",
            )
        if code in _CODES:
            raise DomainError(
                f"{code} is a built-in category already; choose another code", field="code"
            )
        label = values.required_text(label, "label", "the label")
        existing = self.labels.get(code)
        if existing == label:
            return []  # a retry of an addition that went through
        if existing is not None:
            raise InvalidTransition(
                f"township {self.township_id} already has category {code}, labelled "
                f"{existing!r}; a category keeps its label, so choose another code",
                field="code",
            )
        return [
            CategoryAdded(
                township_id=self.township_id,
                code=code,
                label=label,
                added_by=added_by,
                added_at=now,
            )
        ]

    # -- fold ---------------------------------------------------------------------------------

    def _on_CategoryAdded(self, event: CategoryAdded) -> None:
        self.labels[event.code] = event.label
