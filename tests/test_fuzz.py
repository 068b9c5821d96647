"""Property-based fuzzing of every runnable service's HTTP API against its own OpenAPI document.

Each service in ``FUZZED`` (a new service is fuzzed once its name is listed there; it must be
in ``cunzhi_cli.services.RUNNABLE`` and its routes built on ``cunzhi_platform.edge``) runs for
real — HTTP on a loopback port, its database schema, broker, relay and
consumers on the session's infrastructure — and ``schemathesis run`` (4.x) explores it: the
documented examples, coverage of the boundaries, positive and negative generated data, and the
stateful phase that follows the documented links (a forum from planning to close, a topic from
submission to selection, a campaign round from opening to its teams' targets). Every call
carries a token of one of several roles (county department, township office and committee,
village secretary, party member, and a service's own: the county's verifying departments and a
work team member for rectification); ids of the township, villages, campaign, team and task
those tokens name are given half of the time, so calls get past jurisdiction as well as being
refused by it. What those ids name is stored before the run (``SEEDS``).

The suite fails on any 5xx, any answer that breaks its documented schema, content type or
headers, any undocumented status, data outside the schema that is accepted, data the schema
admits that is refused (``positive_data_acceptance``: a rule of the server missing from the
document; ``DOMAIN_RULES`` in the hooks names the few a JSON Schema cannot state), and an
operation that answers without a token.

CI runs a bounded number of examples per operation with a fixed seed. A longer run, as a
command (any seed, more examples)::

    CUNZHI_FUZZ_EXAMPLES=300 CUNZHI_FUZZ_SEED=$RANDOM \\
        python3 -m uv run --frozen pytest -q tests/test_fuzz.py -p no:randomly
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cunzhi_platform.infra import free_port
from cunzhi_platform.runtime import create_app
from cunzhi_platform.settings import Settings
from cunzhi_platform.testing import token

from cunzhi_cli.services import RUNNABLE

pytestmark = pytest.mark.slow

FUZZED = ["topics", "meetings", "notifications", "rectification"]
"""A service is listed once its routes use ``cunzhi_platform.edge`` (its bounded types and
``edge.router()``) and its roles are in ``tokens``."""
NOT_FUZZED = {"notifications": ["/inbox/stream"]}
"""Operations that never end by design (a Server-Sent Events stream): each call would only wait
for the request time-out. Their own tests cover them."""
EXAMPLES = int(os.environ.get("CUNZHI_FUZZ_EXAMPLES", "12"))
SEED = int(os.environ.get("CUNZHI_FUZZ_SEED", "20260925"))
TOWNSHIP, VILLAGES = "guandi", ["v01", "v02"]
COUNTY, CAMPAIGN, TEAM, TARGET, MEMBER = "fuzzc", "fuzzc-R1", "team-1", "target-1", "fuzz-member"
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "positive_data_acceptance",
        "missing_required_header",
        "ignored_auth",
    ]
)
CONFIG = f"""
[dictionaries.townships]
values = ["{TOWNSHIP}"]

[dictionaries.villages]
values = {json.dumps(VILLAGES)}

[parameters]
"path.township_id" = {{ dictionary = "townships", probability = 0.5 }}
"path.village_id" = {{ dictionary = "villages", probability = 0.5 }}
"path.campaign_id" = {{ dictionary = "campaigns", probability = 0.5 }}
"path.team_id" = {{ dictionary = "teams", probability = 0.5 }}
"path.target_id" = {{ dictionary = "targets", probability = 0.5 }}
"path.task_id" = {{ dictionary = "targets", probability = 0.5 }}

[dictionaries.campaigns]
values = ["{CAMPAIGN}"]

[dictionaries.teams]
values = ["{TEAM}"]

