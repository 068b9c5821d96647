"""The township roster and its CSV import."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest
from cunzhi_meetings.domain import (
    Roster,
    RosterMember,
    parse_roster_csv,
    roster_stream_id,
)
from cunzhi_meetings.events import RosterMemberAdded, RosterMemberRemoved, RosterMemberUpdated
from cunzhi_platform.aggregate import DomainError, NotFound
from cunzhi_platform.csvfile import CsvRefused

CSV = """\ufeffperson_id,name,role,village_id,phone
p-wang,王书记,领导班子,,138-0000-0001
p-zhao,赵主任,middle_cadre,,
s-01,张一,支部书记,v01,13800000003
"s-02","刘二",village_secretary,v02,
s-01,张一,支部书记,v01,13800000003
"""


def test_import_is_idempotent_and_updates_changed_members() -> None:
    roster = Roster(roster_stream_id("guandi"))
    members = parse_roster_csv(CSV)
    assert [m.person_id for m in members] == ["p-wang", "p-zhao", "s-01", "s-02"]
    assert members[0].role == "leadership" and members[0].phone == "138-0000-0001"
    assert members[1].village_id is None and members[1].phone is None
    added = roster.add_members(members)
    assert [type(e) for e in added] == [RosterMemberAdded] * 4
    for e in added:
        roster.apply(e)
    assert roster.add_members(members) == []

    moved = RosterMember("s-01", "张一", "village_secretary", village_id="v05")
    [e] = roster.add_members([moved, members[0]])
    assert isinstance(e, RosterMemberUpdated) and e.village_id == "v05"
    roster.apply(e)
    assert roster.member("s-01") == moved


def test_a_batch_naming_one_person_twice_differently_is_refused() -> None:
    roster = Roster(roster_stream_id("guandi"))
    with pytest.raises(DomainError, match="s-01 is given twice with different data"):
        roster.add_members(
            [
                RosterMember("s-01", "张一", "village_secretary", "v01"),
                RosterMember("s-01", "张一", "village_secretary", "v02"),
            ]
        )


def test_remove_member() -> None:
    roster = Roster(roster_stream_id("guandi"))
    roster.apply(roster.add_members([RosterMember("p-li", "李乡长", "leadership")])[0])
    with pytest.raises(DomainError, match="say why 李乡长 leaves"):
        roster.remove_member("p-li", "")
    [e] = roster.remove_member("p-li", "调任")
    assert isinstance(e, RosterMemberRemoved) and e.name == "李乡长"
    roster.apply(e)
    assert roster.members == ()
    with pytest.raises(NotFound, match="p-li is not on the roster of guandi"):
        roster.remove_member("p-li", "调任")


@pytest.mark.parametrize(
    ("member", "field", "message"),
    [
        (lambda: RosterMember(" ", "无名", "leadership"), "person_id", "person_id is required"),
        (lambda: RosterMember("p", "", "leadership"), "name", "needs a name"),
        (lambda: RosterMember("p", "甲", cast(Any, "boss")), "role", "unknown role 'boss'"),
        (
            lambda: RosterMember("s", "乙", "village_secretary"),
            "village_id",
            "乙 is a village secretary",
        ),
        (lambda: RosterMember("p", "丙", "leadership", phone="call me"), "phone", "not a phone"),
    ],
)
def test_member_refusals(member: Callable[[], object], field: str, message: str) -> None:
    with pytest.raises(DomainError, match=message) as exc:
        member()
    assert exc.value.field == field


def problems(text: str) -> list[str]:
    with pytest.raises(CsvRefused) as exc:
        parse_roster_csv(text)
    assert exc.value.status == 422
    assert exc.value.message.startswith("roster CSV refused, nothing imported: ")
    return [str(p) for p in exc.value.problems]


def test_csv_errors_name_every_line_and_column() -> None:
    text = (
        "person_id,name,role,village_id,phone\n"
        "p-wang,王书记,leadership\n"  # short row: the optional columns are empty
        "s-01,张一,village_secretary,,\n"
        "p-x,,boss\n"
        "\n"
        "s-02,刘二,secretary,v02\n"
        "p-wang,王书记,middle_cadre\n"
        "p-y,甲,leadership,,abc\n"
        "p-z,乙,leadership,,,extra\n"
    )
    assert problems(text) == [
        "line 3, column village_id: "
        "张一 is a village secretary: give the village_id of their village",
        "line 4, column name: required value is empty",
        "line 6, column role: "
        "unknown role 'secretary'; use one of leadership, middle_cadre, village_secretary",
        "line 7, column person_id: p-wang is already on line 2 with different data",
        "line 8, column phone: phone 'abc' of 甲 is not a phone number "
        "(digits, optionally a leading + and spaces or dashes)",
        "line 9: 6 values but the header has 5 columns",
    ]


def test_csv_header_errors() -> None:
    assert problems("") == [
        "line 1: empty file; the first line must be the header person_id,name,role,village_id,phone"
    ]
    assert problems("person_id,name,vilage_id,name\n") == [
        "line 1, column vilage_id: unknown column 'vilage_id'; "
        "the header is person_id,name,role,village_id,phone",
        "line 1, column name: column given twice",
        "line 1, column role: required column is missing",
    ]
    assert problems("person_id,name,role\n\n") == ["line 1: the file has a header but no rows"]


def test_csv_line_numbers_count_quoted_line_breaks() -> None:
    text = 'person_id,name,role\np-a,"王\n书记",leadership\np-b,,leadership\n'
    assert problems(text) == ["line 4, column name: required value is empty"]
