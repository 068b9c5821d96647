"""A service process starting: serving in seconds, and saying where."""

import asyncio
import json
import os
import sys

import httpx
import pytest
from cunzhi_platform.infra import free_port

pytestmark = pytest.mark.slow


async def _logged(stream: asyncio.StreamReader, event: str) -> dict[str, object]:
    while line := await stream.readline():
        with_event = json.loads(line) if line.startswith(b"{") else {}
        if with_event.get("event") == event:
            return with_event
    raise AssertionError(f"the service exited without logging {event}")


async def test_a_service_serves_before_its_consumer_groups_join_and_logs_its_address(settings):
    port = free_port()
    env = {
        **os.environ,
        "CUNZHI_DATABASE_URL": settings.database_url,
        "CUNZHI_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "CUNZHI_HTTP_PORT": str(port),
        "CUNZHI_LOG_JSON": "true",
        # A join then takes about half a minute per consumer group: four of them one after
        # the other held start-up for two minutes.
        "CUNZHI_CONSUMER_SESSION_TIMEOUT_MS": "60000",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cunzhi_topics.main", env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stderr is not None
        listening = await asyncio.wait_for(_logged(proc.stderr, "service_listening"), 30)
        assert listening["url"] == f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as client:
            ready = await client.get(f"{listening['url']}/readyz")
        assert ready.status_code == 200, ready.text
    finally:
        proc.terminate()
        try:
            # Drained, so a chatty shutdown cannot block on the pipe.
            await asyncio.wait_for(proc.communicate(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
