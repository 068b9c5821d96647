"""SMS adapters against the fake Alibaba Cloud and Tencent Cloud APIs over HTTP."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
from cunzhi_notifications.channels.aliyun import AliyunSms
from cunzhi_notifications.channels.base import Message, Outcome, SendResult
from cunzhi_notifications.channels.sms import SmsChannel, sms_parts
from cunzhi_notifications.channels.tencent import TencentSms
from cunzhi_notifications.fakes import FakeAliyunSms, FakeProviders, FakeTencentSms, Fault
from cunzhi_notifications.fakes import sample as message
from cunzhi_platform.testing import eventually

PHONES = ["13800000001", "13900000002", "15000000003"]


def aliyun(fake: FakeAliyunSms, **kw: object) -> AliyunSms:
    options: dict[str, object] = {
        "access_key_id": fake.key_id,
        "access_key_secret": fake.key_secret,
        "sign_name": "村治通知",
        "endpoint": fake.url,
        **kw,
    }
    return AliyunSms(**options)  # type: ignore[arg-type]


def tencent(fake: FakeTencentSms, **kw: object) -> TencentSms:
    options: dict[str, object] = {
        "secret_id": fake.key_id,
        "secret_key": fake.key_secret,
        "sdk_app_id": fake.sdk_app_id,
        "sign_name": "村治通知",
        "endpoint": fake.url,
        **kw,
    }
    return TencentSms(**options)  # type: ignore[arg-type]


def notice(phone: str, code: str = "SMS_4810", **params: str) -> object:
    return message(phone, template_code=code, template_params=params or {"forum": "第18期"})


async def until(check: Callable[[], object]) -> None:
    """Until the fake has acted on a request whose answer came too late for the client."""

    async def attempt() -> object:
        return check()

    assert await eventually(attempt, timeout=5, interval=0.02)


async def patient_receipt(
    channel: SmsChannel, m: Message, provider_id: str | None
) -> SendResult | None:
    """A receipt asked with the default time-out (the sending channel's is kept short)."""
    try:
        return await channel.receipt(m, provider_id)
    finally:
        await channel.aclose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- Alibaba Cloud -------------------------------------------------------------------------------


async def test_aliyun_one_message_goes_by_send_sms_with_our_delivery_id(fakes: FakeProviders):
    sms = aliyun(fakes.aliyun)
    m = notice("13800138000", forum="第18期", date="3月5日")
    [result] = await sms.send([m])
    await sms.aclose()
    assert result.outcome is Outcome.SENT and result.provider_id
    [sent] = fakes.aliyun.sent_to("13800138000")
    assert sent.context == m.delivery_id
    assert sent.params == {"forum": "第18期", "date": "3月5日"}
    assert (sent.sign_name, sent.template_code, sent.provider_id) == (
        "村治通知",
        "SMS_4810",
        result.provider_id,
    )


async def test_aliyun_batches_one_template_into_one_request(fakes: FakeProviders):
    sms = aliyun(fakes.aliyun)
    before = fakes.aliyun.requests
    batch = [notice(p, name=f"村{i}") for i, p in enumerate(PHONES)]
    results = await sms.send([*batch, notice("13800000009", code="SMS_9999")])
    await sms.aclose()
    assert [r.outcome for r in results] == [Outcome.SENT] * 4
    assert fakes.aliyun.requests - before == 2  # one SendBatchSms, one SendSms
    assert len({r.provider_id for r in results[:3]}) == 1
    assert [s.params for s in fakes.aliyun.sent[-4:-1]] == [{"name": f"村{i}"} for i in range(3)]
    assert {s.context for s in fakes.aliyun.sent[-4:-1]} == {batch[0].delivery_id}


async def test_aliyun_never_puts_one_number_twice_in_a_request(fakes: FakeProviders):
    sms = aliyun(fakes.aliyun)
    before = fakes.aliyun.requests
    results = await sms.send([notice("13700000001"), notice("13700000001")])
    await sms.aclose()
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
    assert fakes.aliyun.requests - before == 2


async def test_aliyun_throttling_is_retry_with_the_providers_wait(fakes: FakeProviders):
    sms = aliyun(fakes.aliyun)
    fakes.aliyun.fail(Fault(code=FakeAliyunSms.THROTTLED))
    [throttled] = await sms.send([notice("13800000011")])
    [later] = await sms.send([notice("13800000011")])
    await sms.aclose()
    assert throttled.outcome is Outcome.RETRY and throttled.retry_after_s == 60
    assert "isv.BUSINESS_LIMIT_CONTROL" in (throttled.error or "")
    assert later.outcome is Outcome.SENT


async def test_aliyun_bad_number_fails_for_good_with_the_code(fakes: FakeProviders):
    sms = aliyun(fakes.aliyun)
    [result] = await sms.send([notice("12345")])
    await sms.aclose()
    assert result.outcome is Outcome.FAILED
    assert "isv.MOBILE_NUMBER_ILLEGAL" in (result.error or "")


async def test_aliyun_wrong_secret_is_refused_by_signature_and_retried(fakes: FakeProviders):
    sms = aliyun(fakes.aliyun, access_key_secret="not-the-secret")
    [result] = await sms.send([notice("13800000012")])
    await sms.aclose()
    assert result.outcome is Outcome.RETRY
    assert "SignatureDoesNotMatch" in (result.error or "")
    assert not fakes.aliyun.sent_to("13800000012")


async def test_a_notice_without_template_fails_without_a_request(fakes: FakeProviders):
    sms = aliyun(fakes.aliyun)
    before = fakes.aliyun.requests
    [result] = await sms.send([message("13800000013")])
    await sms.aclose()
    assert result.outcome is Outcome.FAILED and "template" in (result.error or "")
    assert fakes.aliyun.requests == before


@pytest.mark.parametrize(
    ("fault", "outcome"),
    [
        (Fault(body=b"<html>502 Bad Gateway</html>", status=502), Outcome.RETRY),
        (Fault(body=b"{not json", status=200), Outcome.UNCLEAR),
        (Fault(body=b'{"Unexpected": true}', status=200), Outcome.UNCLEAR),
    ],
)
async def test_aliyun_garbage(fakes: FakeProviders, fault: Fault, outcome: Outcome):
    sms = aliyun(fakes.aliyun)
    fakes.aliyun.fail(fault)
    [result] = await sms.send([notice("13800000014")])
    await sms.aclose()
    assert result.outcome is outcome
    assert result.error


async def test_aliyun_timeout_after_the_send_is_unclear_and_the_receipt_finds_it(
    fakes: FakeProviders,
):
    sms = aliyun(fakes.aliyun, timeout_s=0.5)
    fakes.aliyun.fail(Fault(delay_s=1.5))  # the provider sends, its answer comes too late
    m = notice("13800000015")
    [result] = await sms.send([m])
    assert result.outcome is Outcome.UNCLEAR and result.provider_id
    await until(lambda: fakes.aliyun.sent_to("13800000015"))
    found = await patient_receipt(aliyun(fakes.aliyun), m, result.provider_id)
    assert found is not None and found.outcome is Outcome.SENT and found.delivered
    await sms.aclose()


async def test_aliyun_receipt_of_a_send_that_never_arrived_says_retry(fakes: FakeProviders):
    sms = aliyun(fakes.aliyun, timeout_s=0.5)
    fakes.aliyun.fail(Fault(delay_s=1.5, status=503))  # late, and nothing was sent
    m = notice("13800000016")
    [result] = await sms.send([m])
    assert result.outcome is Outcome.UNCLEAR
    found = await patient_receipt(aliyun(fakes.aliyun), m, result.provider_id)
    await sms.aclose()
    assert found is not None and found.outcome is Outcome.RETRY


async def test_aliyun_receipt_of_a_batch_member_uses_the_batch_context(fakes: FakeProviders):
    sms = aliyun(fakes.aliyun, timeout_s=0.5)
    fakes.aliyun.fail(Fault(delay_s=1.5))
    batch = [notice(p) for p in ("13600000001", "13600000002")]
    results = await sms.send(batch)
    assert [r.outcome for r in results] == [Outcome.UNCLEAR] * 2
    await until(lambda: fakes.aliyun.sent_to("13600000002"))
    second = await patient_receipt(aliyun(fakes.aliyun), batch[1], results[1].provider_id)
    await sms.aclose()
    assert second is not None and second.outcome is Outcome.SENT


async def test_aliyun_failed_report_is_a_failed_receipt(fakes: FakeProviders):
    sms = aliyun(fakes.aliyun)
    fakes.aliyun.report = "failed"
    try:
        m = notice("13800000017")
        [result] = await sms.send([m])
        found = await sms.receipt(m, result.provider_id)
    finally:
        fakes.aliyun.report = "delivered"
        await sms.aclose()
    assert found is not None and found.outcome is Outcome.FAILED and not found.delivered


async def test_a_provider_that_cannot_be_reached_is_retry():
    sms = AliyunSms(
        access_key_id="k",
        access_key_secret="s",
        sign_name="村治通知",
        endpoint=f"http://127.0.0.1:{free_port()}",
    )
    [result] = await sms.send([notice("13800000018")])
    await sms.aclose()
    assert result.outcome is Outcome.RETRY and "could not be reached" in (result.error or "")


# -- Tencent Cloud -------------------------------------------------------------------------------


async def test_tencent_one_request_for_the_same_text_with_one_status_per_number(
    fakes: FakeProviders,
):
    sms = tencent(fakes.tencent)
    before = fakes.tencent.requests
    batch = [
        message(p, template_code="1110", template_params={"2": "3月5日", "1": "第18期"})
        for p in PHONES
    ]
    results = await sms.send(batch)
    await sms.aclose()
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert fakes.tencent.requests - before == 1
    assert len({r.provider_id for r in results}) == 3
    sent = fakes.tencent.sent_to(PHONES[2])[-1]
    assert sent.phone == "+86" + PHONES[2]
    assert sent.params == ["第18期", "3月5日"]
    assert sent.context == batch[0].delivery_id


async def test_tencent_different_parameters_go_in_different_requests(fakes: FakeProviders):
    sms = tencent(fakes.tencent)
    before = fakes.tencent.requests
    results = await sms.send(
        [message(p, template_code="1110", template_params={"1": p}) for p in PHONES[:2]]
    )
    await sms.aclose()
    assert [r.outcome for r in results] == [Outcome.SENT] * 2
    assert fakes.tencent.requests - before == 2


async def test_tencent_daily_limit_waits_until_midnight(fakes: FakeProviders):
    sms = tencent(fakes.tencent)
    fakes.tencent.fail(Fault(code=FakeTencentSms.THROTTLED))
    [result] = await sms.send([notice("13800000021", code="1110")])
    await sms.aclose()
    assert result.outcome is Outcome.RETRY
    assert "LimitExceeded.PhoneNumberDailyLimit" in (result.error or "")
    assert result.retry_after_s is not None and 0 < result.retry_after_s <= 24 * 3600


async def test_tencent_one_bad_number_fails_alone(fakes: FakeProviders):
    sms = tencent(fakes.tencent)
    results = await sms.send([notice("13800000022", code="1110"), notice("999", code="1110")])
    await sms.aclose()
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.FAILED]
    assert "IncorrectPhoneNumber" in (results[1].error or "")


