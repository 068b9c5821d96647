"""Uploaded CSV files: every cell cleaned, every problem named with its line and column."""

from __future__ import annotations

import pytest
from cunzhi_platform.aggregate import DomainError
from cunzhi_platform.csvfile import CsvProblem, CsvRefused, read_csv, upload_text

COLUMNS, REQUIRED = ("id", "name", "note"), ("id", "name")


def read(text: str) -> tuple[list[tuple[int, dict[str, str]]], list[str]]:
    problems: list[CsvProblem] = []
    rows = read_csv(text, COLUMNS, REQUIRED, problems)
    return [(r.line, r.cells) for r in rows], [str(p) for p in problems]


def test_cells_are_text_like_any_field() -> None:
    rows, problems = read('\ufeffID, Name ,note\n a1 ,"Cafe\u0301\n王",\n\n a2,李\n')
    assert problems == []
    # NFC, stripped; a quoted line break stays and the next row is reported where it starts
    assert rows == [
        (2, {"id": "a1", "name": "Café\n王", "note": ""}),
        (5, {"id": "a2", "name": "李"}),
    ]


def test_a_control_character_or_nothing_visible_is_a_problem_of_its_cell() -> None:
    rows, problems = read("id,name\na1,王\x00书记\na2,\u200b\na3,李\x1b\n")
    assert rows == []
    assert [p.split(":")[0] for p in problems] == [
        "line 2, column name",
        "line 3, column name",
        "line 4, column name",
    ]
    assert "U+0000" in problems[0] and "U+001B" in problems[2]


def test_unreadable_csv_and_a_bad_header_are_problems_not_crashes() -> None:
    assert read("id,name\rnote\n")[1] == [
        "line 1: unreadable CSV: new-line character seen in unquoted field - "
        "do you need to open the file in universal-newline mode?"
    ]
    assert read("id,name\na1,b\rc,d\n")[1][0].startswith("line 2: unreadable CSV")
    assert read("id,nmae,id\n")[1] == [
        "line 1, column nmae: unknown column 'nmae'; the header is id,name,note",
        "line 1, column id: column given twice",
        "line 1, column name: required column is missing",
    ]
    assert read("")[1] == ["line 1: empty file; the first line must be the header id,name,note"]
    assert read("id,name\n\n")[1] == ["line 1: the file has a header but no rows"]
    assert read("id,name\na,b,c,d\n")[1] == ["line 2: 4 values but the header has 2 columns"]


def test_a_refusal_lists_problems_by_line() -> None:
    refused = CsvRefused("register CSV", [CsvProblem(3, "a", "x"), CsvProblem(2, None, "y")])
    assert refused.status == 422 and refused.field == "file"
    assert (
        refused.message == "register CSV refused, nothing imported: line 2: y; line 3, column a: x"
    )


def test_the_bytes_come_raw_or_as_a_form_file_in_utf8_or_gb18030() -> None:
    assert upload_text("text/csv", "id,名称\n".encode("gb18030")) == "id,名称\n"
    form = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
        + "id,名称\n".encode()
        + b"\r\n--b--\r\n"
    )
    assert upload_text("multipart/form-data; boundary=b", form) == "id,名称\n"
    with pytest.raises(DomainError, match="as 'file'"):
        upload_text("multipart/form-data; boundary=b", b"--b--\r\n")
    with pytest.raises(DomainError, match="neither UTF-8 nor GB18030"):
        upload_text("text/csv", b"\xff\xfe\x00\xd8")
