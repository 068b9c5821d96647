"""Back up the event store and recover it to a point in time with the PostgreSQL tools.

The runbook's procedure on a PostgreSQL of our own (the embedded binaries): WAL archived with
``archive_command``, a base backup with ``pg_basebackup``, events appended after it, a restore
point, more events, the server lost; a new server from the base backup replays the archive up
to the restore point (``recovery.signal``, ``restore_command``, ``recovery_target_name``).
It must hold exactly the events before the point, and the read model rebuilt from them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

import asyncpg
import pytest
from cunzhi_platform.clock import SHANGHAI, ManualClock
from cunzhi_platform.consumer import create_tables
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.eventstore import PLATFORM_MIGRATIONS, EventStore
from cunzhi_platform.infra import PG_SYSTEM_USER, EmbeddedPostgres
from cunzhi_platform.migrations import migrate
from cunzhi_platform.rebuild import rebuild
from cunzhi_rectification.adapters.tasks.projection import TasksProjection, tasks_table
from cunzhi_rectification.application.tasks import assign_tasks
from cunzhi_rectification.domain.tasks import TaskDraft
from cunzhi_rectification.events import Assignee, registry

pytestmark = pytest.mark.slow

SCHEMA = "rectification"
START = dt.date(2026, 3, 2)


def _owned_by_postgres(*paths: Path) -> None:
    """The server runs as a system user when we are root: it must own what it reads."""
    if os.geteuid() != 0:
        return
    user = pwd.getpwnam(PG_SYSTEM_USER)
    for path in paths:
        for root, dirs, files in os.walk(path):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.chown(name, user.pw_uid, user.pw_gid)


def _drafts(*ids: str) -> list[TaskDraft]:
    return [
        TaskDraft(
            task_id=i,
            source="campaign_target",
            township_id="town",
            village_id=f"v-{i}",
            assignee=Assignee(kind="village", id=f"v-{i}"),
            title="目标",
            starts_on=START,
            due_on=START + dt.timedelta(days=30),
            campaign_id="c",
        )
        for i in ids
    ]


async def _with_store(url: str, work) -> object:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    try:
        clock = ManualClock(dt.datetime.combine(START, dt.time(9), tzinfo=SHANGHAI))
        return await work(pool, EventStore(pool, SCHEMA, registry, clock))
    finally:
        await pool.close()


def _address(pg: EmbeddedPostgres) -> list[str]:
    return ["-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres"]


def _sql(pg: EmbeddedPostgres, sql: str) -> str:
    return subprocess.run(
        [str(pg.bin / "psql"), *_address(pg), "-d", "cunzhi", "-tAc", sql],
        capture_output=True,
        check=True,
        text=True,
    ).stdout.strip()


def _until(check, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_point_in_time_recovery_from_a_base_backup_and_the_wal_archive(tmp_path: Path) -> None:
    archive, base = tmp_path / "wal-archive", tmp_path / "base"
    archive.mkdir()
    _owned_by_postgres(archive)
    lost = EmbeddedPostgres(tmp_path / "lost")
    lost.start()
    try:
        _sql(lost, "ALTER SYSTEM SET archive_mode = on")
        _sql(lost, f"ALTER SYSTEM SET archive_command = 'cp %p {archive}/%f'")
        lost.stop()
        lost.start()

        async def before_backup(pool: asyncpg.Pool, store: EventStore) -> None:
            projection = TasksProjection()
            async with pool.acquire() as conn:
                await migrate(conn, SCHEMA, PLATFORM_MIGRATIONS)
                await create_tables(conn, SCHEMA, projection)
            await assign_tasks(store, _drafts("t1"), CommandContext())
            await rebuild(projection, store)

        asyncio.run(_with_store(lost.url, before_backup))
        subprocess.run(
            [
                str(lost.bin / "pg_basebackup"),
                *_address(lost),
                "-D",
                str(base),
                "--checkpoint=fast",
            ],
            capture_output=True,
            check=True,
        )

        async def after_backup(pool: asyncpg.Pool, store: EventStore) -> None:
            await assign_tasks(store, _drafts("t2"), CommandContext())
            await pool.execute("SELECT pg_create_restore_point('before_the_mistake')")
            await assign_tasks(store, _drafts("t3"), CommandContext())

        asyncio.run(_with_store(lost.url, after_backup))
        last = _sql(lost, "SELECT pg_walfile_name(pg_switch_wal())")
        _until(lambda: (archive / last).exists())
    finally:
        lost.stop()

    restored = EmbeddedPostgres(tmp_path / "restored")
    shutil.copytree(base, restored.data_dir)
    (restored.data_dir / "recovery.signal").touch()
    with (restored.data_dir / "postgresql.auto.conf").open("a") as conf:
        conf.write(
            f"restore_command = 'cp {archive}/%f %p'\n"
            "recovery_target_name = 'before_the_mistake'\n"
            "recovery_target_action = 'promote'\n"
        )
    _owned_by_postgres(restored.data_dir)
    restored.start()
    try:
        _until(lambda: _sql(restored, "SELECT pg_is_in_recovery()") == "f")

        async def check(pool: asyncpg.Pool, store: EventStore) -> tuple[list[str], list[str]]:
            streams = await pool.fetch(
                f"SELECT DISTINCT stream_id FROM {SCHEMA}.events ORDER BY stream_id"
            )
            await rebuild(TasksProjection(), store)
            tasks = await pool.fetch(f"SELECT task_id FROM {tasks_table(SCHEMA)} ORDER BY 1")
            return [r["stream_id"] for r in streams], [r["task_id"] for r in tasks]

        streams, tasks = asyncio.run(_with_store(restored.url, check))
    finally:
        restored.stop()
    assert streams == ["task:t1", "task:t2"]
    assert tasks == ["t1", "t2"]