async def test_tencent_wrong_key_is_an_auth_failure_and_retried(fakes: FakeProviders):
    sms = tencent(fakes.tencent, secret_key="wrong")
    [result] = await sms.send([notice("13800000023", code="1110")])
    await sms.aclose()
    assert result.outcome is Outcome.RETRY
    assert "AuthFailure.SignatureFailure" in (result.error or "")


async def test_tencent_internal_timeout_is_unclear(fakes: FakeProviders):
    sms = tencent(fakes.tencent)
    fakes.tencent.fail(Fault(code="InternalError.Timeout"))
    [result] = await sms.send([notice("13800000024", code="1110")])
    await sms.aclose()
    assert result.outcome is Outcome.UNCLEAR and (result.provider_id or "").startswith("ctx:")


async def test_tencent_timeout_then_the_receipt_finds_the_send_by_its_context(
    fakes: FakeProviders,
):
    sms = tencent(fakes.tencent, timeout_s=0.5)
    fakes.tencent.fail(Fault(delay_s=1.5))
    m = notice("13800000025", code="1110")
    [result] = await sms.send([m])
    assert result.outcome is Outcome.UNCLEAR
    await until(lambda: fakes.tencent.sent_to("13800000025"))
    found = await patient_receipt(tencent(fakes.tencent), m, result.provider_id)
    await sms.aclose()
    assert found is not None and found.outcome is Outcome.SENT and found.delivered


