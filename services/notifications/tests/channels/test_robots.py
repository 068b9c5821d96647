"""WeCom and DingTalk group robots against the fake robot servers over HTTP."""

from __future__ import annotations

import json

from cunzhi_notifications.channels.base import Outcome
from cunzhi_notifications.channels.robots import DingTalkRobot, WeComRobot
from cunzhi_notifications.fakes import FakeProviders, Fault
from cunzhi_notifications.fakes import sample as message

DIGEST = "### 关帝镇 今日通知\n- 第18期论坛 3月5日召开\n- 2项整改任务即将到期"


def key_of(url: str) -> str:
    return url.rsplit("=", 1)[1]


async def test_wecom_posts_one_markdown_digest(fakes: FakeProviders):
    robot = WeComRobot(endpoint=fakes.wecom.url)
    url = fakes.wecom.add_robot()
    [result] = await robot.send([message(url, subject="关帝镇通知", body=DIGEST)])
    await robot.aclose()
    assert result.outcome is Outcome.SENT
    [body] = fakes.wecom.messages[key_of(url)]
    assert body["msgtype"] == "markdown"
    assert DIGEST in body["markdown"]["content"]


async def test_wecom_bare_key_is_an_address_too(fakes: FakeProviders):
    robot = WeComRobot(endpoint=fakes.wecom.url)
    key = key_of(fakes.wecom.add_robot())
    [result] = await robot.send([message(key)])
    await robot.aclose()
    assert result.outcome is Outcome.SENT and fakes.wecom.messages[key]


async def test_a_robot_address_elsewhere_is_refused_without_a_request(fakes: FakeProviders):
    robot = WeComRobot(endpoint=fakes.wecom.url)
    [result] = await robot.send([message("http://10.0.0.8/cgi-bin/webhook/send?key=abc")])
    await robot.aclose()
    assert result.outcome is Outcome.FAILED and "not a webhook of" in (result.error or "")


async def test_wecom_rate_limit_45009_is_retry_after_a_minute(fakes: FakeProviders):
    robot = WeComRobot(endpoint=fakes.wecom.url)
    fakes.wecom.fail(Fault(code=45009))
    url = fakes.wecom.add_robot()
    [result] = await robot.send([message(url)])
    await robot.aclose()
    assert result.outcome is Outcome.RETRY and result.retry_after_s == 60
    assert "45009" in (result.error or "")


async def test_wecom_removed_robot_is_gone(fakes: FakeProviders):
    robot = WeComRobot(endpoint=fakes.wecom.url)
    [result] = await robot.send([message(f"{fakes.wecom.url}/cgi-bin/webhook/send?key=nope")])
    await robot.aclose()
    assert result.outcome is Outcome.FAILED and result.address_gone
    assert "93000" in (result.error or "")


async def test_wecom_text_over_4096_bytes_fails_before_sending(fakes: FakeProviders):
    robot = WeComRobot(endpoint=fakes.wecom.url)
    url = fakes.wecom.add_robot()
    [result] = await robot.send([message(url, body="通" * 1400)])
    await robot.aclose()
    assert result.outcome is Outcome.FAILED and "4096" in (result.error or "")
    assert not fakes.wecom.messages[key_of(url)]


async def test_dingtalk_signed_robot_accepts_our_signature(fakes: FakeProviders):
    robot = DingTalkRobot(endpoint=fakes.dingtalk.url)
    secret = "SECa1b2c3d4e5f6"
    url = fakes.dingtalk.add_robot(secret=secret)
    [result] = await robot.send([message(url, subject="论坛通知", body=DIGEST, secret=secret)])
    await robot.aclose()
    assert result.outcome is Outcome.SENT
    [body] = fakes.dingtalk.messages[key_of(url)]
    assert body["markdown"] == {"title": "论坛通知", "text": DIGEST}


async def test_dingtalk_wrong_secret_is_refused_by_the_robot(fakes: FakeProviders):
    robot = DingTalkRobot(endpoint=fakes.dingtalk.url)
    url = fakes.dingtalk.add_robot(secret="SECright")
    [result] = await robot.send([message(url, secret="SECwrong")])
    [unsigned] = await robot.send([message(url)])
    await robot.aclose()
    assert result.outcome is Outcome.FAILED and "310000" in (result.error or "")
    assert unsigned.outcome is Outcome.FAILED
    assert not fakes.dingtalk.messages[key_of(url)]


async def test_dingtalk_21st_message_in_a_minute_waits_out_the_10_minute_hold(
    fakes: FakeProviders,
):
    robot = DingTalkRobot(endpoint=fakes.dingtalk.url)
    url = fakes.dingtalk.add_robot()
    results = []
    for _ in range(21):
        results.extend(await robot.send([message(url)]))
    await robot.aclose()
    assert [r.outcome for r in results[:20]] == [Outcome.SENT] * 20
    assert results[20].outcome is Outcome.RETRY and "130101" in (results[20].error or "")
    assert results[20].retry_after_s == 600
    assert len(fakes.dingtalk.messages[key_of(url)]) == 20


async def test_dingtalk_quota_used_up_waits_for_the_next_day(fakes: FakeProviders):
    robot = DingTalkRobot(endpoint=fakes.dingtalk.url)
    fakes.dingtalk.fail(Fault(code=90030))
    [result] = await robot.send([message(fakes.dingtalk.add_robot())])
    await robot.aclose()
    assert result.outcome is Outcome.RETRY
    assert result.retry_after_s is not None and 0 < result.retry_after_s <= 24 * 3600


async def test_robot_answering_html_is_not_a_success(fakes: FakeProviders):
    robot = DingTalkRobot(endpoint=fakes.dingtalk.url)
    url = fakes.dingtalk.add_robot()
    fakes.dingtalk.fail(Fault(body=b"<html>maintenance</html>", status=503))
    fakes.dingtalk.fail(Fault(body=json.dumps({"ok": True}).encode(), status=200))
    [down] = await robot.send([message(url)])
    [odd] = await robot.send([message(url)])
    await robot.aclose()
    assert down.outcome is Outcome.RETRY
    assert odd.outcome is Outcome.UNCLEAR


async def test_robot_timeout_is_unclear(fakes: FakeProviders):
    robot = WeComRobot(endpoint=fakes.wecom.url, timeout_s=0.5)
    url = fakes.wecom.add_robot()
    fakes.wecom.fail(Fault(delay_s=1.5))
    [result] = await robot.send([message(url)])
    await robot.aclose()
    assert result.outcome is Outcome.UNCLEAR
