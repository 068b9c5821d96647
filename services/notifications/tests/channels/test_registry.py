"""Channels built from settings, and every channel through the fake providers at once."""

from __future__ import annotations

import contextlib

import pytest
from cunzhi_notifications.channels.aliyun import AliyunSms
from cunzhi_notifications.channels.base import Outcome
from cunzhi_notifications.channels.registry import ChannelSettings, build_channels
from cunzhi_notifications.channels.tencent import TencentSms
from cunzhi_notifications.fakes import FakeProviders
from cunzhi_notifications.fakes import sample as message
from pydantic import ValidationError


async def test_environment_builds_the_configured_channels(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CUNZHI_SMS_PROVIDER", "tencent")
    monkeypatch.setenv("CUNZHI_SMS_KEY_ID", "AKIDexample")
    monkeypatch.setenv("CUNZHI_SMS_KEY_SECRET", "very-secret-key")
    monkeypatch.setenv("CUNZHI_SMS_SIGN_NAME", "某县委组织部")
    monkeypatch.setenv("CUNZHI_SMS_SDK_APP_ID", "1400006666")
    monkeypatch.setenv("CUNZHI_WEBHOOK_ALLOW", "10.20.0.0/16, oa.county.internal")
    settings = ChannelSettings()
    async with contextlib.aclosing(build_channels(settings)) as channels:
        assert set(channels) == {"sms", "wecom", "dingtalk", "webhook"}
        assert isinstance(channels["sms"], TencentSms)
    assert "very-secret-key" not in repr(settings)
    policy = settings.address_policy()
    assert "oa.county.internal" in policy.hosts and len(policy.networks) == 1


def test_an_sms_provider_without_its_keys_names_the_missing_settings(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("CUNZHI_SMS_PROVIDER", "aliyun")
    monkeypatch.setenv("CUNZHI_SMS_KEY_ID", "LTAIexample")
    with pytest.raises(ValidationError, match="CUNZHI_SMS_KEY_SECRET, CUNZHI_SMS_SIGN_NAME"):
        ChannelSettings()


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "http://oa.county", "two words"])
def test_a_malformed_allow_list_entry_fails_start_up(monkeypatch: pytest.MonkeyPatch, entry: str):
    monkeypatch.setenv("CUNZHI_WEBHOOK_ALLOW", f"10.20.0.0/16,{entry}")
    with pytest.raises(ValidationError, match="CUNZHI_WEBHOOK_ALLOW"):
        ChannelSettings()


def test_timeouts_have_a_plausible_range(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CUNZHI_WEBHOOK_TIMEOUT_S", "0")
    with pytest.raises(ValidationError, match="CUNZHI_WEBHOOK_TIMEOUT_S"):
        ChannelSettings()


async def test_every_channel_delivers_through_the_fakes(fakes: FakeProviders):
    wecom = fakes.wecom.add_robot()
    dingtalk = fakes.dingtalk.add_robot(secret="SECtownship")
    hook, secret = fakes.webhooks.add_endpoint()
    async with contextlib.aclosing(build_channels(fakes.settings(sms="aliyun"))) as channels:
        assert isinstance(channels["sms"], AliyunSms)
        sent = {
            "sms": await channels["sms"].send(
                [message("13800000031", template_code="SMS_4810", template_params={"n": "1"})]
            ),
            "wecom": await channels["wecom"].send([message(wecom)]),
            "dingtalk": await channels["dingtalk"].send([message(dingtalk, secret="SECtownship")]),
            "email": await channels["email"].send([message("li@village.example")]),
            "webhook": await channels["webhook"].send([message(hook, body="{}", secret=secret)]),
        }
    assert {name: [r.outcome for r in results] for name, results in sent.items()} == {
        name: [Outcome.SENT] for name in sent
    }
    assert fakes.aliyun.sent_to("13800000031") and fakes.smtp.to("li@village.example")
    assert fakes.webhooks.for_path(hook)[0].verified
    summary = "\n".join(fakes.summary())
    assert "138****0031" in summary and "13800000031" not in summary
