"""The embedded infrastructure: supervised, on ports that stay, leaving nothing in /tmp."""

import asyncio
import os
import signal
import time

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from cunzhi_platform.infra import embedded

pytestmark = pytest.mark.slow


async def _query(url: str, sql: str) -> object:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def _broker_answers(bootstrap: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        await admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        await admin.close()


def _until(check, timeout: float = 90) -> object:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            value = None
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def test_a_killed_server_comes_back_on_its_port_with_its_data(tmp_path):
    with embedded(tmp_path) as (endpoints, pg, kafka):
        url, bootstrap = endpoints.database_url, endpoints.kafka_bootstrap_servers
        asyncio.run(_query(url, "CREATE TABLE kept AS SELECT 'before the crash' AS note"))
        # No Unix socket, so no directory per start in /tmp.
        assert asyncio.run(_query(url, "SHOW unix_socket_directories")) == ""
        dead_pg, dead_kafka = pg.proc.pid, kafka.proc.pid
        os.kill(dead_pg, signal.SIGKILL)
        os.kill(dead_kafka, signal.SIGKILL)

        assert _until(lambda: asyncio.run(_query(url, "SELECT note FROM kept"))) == (
            "before the crash"
        )
        assert pg.proc.pid != dead_pg
        assert _until(
            lambda: kafka.proc.pid != dead_kafka and asyncio.run(_broker_answers(bootstrap))
        )

    # A new start of the same data dir: the same ports, so exported URLs stay right.
    with embedded(tmp_path) as (again, _, _):
        assert (again.database_url, again.kafka_bootstrap_servers) == (url, bootstrap)
        assert asyncio.run(_query(url, "SELECT note FROM kept")) == "before the crash"