async def test_tencent_without_a_status_report_the_receipt_cannot_tell(fakes: FakeProviders):
    sms = tencent(fakes.tencent)
    fakes.tencent.report = None
    try:
        m = notice("13800000026", code="1110")
        [result] = await sms.send([m])
        found = await sms.receipt(m, result.provider_id)
    finally:
        fakes.tencent.report = "delivered"
        await sms.aclose()
    assert result.outcome is Outcome.SENT
    assert found is None


async def test_tencent_garbage_after_200_is_unclear(fakes: FakeProviders):
    sms = tencent(fakes.tencent)
    fakes.tencent.fail(Fault(body=b"\x00\x01garbage", status=200))
    [result] = await sms.send([notice("13800000027", code="1110")])
    await sms.aclose()
    assert result.outcome is Outcome.UNCLEAR


async def test_tencent_named_parameters_keep_the_order_given(fakes: FakeProviders):
    sms = tencent(fakes.tencent)
    m = message(
        "13800000028",
        template_code="1110",
        template_params={"forum": "第18期", "date": "3月5日", "place": "镇政府"},
    )
    [result] = await sms.send([m])
    await sms.aclose()
    assert result.outcome is Outcome.SENT
    assert fakes.tencent.sent_to("13800000028")[-1].params == ["第18期", "3月5日", "镇政府"]


def test_sms_parts_counts_the_signature_and_67_characters_a_part():
    assert sms_parts("通" * 64, "村治通知") == 1  # 64 + 【村治通知】 = 70
    assert sms_parts("通" * 65, "村治通知") == 2
    assert sms_parts("通" * 128, "村治通知") == 2  # 134 = 2 × 67
    assert sms_parts("通" * 129, "村治通知") == 3


def test_a_message_repr_shows_neither_the_address_nor_the_secret():
    m = message("13812345678", secret="SECtop")
    assert "13812345678" not in repr(m) and "SECtop" not in repr(m)
