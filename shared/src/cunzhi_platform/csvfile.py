"""CSV files that offices upload (a township's roster, a campaign's village register), read
the same way by every service.

- **The bytes** (``upload_text``): a raw ``text/csv`` body or a form upload's ``file`` part;
  UTF-8, else GB18030 (what Excel writes in Chinese locales). Read only once the caller is
  authorised (a route reads the body after its authorising dependency).
- **The rows** (``read_csv``): a header naming the columns (any order; case and spaces do not
  matter; an Excel BOM is dropped), then one row a line — a quoted cell may span lines, and a
  row's problems are reported at the line it starts on. Blank rows are skipped.
- **Every cell is free text** under ``edge.clean_text`` (NFC, stripped, no NUL or other
  control characters), as a JSON field would be: what is stored is what was meant.
- **Every problem at once**: unreadable CSV (a bare CR, as old Mac Excel writes), an unknown,
  missing or repeated column, a row longer than the header, a bad cell — all named with line
  and column in one ``CsvRefused`` (422, field ``file``), so an office fixes the file in one
  pass; nothing of a refused file is imported. These are rules of ours.
"""

from __future__ import annotations

import csv
import email.parser
import email.policy
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .aggregate import DomainError
from .edge import clean_text

MAX_LISTED = 50
"""Problems named in the refusal's words (all of them stay in ``CsvRefused.problems``)."""


UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "the CSV file: a raw text/csv body, or a form upload's part `file`; "
        "UTF-8 or GB18030, a header naming the columns, then a row a line (rows are checked "
        "by the route's rules: every problem of a refused file is answered at once, 422 with "
        "field `file`)",
        "content": {
            "text/csv": {"schema": {"type": "string", "minLength": 1}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary", "minLength": 1}},
                }
            },
        },
    }
}
"""The request body of an upload route, for ``openapi_extra=`` (see ``upload_text``)."""


@dataclass(frozen=True)
class CsvProblem:
    line: int
    column: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", column {self.column}" if self.column else "")
        return f"{where}: {self.message}"


class CsvRefused(DomainError):
    """Every problem of a file at once, by line; ``what`` names the file (``roster CSV``)."""

    def __init__(self, what: str, problems: Iterable[CsvProblem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: p.line))
        listed = "; ".join(str(p) for p in self.problems[:MAX_LISTED])
        more = len(self.problems) - MAX_LISTED
        tail = f" (and {more} more)" if more > 0 else ""
        super().__init__(f"{what} refused, nothing imported: {listed}{tail}", field="file")


@dataclass(frozen=True)
class CsvRow:
    line: int
    cells: dict[str, str]
    """Column → cleaned text; a column the row is too short for is absent."""


def upload_text(content_type: str, body: bytes) -> str:
    """The file's text from a raw body or a ``multipart/form-data`` upload (field ``file``).

    Multipart is parsed with the standard library (FastAPI's forms need python-multipart for
    this alone)."""
    if content_type.startswith("multipart/form-data"):
        head = f"Content-Type: {content_type}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        files = [
            part.get_payload(decode=True)
            for part in message.iter_parts()
            if part.get_param("name", header="content-disposition") == "file"
        ]
        if not files or not isinstance(files[0], bytes):
            raise DomainError("upload the CSV as 'file'", field="file")
        body = files[0]
    for encoding in ("utf-8", "gb18030"):
        try:
            return body.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise DomainError("the file is neither UTF-8 nor GB18030 text; save it as UTF-8", field="file")


def read_csv(
    text: str, columns: Sequence[str], required: Sequence[str], problems: list[CsvProblem]
) -> list[CsvRow]:
    """The rows of ``text`` under a header of ``columns`` (``required`` among them must be
    there; a row may leave out trailing optional cells). Problems are added to ``problems``;
    the rows returned are those without one."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))  # Excel writes a BOM
    try:
        header = [h.strip().lower() for h in next(reader, [])]
    except csv.Error as exc:
        problems.append(CsvProblem(1, None, f"unreadable CSV: {exc}"))
        return []
    found = _header_problems(header, columns, required)
    if found:
        problems += found
        return []
    rows: list[CsvRow] = []
    while True:
        line = reader.line_num + 1  # a quoted cell may span lines: report where the row starts
        try:
            row = next(reader, None)
        except csv.Error as exc:
            problems.append(CsvProblem(line, None, f"unreadable CSV: {exc}"))
            break
        if row is None:
            break
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header):
            problems.append(
                CsvProblem(
                    line, None, f"{len(row)} values but the header has {len(header)} columns"
                )
            )
            continue
        cells, before = {}, len(problems)
        for column, cell in zip(header, row, strict=False):
            try:
                cells[column] = clean_text(cell)
            except ValueError as exc:
                problems.append(CsvProblem(line, column, str(exc)))
        if len(problems) == before:
            rows.append(CsvRow(line, cells))
    if not problems and not rows:
        problems.append(CsvProblem(1, None, "the file has a header but no rows"))
    return rows


def _header_problems(
    header: list[str], columns: Sequence[str], required: Sequence[str]
) -> list[CsvProblem]:
    expected = ",".join(columns)
    if not any(header):
        return [CsvProblem(1, None, f"empty file; the first line must be the header {expected}")]
    problems = [
        CsvProblem(1, h or None, f"unknown column {h!r}; the header is {expected}")
        for h in header
        if h not in columns
    ]
    problems += [CsvProblem(1, h, "column given twice") for h in columns if header.count(h) > 1]
    problems += [
        CsvProblem(1, h, "required column is missing") for h in required if h not in header
    ]
    return problems
