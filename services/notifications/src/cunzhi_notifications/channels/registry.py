"""The channels this deployment has, built from its settings (environment, prefix ``CUNZHI_``).

``build_channels(ChannelSettings())`` returns the configured ones by name: ``sms`` when an SMS
provider and its keys are set, ``email`` when an SMTP host is set, ``wecom``, ``dingtalk`` and
``webhook`` always (their addresses come with each group or endpoint). Secrets are
``SecretStr``: neither ``repr`` nor a log line shows them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal, Protocol, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from . import aliyun, tencent
from .aliyun import AliyunSms
from .base import Channel
from .email import EmailChannel
from .guard import AddressPolicy
from .robots import DingTalkRobot, WeComRobot
from .tencent import TencentSms
from .webhook import WebhookChannel


class ChannelSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CUNZHI_", extra="ignore")

    sms_provider: Literal["", "aliyun", "tencent"] = ""
    """Empty: no SMS channel."""
    sms_endpoint: str = ""
    """Empty: the provider's public endpoint."""
    sms_key_id: str = ""
    """Alibaba AccessKeyId or Tencent SecretId."""
    sms_key_secret: SecretStr = SecretStr("")
    sms_sign_name: str = ""
    """The approved signature (签名), e.g. 某某县委组织部."""
    sms_sdk_app_id: str = ""
    """Tencent only: the SmsSdkAppId of the application."""
    sms_region: str = ""
    sms_timeout_s: float = 5.0
    wecom_endpoint: str = "https://qyapi.weixin.qq.com"
    dingtalk_endpoint: str = "https://oapi.dingtalk.com"
    robot_timeout_s: float = 5.0
    smtp_host: str = ""
    """Empty: no e-mail channel."""
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_security: Literal["none", "starttls", "tls"] = "starttls"
    smtp_timeout_s: float = 10.0
    mail_from: str = "村治通知 <notices@cunzhi.invalid>"
    webhook_allow: str = ""
    """Comma-separated CIDRs or host names webhooks may reach besides public addresses, e.g.
    ``10.20.0.0/16,oa.county.internal``. Private, loopback and link-local addresses are
    refused unless listed."""
    webhook_allow_public: bool = True
    webhook_timeout_s: float = 10.0

    @model_validator(mode="after")
    def _complete(self) -> Self:
        for name in ("sms_timeout_s", "robot_timeout_s", "smtp_timeout_s", "webhook_timeout_s"):
            if not 0 < getattr(self, name) <= 120:
                raise ValueError(f"CUNZHI_{name.upper()} must be between 0 and 120 seconds")
        try:
            self.address_policy()
        except ValueError as exc:
            raise ValueError(f"CUNZHI_WEBHOOK_ALLOW: {exc}") from None
        if self.sms_provider:
            needed = ["sms_key_id", "sms_key_secret", "sms_sign_name"]
            if self.sms_provider == "tencent":
                needed.append("sms_sdk_app_id")
            missing = [
                f"CUNZHI_{n.upper()}"
                for n in needed
                if not (v := getattr(self, n))
                or (isinstance(v, SecretStr) and not v.get_secret_value())
            ]
            if missing:
                raise ValueError(
                    f"CUNZHI_SMS_PROVIDER={self.sms_provider} needs {', '.join(missing)}"
                )
        return self

    def address_policy(self) -> AddressPolicy:
        return AddressPolicy(self.webhook_allow.split(","), allow_public=self.webhook_allow_public)


class OwnedChannel(Channel, Protocol):
    """A channel holding connections: closed with the registry."""

    async def aclose(self) -> None: ...


class Channels(Mapping[str, OwnedChannel]):
    """The configured channels by name; ``aclose()`` (or ``contextlib.aclosing``) closes their
    connections."""

    def __init__(self, channels: Mapping[str, OwnedChannel]) -> None:
        self._channels = dict(channels)

    def __getitem__(self, name: str) -> OwnedChannel:
        return self._channels[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._channels)

    def __len__(self) -> int:
        return len(self._channels)

    async def aclose(self) -> None:
        for channel in self._channels.values():
            await channel.aclose()


def build_channels(settings: ChannelSettings) -> Channels:
    channels: dict[str, OwnedChannel] = {
        "wecom": WeComRobot(endpoint=settings.wecom_endpoint, timeout_s=settings.robot_timeout_s),
        "dingtalk": DingTalkRobot(
            endpoint=settings.dingtalk_endpoint, timeout_s=settings.robot_timeout_s
        ),
        "webhook": WebhookChannel(settings.address_policy(), timeout_s=settings.webhook_timeout_s),
    }
    secret = settings.sms_key_secret.get_secret_value()
    if settings.sms_provider == "aliyun":
        channels["sms"] = AliyunSms(
            access_key_id=settings.sms_key_id,
            access_key_secret=secret,
            sign_name=settings.sms_sign_name,
            endpoint=settings.sms_endpoint or aliyun.ENDPOINT,
            region=settings.sms_region or "cn-hangzhou",
            timeout_s=settings.sms_timeout_s,
        )
    elif settings.sms_provider == "tencent":
        channels["sms"] = TencentSms(
            secret_id=settings.sms_key_id,
            secret_key=secret,
            sdk_app_id=settings.sms_sdk_app_id,
            sign_name=settings.sms_sign_name,
            endpoint=settings.sms_endpoint or tencent.ENDPOINT,
            region=settings.sms_region or "ap-guangzhou",
            timeout_s=settings.sms_timeout_s,
        )
    if settings.smtp_host:
        channels["email"] = EmailChannel(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.mail_from,
            username=settings.smtp_username or None,
            password=settings.smtp_password.get_secret_value() or None,
            security=settings.smtp_security,
            timeout_s=settings.smtp_timeout_s,
        )
    return Channels(channels)
