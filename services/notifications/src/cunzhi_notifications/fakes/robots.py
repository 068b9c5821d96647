"""Fake WeCom and DingTalk group robots: one server each, any number of robots on it.

``add_robot()`` makes a robot and returns its webhook URL (DingTalk robots may have a 加签
secret, checked as DingTalk checks it). Like the real ones they answer HTTP 200 with an
``errcode``, refuse an unknown key, and hold each robot to 20 messages a minute (DingTalk then
refuses the robot for 10 minutes).
``fake.messages[key]`` lists the JSON bodies a robot received.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import time
from collections import defaultdict, deque
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..channels.robots import dingtalk_sign
from .server import FakeServer, Fault

PER_MINUTE = 20


class FakeRobots(FakeServer):
    path: str
    token_param: str
    unknown: tuple[int, str]
    too_fast: tuple[int, str]
    penalty_s = 0.0
    """How long a robot stays refused once it went over its rate."""

    def __init__(self, per_minute: int = PER_MINUTE) -> None:
        super().__init__()
        self.per_minute = per_minute
        self.messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.robots: dict[str, str | None] = {}
        self._recent: dict[str, deque[float]] = defaultdict(deque)
        self._held_until: dict[str, float] = {}

    def routes(self) -> list[Route]:
        return [Route(self.path, self.handle, methods=["POST"])]

    def add_robot(self, key: str | None = None, secret: str | None = None) -> str:
        """A new robot; its webhook URL (the address a group entry holds)."""
        key = key or secrets.token_hex(16)
        self.robots[key] = secret
        return f"{self.url}{self.path}?{self.token_param}={key}"

    @staticmethod
    def _reply(code: int, message: str) -> Response:
        return JSONResponse({"errcode": code, "errmsg": message})

    def _refusal(self, fault: Fault) -> Response:
        return self._reply(int(fault.code or -1), f"injected: {fault.code}")

    async def handle(self, request: Request) -> Response:
        key = request.query_params.get(self.token_param, "")
        if key not in self.robots:
            return self._reply(*self.unknown)
        refused = self.check(request, self.robots[key])
        if refused is not None:
            return refused
        try:
            body = json.loads(await request.body())
        except ValueError:
            return self._reply(40001 if self.path.startswith("/cgi") else 43004, "invalid json")

        async def normal() -> Response:
            recent = self._recent[key]
            now = time.monotonic()
            while recent and now - recent[0] > 60:
                recent.popleft()
            if now < self._held_until.get(key, 0.0):
                return self._reply(*self.too_fast)
            if len(recent) >= self.per_minute:
                self._held_until[key] = now + self.penalty_s
                return self._reply(*self.too_fast)
            recent.append(now)
            self.messages[key].append(body)
            return self._reply(0, "ok")

        return await self.answer(self.next_fault(), normal, self._refusal)

    def check(self, request: Request, secret: str | None) -> Response | None:
        return None


class FakeWeComRobot(FakeRobots):
    path = "/cgi-bin/webhook/send"
    token_param = "key"
    unknown = (93000, "invalid webhook url")
    too_fast = (45009, "api freq out of limit")


class FakeDingTalkRobot(FakeRobots):
    path = "/robot/send"
    token_param = "access_token"
    unknown = (300001, "token is not exist")
    too_fast = (130101, "send too fast, exceed 20 times per minute")
    penalty_s = 600.0

    def check(self, request: Request, secret: str | None) -> Response | None:
        if secret is None:
            return None
        stamp = request.query_params.get("timestamp", "")
        given = request.query_params.get("sign", "")
        # DingTalk refuses a timestamp more than an hour from its own clock.
        if not stamp.isdigit() or abs(time.time() * 1000 - int(stamp)) > 3600 * 1000:
            return self._reply(310000, "invalid timestamp")
        try:
            base64.b64decode(given, validate=True)
        except ValueError:
            return self._reply(310000, "sign not match")
        if not hmac.compare_digest(given, dingtalk_sign(secret, int(stamp))):
            return self._reply(310000, "sign not match")
        return None
