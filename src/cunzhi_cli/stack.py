"""The county's four services in this process, on one clock: what the demo and the simulation run.

Each service is a real HTTP server (uvicorn on a free loopback port) with its whole runtime
(database, broker, consumers, relay, timers), sharing one ``ManualClock`` so that a month
passes in seconds; notifications send through local fake providers (``notices.channels``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import uvicorn
from cunzhi_meetings.service import build_service as meetings_service
from cunzhi_notifications.service import build_service as notifications_service
from cunzhi_platform.auth import TokenIssuer
from cunzhi_platform.clock import ManualClock
from cunzhi_platform.infra import Endpoints
from cunzhi_platform.runtime import Service, create_app
from cunzhi_platform.settings import Settings
from cunzhi_rectification.service import build_service as rectification_service
from cunzhi_topics.service import build_service as topics_service

from . import notices

STARTUP_TIMEOUT_S = 60.0
KEEP_ALIVE_S = 60


class _Server(uvicorn.Server):
    """The servers share the process, so signals are the caller's to handle, not uvicorn's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def demo_settings(settings: Settings, endpoints: Endpoints) -> Settings:
    """Fast timers and consumer groups, so that a cycle takes seconds, not minutes."""
    return settings.model_copy(
        update={
            "database_url": endpoints.database_url,
            "kafka_bootstrap_servers": endpoints.kafka_bootstrap_servers,
            # The embedded broker is plain on loopback, whatever the environment says.
            **({} if endpoints.mode == "external" else {"kafka_security_protocol": "PLAINTEXT"}),
            "scheduler_interval_s": 0.2,
            "relay_poll_interval_s": 0.2,
            "consumer_session_timeout_ms": 2_000,
            "consumer_heartbeat_interval_ms": 300,
            "log_json": False,
            "log_level": "WARNING",
        }
    )


@contextlib.asynccontextmanager
async def serving(service: Service, settings: Settings, clock: ManualClock) -> AsyncIterator[str]:
    """The service behind uvicorn on a free loopback port; yields its base URL.

    The app's lifespan (database, broker, consumers, relay, timers) is entered here rather than
    by uvicorn, so that a start-up failure raises its own error (``InfrastructureError`` naming
    the setting) instead of uvicorn's ``SystemExit``.
    """
    app = create_app(service, settings, clock)
    async with app.router.lifespan_context(app):
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            lifespan="off",
            log_config=None,
            access_log=False,
            # Longer than the clients' keep-alive (httpx: 5 s): a server closing an idle
            # connection as a client reuses it would fail the request (ReadError).
            timeout_keep_alive=KEEP_ALIVE_S,
        )
        server = _Server(config)
        task = asyncio.create_task(server.serve(), name=f"{service.name}-http")
        try:
            async with asyncio.timeout(STARTUP_TIMEOUT_S):
                while not server.started:
                    if task.done():
                        task.result()  # raises what stopped it
                        raise RuntimeError(f"the {service.name} HTTP server did not start")
                    await asyncio.sleep(0.05)
            port = server.servers[0].sockets[0].getsockname()[1]
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            await task


@dataclass(frozen=True)
class Stack:
    """The running services: a client on each, their URLs, the fake providers, a token issuer."""

    topics: httpx.AsyncClient
    meetings: httpx.AsyncClient
    rectification: httpx.AsyncClient
    notifications: httpx.AsyncClient
    urls: dict[str, str]
    channels: notices.DemoChannels
    issuer: TokenIssuer


@contextlib.asynccontextmanager
async def county_stack(config: Settings, clock: ManualClock) -> AsyncIterator[Stack]:
    """Topics, meetings, rectification and notifications served on ``clock``, with ``config``
    (``demo_settings``); everything stops when the block ends."""
    async with (
        serving(topics_service(), config, clock) as topics_url,
        serving(meetings_service(), config, clock) as meetings_url,
        serving(rectification_service(), config, clock) as rectification_url,
        notices.channels() as channels,
        serving(notifications_service(channels.channels), config, clock) as notifications_url,
        httpx.AsyncClient(base_url=topics_url, timeout=30) as topics,
        httpx.AsyncClient(base_url=meetings_url, timeout=30) as meetings,
        httpx.AsyncClient(base_url=rectification_url, timeout=30) as rectification,
        httpx.AsyncClient(base_url=notifications_url, timeout=30) as notifications,
    ):
        yield Stack(
            topics=topics,
            meetings=meetings,
            rectification=rectification,
            notifications=notifications,
            urls={
                "topics": topics_url,
                "meetings": meetings_url,
                "rectification": rectification_url,
                "notifications": notifications_url,
            },
            channels=channels,
            issuer=TokenIssuer(config.jwt_secret, config.jwt_algorithm, config.jwt_audience),
        )
