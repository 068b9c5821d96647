"""Every service's AsyncAPI document passes the official AsyncAPI parser (``@asyncapi/parser``,
pinned in tests/asyncapi/package-lock.json, run under node): what a county's tooling reads.

node is required, not optional: without it this fails (.ci/run installs it). The parser's
packages are installed here with ``npm ci`` the first time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from cunzhi_cli.services import SERVICES

ROOT = Path(__file__).resolve().parents[1]
PARSER = ROOT / "tests" / "asyncapi"


def parse(*documents: Path) -> tuple[int, list[dict[str, object]]]:
    """The parser's exit status and its verdict on each document."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "the AsyncAPI parser needs node and npm (.ci/run installs them)"
    if not (PARSER / "node_modules" / "@asyncapi" / "parser").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=PARSER,
            check=True,
            timeout=600,
            capture_output=True,
        )
    done = subprocess.run(
        [node, "validate.mjs", *map(str, documents)],
        cwd=PARSER,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert not done.stderr.strip(), done.stderr
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.slow
def test_every_document_passes_the_official_parser() -> None:
    documents = [ROOT / "docs" / "events" / name / "asyncapi.json" for name in SERVICES]
    status, verdicts = parse(*documents)
    assert [v["path"] for v in verdicts] == [str(d) for d in documents]
    assert all(v["parsed"] and not v["errors"] for v in verdicts), verdicts
    assert status == 0


@pytest.mark.slow
def test_the_parser_checks_the_payload_schemas(tmp_path: Path) -> None:
    """A payload schema that is no JSON Schema is an error: the check above reads them."""
    source = ROOT / "docs" / "events" / "meetings"
    for path in source.glob("*.json"):
        shutil.copy(path, tmp_path / path.name)
    broken = tmp_path / "cunzhi.meetings.ForumHeld.v1.json"
    broken.write_text(json.dumps({"type": "forum", "required": "forum_id"}))
    status, (verdict,) = parse(tmp_path / "asyncapi.json")
    assert status == 1 and not verdict["parsed"]
    assert any("ForumHeld" in str(e["path"]) for e in verdict["errors"]), verdict
