"""The inbox's live stream (Server-Sent Events) over a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket

import httpx
import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def served(app):
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def next_event(lines) -> dict:
    async for line in lines:
        if line.startswith("data: "):
            return json.loads(line.removeprefix("data: "))
    raise AssertionError("the stream ended")


async def test_the_stream_tells_a_front_end_of_new_and_read_notices(kit):
    township, forum = kit.fresh("tw"), kit.fresh("forum")
    p = await kit.person(township)
    async with (
        served(kit.client.app) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as http,
        http.stream("GET", "/inbox/stream?heartbeat_s=1", headers=kit.me(p)) as stream,
    ):
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.aiter_lines()
        first = await next_event(lines)
        assert first == {"unread": 0, "newest": None}
        await kit.publish(
            "meetings",
            "ForumNoticeIssued",
            kit.forum_notice(forum, township, [kit.attendee(p)]),
            forum,
        )
        arrived = await asyncio.wait_for(next_event(lines), 90)
        assert arrived["unread"] == 1 and arrived["newest"]["kind"] == "forum_notice"
        # times as in every other answer: RFC 3339 in +08:00, the same as the inbox says
        inbox = (await kit.client.get("/inbox", headers=kit.me(p))).json()["items"][0]
        assert arrived["newest"]["sent_at"] == inbox["sent_at"]
        assert arrived["newest"]["sent_at"].endswith("+08:00")
        r = await kit.client.post(
            "/inbox/read-all", headers={**kit.me(p), "X-Correlation-ID": f"read-{p}"}
        )
        assert r.json()["marked"] == 1
        read = await asyncio.wait_for(next_event(lines), 90)
        assert read["unread"] == 0 and read["newest"]["read_at"].endswith("+08:00")
    # the NotificationRead event is part of the conversation the reader's request began
    correlation = await kit.pool.fetchval(
        f"""SELECT metadata->>'correlation_id' FROM {kit.s}.events
            WHERE type = $1 AND payload->>'recipient_id' = $2""",
        "cunzhi.notifications.NotificationRead",
        p,
    )
    assert correlation == f"read-{p}"
