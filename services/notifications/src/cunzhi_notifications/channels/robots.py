"""Group robots (群机器人): WeCom (企业微信) and DingTalk (钉钉) custom robot webhooks.

A message is one digest to one group. Its address is the robot's webhook as the group's
settings show it (``…/cgi-bin/webhook/send?key=…``, ``…/robot/send?access_token=…``) or just
its key/token; the request always goes to the configured endpoint of the provider, so a group
entry cannot point the service anywhere else. Both answer HTTP 200 with ``errcode``: anything
but 0 is a failure. DingTalk's 加签 secret is the message's ``secret``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import httpx
from cunzhi_platform.clock import Clock, SystemClock

from .base import Message, Outcome, SendResult
from .http import TRANSPORT_ERRORS, garbage, json_object, transport_failure
from .sms import UNTIL_MIDNIGHT, Rule

_R, _F = Outcome.RETRY, Outcome.FAILED
GONE = Rule(_F, "the robot no longer exists: the group must set it up again")


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's ``sign``: base64 HMAC-SHA256 of "timestamp\\nsecret" keyed by the secret."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), to_sign, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class Robot:
    name: str
    provider: str
    path: str
    token_param: str
    max_bytes: int
    codes: ClassVar[Mapping[int, Rule]]
    max_batch = 20
    at_most_once = True
    """Robots take no idempotency key and keep no record to ask: a resend could post twice."""

    def __init__(
        self,
        *,
        endpoint: str,
        timeout_s: float = 5.0,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.clock = clock or SystemClock()
        self.client = httpx.AsyncClient(timeout=timeout_s, transport=transport, trust_env=False)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def send(self, messages: Sequence[Message]) -> list[SendResult]:
        return list(await asyncio.gather(*(self._send_one(m) for m in messages)))

    async def receipt(self, message: Message, provider_id: str | None) -> SendResult | None:
        return None  # robots keep no record we could ask for

    def token(self, address: str) -> str | None:
        """The robot's key from a webhook URL on our endpoint, or the bare key."""
        if "://" not in address:
            return address.strip() or None
        url = urllib.parse.urlsplit(address)
        ours = urllib.parse.urlsplit(self.endpoint + self.path)
        if (url.scheme, url.netloc, url.path) != (ours.scheme, ours.netloc, ours.path):
            return None
        values = urllib.parse.parse_qs(url.query).get(self.token_param)
        return values[0] if values else None

    async def _send_one(self, message: Message) -> SendResult:
        token = self.token(message.address)
        if token is None:
            return SendResult(
                Outcome.FAILED,
                error=f"{self.provider}: the group's robot address is not a webhook of "
                f"{self.endpoint}{self.path}",
            )
        body = self.body(message)
        size = len(self.content(body).encode())
        if size > self.max_bytes:
            return SendResult(
                Outcome.FAILED,
                error=f"{self.provider}: the text is {size} bytes, over the robot's "
                f"{self.max_bytes}: shorten the digest template",
            )
        params = {self.token_param: token, **self.extra_params(message)}
        try:
            response = await self.client.post(self.endpoint + self.path, params=params, json=body)
        except TRANSPORT_ERRORS as exc:
            return transport_failure(exc, self.provider)
        answer = json_object(response.content)
        if answer is None or not isinstance(answer.get("errcode"), int):
            return garbage(response.status_code, response.content, self.provider)
        code = answer["errcode"]
        if code == 0:
            return SendResult(Outcome.SENT)
        rule = self.codes.get(code) or Rule(
            _R if code < 0 or response.status_code >= 500 else _F, "refused"
        )
        return SendResult(
            rule.outcome,
            error=f"{self.provider}: errcode {code} ({answer.get('errmsg', '')}): {rule.meaning}",
            retry_after_s=rule.wait(self.clock.now()),
            address_gone=rule is GONE,
        )

    def body(self, message: Message) -> dict[str, Any]:
        raise NotImplementedError

    def content(self, body: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def extra_params(self, message: Message) -> dict[str, str]:
        return {}


class WeComRobot(Robot):
    """企业微信群机器人: markdown ``content`` up to 4096 bytes, 20 messages a minute a robot."""

    name = "wecom"
    provider = "WeCom robot"
    path = "/cgi-bin/webhook/send"
    token_param = "key"
    max_bytes = 4096
    codes: ClassVar[Mapping[int, Rule]] = {
        45009: Rule(_R, "over the robot's 20 messages a minute", 60),
        -1: Rule(_R, "the provider is busy"),
        93000: GONE,  # invalid webhook url: the robot was removed from the group
        40058: Rule(_F, "the content is invalid or too long"),
        44004: Rule(_F, "the content is empty"),
    }

    def __init__(self, *, endpoint: str = "https://qyapi.weixin.qq.com", **kw: Any) -> None:
        super().__init__(endpoint=endpoint, **kw)

    def body(self, message: Message) -> dict[str, Any]:
        text = f"**{message.subject}**\n{message.body}" if message.subject else message.body
        return {"msgtype": "markdown", "markdown": {"content": text}}

    def content(self, body: Mapping[str, Any]) -> str:
        return str(body["markdown"]["content"])


class DingTalkRobot(Robot):
    """钉钉自定义机器人 with 加签: ``timestamp`` (ms) and ``sign`` in the query string."""

    name = "dingtalk"
    provider = "DingTalk robot"
    path = "/robot/send"
    token_param = "access_token"
    max_bytes = 20000
    codes: ClassVar[Mapping[int, Rule]] = {
        # Over 20 messages a minute, DingTalk holds the robot for 10 minutes.
        130101: Rule(_R, "sending too fast: 20 messages a minute a robot", 600),
        90030: Rule(_R, "the robot's call quota is used up (webhook over limit)", UNTIL_MIDNIGHT),
        410100: Rule(_R, "sending too fast (限流)", 60),
        -1: Rule(_R, "the provider is busy"),
        300001: GONE,  # token is not exist
        400013: GONE,  # the group was dissolved
        400101: GONE,  # access_token does not exist
        310000: Rule(_F, "the robot's security settings refused it (sign, keyword or IP)"),
    }

    def __init__(self, *, endpoint: str = "https://oapi.dingtalk.com", **kw: Any) -> None:
        super().__init__(endpoint=endpoint, **kw)

    def body(self, message: Message) -> dict[str, Any]:
        title = message.subject or message.body[:20]
        return {"msgtype": "markdown", "markdown": {"title": title, "text": message.body}}

    def content(self, body: Mapping[str, Any]) -> str:
        return str(body["markdown"]["text"])

    def extra_params(self, message: Message) -> dict[str, str]:
        if not message.secret:
            return {}  # a robot secured by keyword or IP only: no signature
        timestamp = int(self.clock.now().timestamp() * 1000)
        return {"timestamp": str(timestamp), "sign": dingtalk_sign(message.secret, timestamp)}
