"""The campaign's village register (信息库) from CSV, every problem reported with its line.

Header: ``village_id,name,kind,township_id``, read as ``cunzhi_platform.csvfile`` reads every
upload (cells cleaned like any text field; unknown columns refused). ``kind`` is 村/village or
居/社区/community. A township must be one of the campaign's; a village id follows the ids'
pattern, may appear once in the file and must not be registered already. The whole file is
refused at the first reading if any line is bad, so an office fixes everything in one pass and
nothing half-imports.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from cunzhi_platform.csvfile import CsvProblem, CsvRefused, read_csv
from cunzhi_platform.edge import ID_PATTERN

from ..events.campaign import RegisteredVillage, VillageKind

REGISTER_COLUMNS = ("village_id", "name", "kind", "township_id")
_KINDS: dict[str, VillageKind] = {
    "村": "village",
    "village": "village",
    "居": "community",
    "社区": "community",
    "community": "community",
}
MAX_NAME = 100


def parse_register_csv(
    text: str, townships: Mapping[str, str], registered: Collection[str] = ()
) -> list[RegisteredVillage]:
    """Villages of the file, in file order; ``townships`` maps the campaign's ids to names.
    Raises ``CsvRefused`` naming every bad line and column."""
    problems: list[CsvProblem] = []
    seen: dict[str, int] = {}
    villages: list[RegisteredVillage] = []
    for row in read_csv(text, REGISTER_COLUMNS, REGISTER_COLUMNS, problems):
        village = _row(row.line, row.cells, townships, registered, seen, problems)
        if village is not None:
            villages.append(village)
    if problems:
        raise CsvRefused("register CSV", problems)
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
    if not re.fullmatch(ID_PATTERN, village_id):
        problems.append(
            CsvProblem(
                line,
                "village_id",
                f"{village_id!r} is not a village id: 1–64 of A–Z a–z 0–9 _ . - "
                "(starting with a letter or digit)",
            )
        )
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
