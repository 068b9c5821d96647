"""XLSX exports of the ranking and the ledger (整顿台账), the format county offices file.

openpyxl in write-only mode streams rows, so a province's ranking stays small in memory; the
HTTP adapter runs these in a worker thread, off the event loop.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cunzhi_platform.clock import SHANGHAI
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.worksheet._write_only import WriteOnlyWorksheet as Worksheet

RANKING_COLUMNS = (
    ("rank", "排名"),
    ("village_id", "村居编码"),
    ("name", "村居名称"),
    ("township_name", "乡镇(街道)"),
    ("score", "综合得分"),
    ("symptom_score", "软弱涣散表现得分"),
    ("last_year_score", "上年度考核得分"),
    ("candidate", "倒排候选"),
    ("verdict", "核实结果"),
    ("tier", "整顿层级"),
    ("light", "亮灯"),
)
LEDGER_SHEETS: Mapping[str, tuple[str, Sequence[tuple[str, str]]]] = {
    "villages": (
        "整顿村居",
        (
            ("village_id", "村居编码"),
            ("name", "村居名称"),
            ("township_name", "乡镇(街道)"),
            ("tier", "整顿层级"),
            ("rank", "排名"),
            ("light", "亮灯"),
            ("light_reason", "亮灯原因"),
            ("outcome", "结果"),
        ),
    ),
    "problems": (
        "问题清单",
        (
            ("village_id", "村居编码"),
            ("problem_id", "编号"),
            ("kind", "类型"),
            ("description", "问题"),
        ),
    ),
    "targets": (
        "目标任务",
        (
            ("village_id", "村居编码"),
            ("target_id", "编号"),
            ("title", "目标"),
            ("area", "领域"),
            ("task_kind", "任务"),
            ("weight", "权重"),
            ("due_date", "完成时限"),
            ("owner", "责任人"),
            ("progress", "进度%"),
            ("completed_on", "完成日期"),
        ),
    ),
    "entries": (
        "台账记录",
        (
            ("village_id", "村居编码"),
            ("at", "时间（北京时间）"),
            ("kind", "事项"),
            ("summary", "内容"),
        ),
    ),
}


FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet may take for the start of a formula (CSV/formula injection, OWASP)."""


def _cell(ws: Worksheet, value: Any) -> Any:
    if isinstance(value, dt.datetime):
        # Excel has no time zones: the wall-clock time in Asia/Shanghai, as the header says
        return value.astimezone(SHANGHAI).replace(tzinfo=None)
    if isinstance(value, bool):
        return "是" if value else ""
    if isinstance(value, str):
        # people's text stays text: never a formula, and marked so when edited in Excel
        cell = WriteOnlyCell(ws, value)
        cell.data_type = "s"
        cell.quotePrefix = value.startswith(FORMULA_LEADS)
        return cell
    return value


def _sheet(
    wb: Workbook, title: str, columns: Sequence[tuple[str, str]], rows: Iterable[Mapping[str, Any]]
) -> None:
    ws = wb.create_sheet(title)
    ws.append([label for _, label in columns])
    for row in rows:
        ws.append([_cell(ws, row.get(key)) for key, _ in columns])


def _bytes(wb: Workbook) -> bytes:
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def ranking_xlsx(rows: Iterable[Mapping[str, Any]]) -> bytes:
    wb = Workbook(write_only=True)
    _sheet(wb, "综合评估排名", RANKING_COLUMNS, rows)
    return _bytes(wb)


def ledger_xlsx(data: Mapping[str, Sequence[Mapping[str, Any]]]) -> bytes:
    wb = Workbook(write_only=True)
    for key, (title, columns) in LEDGER_SHEETS.items():
        _sheet(wb, title, columns, data.get(key, ()))
    return _bytes(wb)


REVIEW_COLUMNS = (
    ("township_id", "乡镇(街道)"),
    ("team_id", "工作组"),
    ("level", "层级"),
    ("villages", "村居"),
    ("latest_total", "最近考核得分"),
    ("average_total", "乡镇平均得分"),
)


def review_xlsx(townships: Iterable[Mapping[str, Any]]) -> bytes:
    """The teams' sheets per township, for the secretaries' annual review (述职评议考核)."""
    rows = [
        {
            **team,
            "villages": "、".join(team["villages"]),
            "township_id": t["township_id"],
            "average_total": t["average_total"],
        }
        for t in townships
        for team in t["teams"]
    ]
    wb = Workbook(write_only=True)
    _sheet(wb, "工作组考核", REVIEW_COLUMNS, rows)
    return _bytes(wb)
