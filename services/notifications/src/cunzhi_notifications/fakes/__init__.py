"""Local fake providers: real servers on 127.0.0.1 that answer like the real ones.

For tests, benchmarks and the demo::

    async with FakeProviders() as fakes:
        channels = build_channels(fakes.settings(sms="tencent"))
        fakes.tencent.fail(Fault(code=FakeTencentSms.THROTTLED))
        robot = fakes.dingtalk.add_robot(secret="SEC…")
        url, secret = fakes.webhooks.add_endpoint()
        fakes.smtp.messages, fakes.aliyun.sent, fakes.wecom.messages[key] …
"""

from __future__ import annotations

import uuid
from typing import Any, Literal, Self

from ..channels.base import Message
from ..channels.registry import ChannelSettings
from .robots import FakeDingTalkRobot, FakeWeComRobot
from .server import FakeServer, Fault, Running
from .sms import FakeAliyunSms, FakeTencentSms, SentSms
from .smtp import FakeSmtpServer
from .webhooks import Delivery, FakeWebhookReceiver

__all__ = [
    "Delivery",
    "FakeAliyunSms",
    "FakeDingTalkRobot",
    "FakeProviders",
    "FakeServer",
    "FakeSmtpServer",
    "FakeTencentSms",
    "FakeWeComRobot",
    "FakeWebhookReceiver",
    "Fault",
    "SentSms",
    "mask",
    "sample",
]


def sample(address: str, **fields: Any) -> Message:
    """A rendered notice with a fresh delivery id, as the sender hands it to a channel."""
    fields.setdefault("subject", "论坛通知")
    fields.setdefault("body", "第18期乡村干部论坛将于3月5日召开，请准备发言。")
    return Message(delivery_id=f"d-{uuid.uuid4().hex}", address=address, **fields)


def mask(phone: str) -> str:
    """138****0001: enough to tell numbers apart in a demo, not enough to call anyone."""
    digits = phone.removeprefix("+86")
    return f"{digits[:3]}****{digits[-4:]}" if len(digits) >= 8 else "****"


class FakeProviders(Running):
    """Every fake provider started together, and settings that point the channels at them."""

    def __init__(self) -> None:
        self.aliyun = FakeAliyunSms()
        self.tencent = FakeTencentSms()
        self.wecom = FakeWeComRobot()
        self.dingtalk = FakeDingTalkRobot()
        self.webhooks = FakeWebhookReceiver()
        self.smtp = FakeSmtpServer()
        self._http: list[FakeServer] = [
            self.aliyun,
            self.tencent,
            self.wecom,
            self.dingtalk,
            self.webhooks,
        ]

    def summary(self) -> list[str]:
        """What the fakes received, one line a provider, numbers and addresses masked (demo)."""
        sms = [*self.aliyun.sent, *self.tencent.sent]
        robots = {
            "WeCom": sum(map(len, self.wecom.messages.values())),
            "DingTalk": sum(map(len, self.dingtalk.messages.values())),
        }
        return [
            f"SMS: {len(sms)} accepted"
            + (f" ({', '.join(sorted({mask(s.phone) for s in sms})[:5])}…)" if sms else ""),
            *(f"{name} group robot: {n} message(s)" for name, n in robots.items()),
            f"e-mail: {len(self.smtp.messages)} accepted by the SMTP server",
            f"webhooks: {len(self.webhooks.received)} received, "
            f"{sum(d.verified for d in self.webhooks.received)} with a valid signature",
        ]

    def settings(
        self, sms: Literal["aliyun", "tencent"] = "aliyun", **overrides: object
    ) -> ChannelSettings:
        """Channel settings for these fakes; webhooks may reach loopback (and nothing else)."""
        fake = self.aliyun if sms == "aliyun" else self.tencent
        values: dict[str, object] = {
            "sms_provider": sms,
            "sms_endpoint": fake.url,
            "sms_key_id": fake.key_id,
            "sms_key_secret": fake.key_secret,
            "sms_sign_name": "村治通知",
            "sms_sdk_app_id": self.tencent.sdk_app_id,
            "wecom_endpoint": self.wecom.url,
            "dingtalk_endpoint": self.dingtalk.url,
            "smtp_host": self.smtp.host,
            "smtp_port": self.smtp.port,
            "smtp_security": "none",
            "mail_from": "村治通知 <notices@cunzhi.invalid>",
            "webhook_allow": "127.0.0.0/8,::1/128",
            "webhook_allow_public": False,
            **overrides,
        }
        return ChannelSettings.model_validate(values)

    async def start(self) -> Self:
        for server in self._http:
            await server.start()
        await self.smtp.start()
        return self

    async def stop(self) -> None:
        await self.smtp.stop()
        for server in self._http:
            await server.stop()
