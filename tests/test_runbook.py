"""docs/operations.md names only tests that exist, and the alerts only sections that exist.

The runbook says for each procedure which tests run it; a renamed or deleted test would make
that a false promise, so every ``path.py`` and ``path.py::test_name`` (a bare ``test_name``
belongs to the file named before it) must resolve to a test function in that file.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]
RUNBOOK = ROOT / "docs" / "operations.md"


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        n.name
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test_")
    }


def named_tests(text: str) -> list[tuple[str, str | None]]:
    """(file, test or None) for every test the runbook names, in order."""
    named: list[tuple[str, str | None]] = []
    current: str | None = None
    for token in re.findall(r"`([^`]+)`", text):
        token = token.strip()
        file = re.fullmatch(r"((?:shared|services|tests)/[\w/]+\.py)(?:::\s*(test_\w+))?", token)
        if file:
            current = file.group(1)
            named.append((current, file.group(2)))
        elif re.fullmatch(r"test_\w+", token):
            assert current, f"{token} named before any file"
            named.append((current, token))
    return named


def test_every_test_the_runbook_names_exists() -> None:
    named = named_tests(RUNBOOK.read_text())
    assert len(named) >= 30
    for file, test in named:
        path = ROOT / file
        assert path.is_file(), f"{file} does not exist"
        if test:
            assert test in defined_tests(path), f"{file} has no {test}"


def test_a_renamed_test_is_caught() -> None:
    text = "`shared/tests/test_relay.py::test_relay_killed_mid_batch_loses_nothing`, `test_gone`"
    named = named_tests(text)
    assert named[1] == ("shared/tests/test_relay.py", "test_gone")
    assert "test_gone" not in defined_tests(ROOT / named[1][0])


def test_every_section_the_alerts_point_to_exists() -> None:
    headings = set(re.findall(r"^## (.+)$", RUNBOOK.read_text(), flags=re.MULTILINE))
    groups = yaml.safe_load((ROOT / "deploy" / "monitoring" / "alerts.yaml").read_text())
    pointed = {
        section
        for group in groups["groups"]
        for rule in group["rules"]
        for text in rule["annotations"].values()
        for section in re.findall(r'docs/operations\.md, "([^"]+)"', text)
    }
    assert pointed, "no alert points to the runbook"
    assert pointed <= headings, pointed - headings