[dictionaries.targets]
values = ["{TARGET}"]
"""


def tokens(settings: Settings, name: str) -> list[str]:
    where = {"township_ids": [TOWNSHIP], "village_ids": VILLAGES}
    roles = [
        {"roles": ["county_organisation_department"], "county_id": COUNTY},
        {"roles": ["party_building_office", "township_committee"], **where},
        # A village's people name their one village (a token naming several must say which
        # village it acts for in the body: a rule about the token, not the document's).
        {
            "roles": ["village_secretary", "station_head"],
            "station_ids": ["s01"],
            **where,
            "village_ids": VILLAGES[:1],
        },
        {"roles": ["party_member"], **where, "village_ids": VILLAGES[:1]},
        {"roles": ["notifications_admin"]},
        *ROLES_OF.get(name, []),
    ]
    return [
        token(settings, **{"sub": f"fuzz-{i}", **claims})["Authorization"].removeprefix("Bearer ")
        for i, claims in enumerate(roles)
    ]


ROLES_OF: dict[str, list[dict[str, Any]]] = {
    "rectification": [
        {"roles": ["discipline_commission"], "county_id": COUNTY},
        {"roles": ["political_legal_committee", "petitions_bureau"], "county_id": COUNTY},
        {"roles": ["work_team_member"], "sub": MEMBER},
    ]
}
"""Roles only one service knows, beside the shared ones above."""


async def seed_rectification(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    """A round of the county the tokens name, far enough for every route to have something to
    act on: villages of the tokens' township registered, ranked, tiered, one with a team (the
    member's token) and a target (a task)."""
    villages = [*VILLAGES, *(f"v{i:02d}" for i in range(3, 8))]
    steps: list[tuple[str, Any]] = [
        (
            "/campaigns",
            {
                "county_id": COUNTY,
                "round_number": 1,
                "name": "薄弱村集中整顿",
                "start_date": dt.date.today().isoformat(),
                "budget_per_year_yuan": 2_100_000,
                "townships": [{"township_id": TOWNSHIP, "name": "关帝乡"}],
                "settings": {"district_level_count": 1},
            },
        ),
        (
            f"/campaigns/{CAMPAIGN}/villages",
            [{"village_id": v, "name": f"{v}村", "township_id": TOWNSHIP} for v in villages],
        ),
        (
            f"/campaigns/{CAMPAIGN}/assessments",
            [
                {"village_id": v, "symptoms": {}, "last_year_score": 40 + 5 * i}
                for i, v in enumerate(villages)
            ],
        ),
        (f"/campaigns/{CAMPAIGN}/ranking", None),
        (f"/campaigns/{CAMPAIGN}/candidates/{VILLAGES[0]}/confirm", {"reason": "核实确认"}),
        (f"/campaigns/{CAMPAIGN}/tiers", None),
        (
            f"/campaigns/{CAMPAIGN}/teams",
            {
                "team_id": TEAM,
                "level": "district",
                "village_ids": [VILLAGES[0]],
                "departments": [
                    {"department_id": "zzb", "name": "组织部", "type": "party_committee"}
                ],
                "members": [{"person_id": MEMBER, "name": "张干部", "department_id": "zzb"}],
                "patrons": [{"person_id": "leader-1", "name": "区领导甲"}],
            },
        ),
        (
            f"/campaigns/{CAMPAIGN}/villages/{VILLAGES[0]}/targets",
            [
                {
                    "target_id": TARGET,
                    "title": "配齐两委班子",
                    "area": "班子队伍建设",
                    "task_kind": "配强班子",
                    "due_date": (dt.date.today() + dt.timedelta(days=90)).isoformat(),
                    "owner": MEMBER,
                }
            ],
        ),
    ]
    for path, body in steps:
        r = await client.post(path, json=body, headers=headers)
        assert r.status_code < 300, (path, r.text)


SEEDS: dict[str, Callable[[httpx.AsyncClient, dict[str, str]], Awaitable[None]]] = {
    "rectification": seed_rectification
}
"""What a service needs stored before the fuzz, so ids in ``CONFIG`` name something (called with
a client of the running service and the county organisation department's headers)."""


@pytest.mark.timeout(900)  # some 45 s a service alone; far longer on a machine shared
@pytest.mark.parametrize("name", FUZZED)
async def test_the_api_keeps_its_published_contract(name, settings, tmp_path: Path):
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(RUNNABLE[name](), settings),
            host="127.0.0.1",
            port=free_port(),
            log_config=None,
            lifespan="on",
        )
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not serving.done(), "the service did not start"
            await asyncio.sleep(0.1)
        base = f"http://127.0.0.1:{server.config.port}"
        if name in SEEDS:
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                await SEEDS[name](client, {"Authorization": f"Bearer {tokens(settings, name)[0]}"})
        (tmp_path / "schemathesis.toml").write_text(CONFIG)
        run = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{base}/openapi.json",
            f"--checks={CHECKS}",
            "--phases=examples,coverage,fuzzing,stateful",
            "--mode=all",
            f"--max-examples={EXAMPLES}",
            f"--seed={SEED}",
            *(f"--exclude-path={path}" for path in NOT_FUZZED.get(name, [])),
            "--workers=1",
            "--request-timeout=30",
            "--no-color",
            cwd=tmp_path,
            env={
                **os.environ,
                "SCHEMATHESIS_HOOKS": str(Path(__file__).parent / "fuzzing" / "hooks.py"),
                "CUNZHI_FUZZ_TOKENS": json.dumps(tokens(settings, name)),
                "CUNZHI_FUZZ_SEED": str(SEED),
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await run.communicate()
        report = output.decode(errors="replace")
        assert run.returncode == 0, report[-20_000:]
    finally:
        server.should_exit = True
        await serving
