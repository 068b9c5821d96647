"""E-mail through aiosmtplib to a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import socket

from cunzhi_notifications.channels.base import Outcome
from cunzhi_notifications.channels.email import EmailChannel
from cunzhi_notifications.fakes import FakeProviders, Fault
from cunzhi_notifications.fakes import sample as message


def channel(fakes: FakeProviders, **kw: object) -> EmailChannel:
    options: dict[str, object] = {
        "host": fakes.smtp.host,
        "port": fakes.smtp.port,
        "sender": "村治通知 <notices@county.example>",
        "security": "none",
        **kw,
    }
    return EmailChannel(**options)  # type: ignore[arg-type]


async def test_messages_arrive_with_a_message_id_from_the_delivery_id(fakes: FakeProviders):
    email = channel(fakes)
    first = message("li@village.example", subject="第18期论坛通知")
    second = message("wang@village.example")
    results = await email.send([first, second])
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.SENT]
    [mail] = fakes.smtp.to("li@village.example")
    assert mail["Message-ID"] == f"<{first.delivery_id}@county.example>"
    assert mail["Subject"] == "第18期论坛通知"
    assert "请准备发言" in mail.get_content()
    assert results[0].provider_id == mail["Message-ID"]


async def test_a_title_with_line_breaks_is_sent_on_one_subject_line(fakes: FakeProviders):
    """A topic's title is a person's text: a line break in the Subject header made the e-mail
    package refuse the message, and every try failed for good."""
    email = channel(fakes)
    title = message("qian@village.example", subject="议题进展：村东路灯\r\n不亮\n\u2028请关注")
    [result] = await email.send([title])
    assert result.outcome is Outcome.SENT, result.error
    [mail] = fakes.smtp.to("qian@village.example")
    assert mail["Subject"] == "议题进展：村东路灯 不亮 请关注"


async def test_4xx_is_retry_and_5xx_is_failed(fakes: FakeProviders):
    email = channel(fakes)
    fakes.smtp.refuse["full@village.example"] = "452 4.2.2 mailbox full"
    fakes.smtp.refuse["nobody@village.example"] = "550 5.1.1 no such user"
    fakes.smtp.fail(Fault(status=451))
    results = await email.send(
        [
            message("full@village.example"),
            message("nobody@village.example"),
            message("zhao@village.example"),  # meets the injected 451 at DATA
            message("qian@village.example"),  # the connection carries on after refusals
        ]
    )
    assert [r.outcome for r in results] == [
        Outcome.RETRY,
        Outcome.FAILED,
        Outcome.RETRY,
        Outcome.SENT,
    ]
    assert "452" in (results[0].error or "") and "550" in (results[1].error or "")
    assert not fakes.smtp.to("zhao@village.example")


async def test_a_refused_message_at_data_with_5xx_fails(fakes: FakeProviders):
    email = channel(fakes)
    fakes.smtp.fail(Fault(status=554))
    [result] = await email.send([message("sun@village.example")])
    assert result.outcome is Outcome.FAILED and "554" in (result.error or "")


async def test_timeout_during_data_is_unclear_and_the_next_gets_a_new_connection(
    fakes: FakeProviders,
):
    email = channel(fakes, timeout_s=1.0)
    fakes.smtp.fail(Fault(delay_s=2.5))
    results = await email.send([message("zhou@village.example"), message("wu@village.example")])
    assert [r.outcome for r in results] == [Outcome.UNCLEAR, Outcome.SENT]
    assert fakes.smtp.to("wu@village.example")


async def test_not_an_address_fails_without_smtp(fakes: FakeProviders):
    email = channel(fakes)
    results = await email.send(
        [message("not an address"), message("a@b.example\r\nBcc: x@evil.example")]
    )
    assert [r.outcome for r in results] == [Outcome.FAILED, Outcome.FAILED]


async def test_an_unreachable_relay_is_retry_for_every_message():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    email = EmailChannel(host="127.0.0.1", port=port, sender="n@county.example", security="none")
    results = await email.send([message("a@village.example"), message("b@village.example")])
    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.RETRY]


async def test_a_relay_failing_for_a_while_then_recovering(fakes: FakeProviders):
    email = channel(fakes)
    fakes.smtp.fail_always(Fault(status=421))
    down = await email.send([message("he@village.example"), message("lv@village.example")])
    fakes.smtp.heal()
    [up] = await email.send([message("he@village.example")])
    assert [r.outcome for r in down] == [Outcome.RETRY, Outcome.RETRY]
    assert up.outcome is Outcome.SENT and len(fakes.smtp.to("he@village.example")) == 1
