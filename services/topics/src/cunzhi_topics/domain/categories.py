"""Topic categories: the kinds of problem the reports show townships bringing to a forum.

Codes are stable snake_case strings stored in events. A township may use further codes of its
own; the application layer passes them as ``extra_categories`` to the commands that set one.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum

from cunzhi_platform.aggregate import DomainError


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
