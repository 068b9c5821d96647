"""Guandi's paper ledger (历史台账): its 18 forums since April 2020, as seed 000 tells them.

"从2020年4月以来，先后举办了18期" — 18 forums, 18 problems solved, 5 experts lecturing, 8
excellent grassroots secretaries sharing experience, 3 field visits, and the four policy
documents the seed names. The problems, the field visit to 新乡县东大阳村, the experience of
郭小庄村 and of 获嘉县, the lectures on weak organisations, elections and rural revitalisation
are the seed's; the people's names, the other places and the order of the months are ours.
The demo enters them through meetings' API (``POST /townships/{id}/forums/history``), as a
township migrating its ledger would, and reads the record back from the read models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cunzhi_meetings.domain import default_forum_date

TOWNSHIP_OFFICE = "乡政府三楼会议室"


@dataclass(frozen=True)
class LedgerForum:
    year: int
    month: int
    topic_title: str
    category: str
    place: str = TOWNSHIP_OFFICE
    host_unit: str | None = None
    experts: tuple[tuple[str, str, str], ...] = ()
    """(name, affiliation, subject)"""
    sharers: tuple[tuple[str, str], ...] = ()
    """(name, affiliation): excellent secretaries, from Guandi's villages or elsewhere."""
    policies: tuple[tuple[str, str], ...] = ()
    """(title, document number)"""


LEDGER: tuple[LedgerForum, ...] = (
    LedgerForum(
        2020, 4, "部分村干部不会治理", "village_governance",
        place="新乡县东大阳村", host_unit="新乡县东大阳村党支部",
        sharers=(("王东明", "新乡县东大阳村党支部"),),
    ),
    LedgerForum(
        2020, 5, "发展党员“近亲繁殖”", "member_recruitment",
        sharers=(("郭建设", "关堤乡郭小庄村党支部"),),
        policies=(("《发展党员工作细则》", "关党〔2020〕7号"),),
    ),
    LedgerForum(
        2020, 6, "流动党员管理和不合格党员处置", "member_management",
        experts=(("孙志远", "新乡市委党校", "党员管理的政策和办法"),),
        policies=(("《关堤乡特殊党员管理办法》", "关党〔2020〕9号"),),
    ),
    LedgerForum(
        2020, 7, "五项制度改革的方法", "five_reforms",
        sharers=(("张国华", "获嘉县委农村工作办公室"),),
    ),
    LedgerForum(
        2020, 8, "软弱涣散党组织整顿", "weak_organisations",
        experts=(("王建军", "新乡市委党校", "整顿软弱涣散基层党组织"),),
    ),
    LedgerForum(
        2020, 9, "出嫁女等特殊群体的村民待遇", "village_governance",
        policies=(("《关堤乡关于出嫁女等特殊群体享受村民待遇的意见》", "关政〔2020〕15号"),),
    ),
    LedgerForum(
        2020, 10, "村“两委”换届准备", "committee_elections",
        place="新乡县七里营镇刘庄村", host_unit="新乡县七里营镇刘庄村党委",
        experts=(("陈立新", "新乡市委组织部", "村“两委”换届政策"),),
    ),
    LedgerForum(
        2020, 11, "村民选举委员会的组成和职责", "committee_elections",
        policies=(("《村民选举委员会工作职责》", "关党〔2020〕21号"),),
    ),
    LedgerForum(
        2020, 12, "征地拆迁工作方法", "land_acquisition_demolition",
        sharers=(("李国强", "关堤乡后关堤村党支部"), ("刘玉华", "关堤乡西刘庄村党支部")),
    ),
    LedgerForum(
        2021, 1, "换届后怎样当好村干部", "committee_elections",
        place="辉县市张村乡裴寨村", host_unit="辉县市张村乡裴寨村党支部",
        experts=(("赵红梅", "新乡市委党校", "怎样当好新时代村干部"),),
    ),
    LedgerForum(
        2021, 2, "项目进地难", "land_acquisition_demolition",
        sharers=(("张树林", "关堤乡东辛庄村党支部"),),
    ),
    LedgerForum(
        2021, 3, "城中村改造", "village_governance",
        sharers=(("孙德胜", "关堤乡南孙庄村党支部"),),
    ),
    LedgerForum(
        2021, 4, "集体产权制度改革", "five_reforms",
        sharers=(("赵志刚", "关堤乡北王庄村党支部"),),
    ),
    LedgerForum(2021, 5, "村集体经济增收", "collective_economy"),
    LedgerForum(
        2021, 6, "乡村振兴政策", "rural_revitalisation",
        experts=(("李明", "河南师范大学", "乡村振兴战略与政策"),),
    ),
    LedgerForum(2021, 7, "十九个村分类推进", "rural_revitalisation"),
    LedgerForum(2021, 8, "乡村振兴路线图和任务书", "rural_revitalisation"),
    LedgerForum(2021, 9, "矛盾纠纷就地化解", "disputes_petitions"),
)  # fmt: skip


def entry(number: int, forum: LedgerForum) -> dict[str, Any]:
    """The body of ``POST /townships/{id}/forums/history`` for ledger forum ``number``."""
    return {
        "number": number,
        "date": default_forum_date(forum.year, forum.month).isoformat(),
        "place": forum.place,
        "mode": "field_visit" if forum.host_unit else "at_township",
        "host_unit": forum.host_unit,
        "topic_title": forum.topic_title,
        "category": forum.category,
        "expert_lectures": [
            {"expert_name": n, "affiliation": a, "subject": s} for n, a, s in forum.experts
        ],
        "guest_speakers": [{"name": n, "affiliation": a} for n, a in forum.sharers],
        "policies": [{"title": t, "document_number": d} for t, d in forum.policies],
        "problem_solved": True,
    }
