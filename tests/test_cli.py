"""The operator's `cunzhi rebuild` on a running service."""

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from cunzhi_meetings.service import build_service
from cunzhi_platform.testing import eventually, running, token

from cunzhi_cli.cli import main

pytestmark = pytest.mark.slow


async def test_rebuild_swaps_in_a_fresh_read_model_while_the_service_serves(
    settings, monkeypatch, capsys
):
    township = f"tw-{uuid.uuid4().hex[:8]}"
    office = token(settings, sub="office", roles=["party_building_office"], township_ids=[township])
    people = [
        {
            "person_id": f"s-{i}",
            "name": f"书记{i}",
            "role": "village_secretary",
            "village_id": f"v{i}",
        }
        for i in range(5)
    ]
    monkeypatch.setenv("CUNZHI_DATABASE_URL", settings.database_url)
    async with running(build_service(), settings) as client:
        r = await client.post(f"/townships/{township}/roster", json=people, headers=office)
        assert r.status_code == 200, r.text

        async def roster():
            r = await client.get(f"/townships/{township}/roster", headers=office)
            return r.json() if len(r.json()["items"]) == 5 else None

        before = await eventually(roster)
        assert before
        await asyncio.to_thread(main, ["rebuild", "meetings", "roster"])
        assert "rebuilt meetings.roster" in capsys.readouterr().out
        assert await roster() == before
        # The live consumer goes on writing into the swapped-in table.
        more = [
            {"person_id": "s-9", "name": "书记9", "role": "village_secretary", "village_id": "v9"}
        ]
        await client.post(f"/townships/{township}/roster", json=more, headers=office)

        async def six():
            r = await client.get(f"/townships/{township}/roster", headers=office)
            return len(r.json()["items"]) == 6

        assert await eventually(six)

        # Republishing the history changes no read model: every copy is skipped by event id.
        await asyncio.to_thread(main, ["republish", "meetings"])
        assert "events of meetings for its relay to publish again" in capsys.readouterr().out
        unsent = "SELECT count(*) FROM meetings.outbox WHERE sent_at IS NULL"
        assert await eventually(lambda: _none(client, unsent), timeout=30)
        await asyncio.sleep(1)  # the copies reach the consumers
        assert await six()

    capsys.readouterr()
    with pytest.raises(SystemExit) as misuse:  # misuse: the usage and exit 2
        await asyncio.to_thread(main, ["rebuild", "meetings", "nope"])
    assert misuse.value.code == 2
    assert "no rebuildable projection 'nope'" in capsys.readouterr().err


async def _none(client, count_sql):
    return await client.app.state.runtime.pool.fetchval(count_sql) == 0


def _exports(proc: subprocess.Popen[str]) -> dict[str, str]:
    assert proc.stdout is not None
    found: dict[str, str] = {}
    while len(found) < 2:
        line = proc.stdout.readline()
        assert line, "cunzhi infra up exited before printing both URLs"
        if line.strip().startswith("export "):
            name, _, value = line.strip().removeprefix("export ").partition("=")
            found[name] = value
    return found


def _postmaster(data_dir: Path) -> int:
    return int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])


async def _note(url: str) -> str | None:
    try:
        conn = await asyncpg.connect(url, timeout=5)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return None
    try:
        return await conn.fetchval("SELECT note FROM kept")
    finally:
        await conn.close()


async def test_infra_up_restarts_a_killed_postgres_and_keeps_its_ports(tmp_path):
    def up() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "cunzhi_cli.cli", "infra", "up", "--data-dir", str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
        )

    first = up()
    try:
        urls = await asyncio.to_thread(_exports, first)
        url = urls["CUNZHI_DATABASE_URL"]
        conn = await asyncpg.connect(url)
        await conn.execute("CREATE TABLE kept AS SELECT 'written before' AS note")
        await conn.close()
        os.kill(_postmaster(tmp_path), signal.SIGKILL)
        assert await eventually(lambda: _note(url), timeout=90, interval=0.5) == "written before"
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(30)
    second = up()
    try:
        assert await asyncio.to_thread(_exports, second) == urls
        assert await _note(url) == "written before"
    finally:
        second.send_signal(signal.SIGINT)
        second.wait(30)


def cunzhi(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The command as an operator runs it, output not a terminal; no CUNZHI_ setting but
    ``env``'s."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CUNZHI_")}
    return subprocess.run(
        [sys.executable, "-m", "cunzhi_cli.cli", *argv],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["export", "/nonexistent/export"],
        ["republish", "--all"],
        ["dlq", "list", "topics"],
        ["demo"],
    ],
)
def test_a_malformed_setting_is_one_line_naming_it(argv: list[str]) -> None:
    done = cunzhi(*argv, env={"CUNZHI_TOPIC_PARTITIONS": "six"})
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("cunzhi: CUNZHI_TOPIC_PARTITIONS is malformed"), line


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nonsense"],
        ["dlq", "replay", "topics"],
        ["rebuild", "topics", "forums"],
        ["republish", "topics", "--all"],
        ["simulate", "--months", "13"],
    ],
)
def test_misuse_exits_2_with_the_usage(argv: list[str]) -> None:
    done = cunzhi(*argv)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.startswith("usage: cunzhi") and "Traceback" not in done.stderr


@pytest.mark.timeout(900)  # a whole forum cycle on its own stack, on a loaded machine
def test_the_demo_prints_its_narrative_first_and_clean_and_the_logs_once_at_the_end(
    tmp_path: Path,
) -> None:
    """On its own embedded stack, output to pipes: the narrative alone on standard output,
    without escape codes; the libraries' lines (aiokafka's on idempotence against Tansu) in the
    log file, and standard error one sentence pointing at it."""
    done = cunzhi("demo", "--data-dir", str(tmp_path), timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("cunzhi demo: ")
    assert "\x1b" not in done.stdout + done.stderr
    (summary,) = done.stderr.splitlines()
    log = tmp_path / "demo.log"
    assert summary.endswith(f"details in {log}"), summary
    logged = log.read_text()
    assert "InitProducerIdRequest" in logged and "kafka_idempotent_producer_unsupported" in logged
    assert "kafka idempotent producer unsupported" in summary
    assert "\x1b" not in logged
