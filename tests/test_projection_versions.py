"""A projection whose tables change steps up its version (``Consumer.version``).

Only a higher version rebuilds a projection's tables by itself at start-up; code of the same
version with another shape, or of an older one, pauses that consumer instead (the runbook's
upgrade section). So a change of tables without its version step would stop the upgraded
pods' consumer in production, where every test database here starts empty. The versions and
shapes of every rebuildable projection are kept in ``projection_versions.json``: a change of
shape at the same version fails here, and the file is updated with the step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cunzhi_platform.consumer import shape

from cunzhi_cli.services import RUNNABLE

KNOWN = Path(__file__).with_name("projection_versions.json")


def declared() -> dict[str, dict[str, Any]]:
    return {
        f"{name}.{consumer.name}": {"version": consumer.version, "shape": shape(consumer)}
        for name, build in sorted(RUNNABLE.items())
        for consumer in build().consumers
        if consumer.rebuildable
    }


def test_a_projection_whose_tables_change_steps_up_its_version() -> None:
    known = json.loads(KNOWN.read_text())
    now = declared()
    for projection, was in known.items():
        if projection not in now:
            continue  # gone: nothing is rebuilt
        if now[projection]["shape"] != was["shape"]:
            assert now[projection]["version"] > was["version"], (
                f"{projection}: its tables or indexes changed at version {was['version']}: "
                f"declare version = {was['version'] + 1} on the projection"
            )
        else:
            assert now[projection]["version"] >= was["version"], projection
    assert now == known, f"record the versions in {KNOWN}:\n{json.dumps(now, indent=2)}"
