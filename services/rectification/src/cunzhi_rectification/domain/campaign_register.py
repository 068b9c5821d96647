"""The campaign's village register (信息库) from CSV, every problem reported with its line.

Header: ``village_id,name,kind,township_id``. ``kind`` is 村/village or 居/社区/community.
A township must be one of the campaign's; a village id may appear once in the file and must not
be registered already. The whole file is refused at the first reading if any line is bad, so an
office fixes everything in one pass and nothing half-imports.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from cunzhi_platform.aggregate import DomainError

from ..events.campaign import RegisteredVillage, VillageKind

REGISTER_COLUMNS = ("village_id", "name", "kind", "township_id")
_KINDS: dict[str, VillageKind] = {
    "村": "village",
    "village": "village",
    "居": "community",
    "社区": "community",
    "community": "community",
}
MAX_ID = 64
MAX_NAME = 100


@dataclass(frozen=True)
class CsvProblem:
    line: int
    column: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", column {self.column}" if self.column else "")
        return f"{where}: {self.message}"


class RegisterCsvError(DomainError):
    """Every problem of a register file at once."""

    def __init__(self, problems: Iterable[CsvProblem]) -> None:
        self.problems = tuple(problems)
        listed = "; ".join(str(p) for p in self.problems[:50])
        more = f" (and {len(self.problems) - 50} more)" if len(self.problems) > 50 else ""
        super().__init__(f"register CSV refused, nothing imported: {listed}{more}", field="file")


def parse_register_csv(
    text: str, townships: Mapping[str, str], registered: Collection[str] = ()
) -> list[RegisteredVillage]:
    """Villages of the file, in file order; ``townships`` maps the campaign's ids to names."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))  # Excel writes a BOM
    try:
        header = [h.strip().lower() for h in next(reader, [])]
    except csv.Error as exc:  # a bare CR in the header line, a NUL
        raise RegisterCsvError([CsvProblem(1, None, f"unreadable CSV: {exc}")]) from None
    missing = [c for c in REGISTER_COLUMNS if c not in header]
    if missing:
        raise RegisterCsvError(
            [
                CsvProblem(
                    1,
                    None,
                    f"the header lacks {', '.join(missing)}; expected {','.join(REGISTER_COLUMNS)}",
                )
            ]
        )
    problems: list[CsvProblem] = []
    seen: dict[str, int] = {}
    villages: list[RegisteredVillage] = []
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader, None)
        except csv.Error as exc:
            problems.append(CsvProblem(line, None, f"unreadable CSV: {exc}"))
            break
        if row is None:
            break
        if not any(cell.strip() for cell in row):
            continue
        cells = dict(zip(header, (c.strip() for c in row), strict=False))
        village = _row(line, cells, townships, registered, seen, problems)
        if village is not None:
            villages.append(village)
    if not problems and not villages:
        problems.append(CsvProblem(1, None, "the file has a header but no villages"))
    if problems:
        raise RegisterCsvError(problems)
    return villages


def _row(
    line: int,
    cells: Mapping[str, str],
    townships: Mapping[str, str],
    registered: Collection[str],
    seen: dict[str, int],
    problems: list[CsvProblem],
) -> RegisteredVillage | None:
    before = len(problems)
    village_id, name = cells.get("village_id", ""), cells.get("name", "")
    kind, township_id = cells.get("kind", ""), cells.get("township_id", "")
    if not village_id or len(village_id) > MAX_ID:
        problems.append(CsvProblem(line, "village_id", f"a village id of 1–{MAX_ID} characters"))
    elif village_id in seen:
        problems.append(
            CsvProblem(
                line,
                "village_id",
                f"duplicate village id {village_id} (first on line {seen[village_id]})",
            )
        )
    elif village_id in registered:
        problems.append(CsvProblem(line, "village_id", f"{village_id} is already registered"))
    else:
        seen[village_id] = line
    if not name or len(name) > MAX_NAME:
        problems.append(CsvProblem(line, "name", f"a name of 1–{MAX_NAME} characters"))
    if kind.lower() not in _KINDS:
        problems.append(CsvProblem(line, "kind", f"unknown kind {kind!r}; use 村 or 居"))
    if township_id not in townships:
        problems.append(
            CsvProblem(
                line,
                "township_id",
                f"unknown township {township_id!r}; the campaign's "
                f"are {', '.join(sorted(townships))}",
            )
        )
    if len(problems) > before:
        return None
    return RegisteredVillage(
        village_id=village_id,
        name=name,
        kind=_KINDS[kind.lower()],
        township_id=township_id,
        township_name=townships[township_id],
    )
