"""Channels benchmark: deliveries/s from each channel adapter to its fake provider.

    python3 -m uv run python benchmarks/bench_channels.py [--seconds 5] [--concurrency 16]

The fake providers run in their own process (``python -m cunzhi_notifications.fakes``), this
process is the sender. Each figure is printed beside the raw limit of the same fake measured
in the same run: bare requests with the same concurrency (httpx POSTs of a minimal body, or
aiosmtplib sends of a minimal message), without signing, grouping or outcome mapping.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import httpx
from cunzhi_notifications.channels.aliyun import AliyunSms
from cunzhi_notifications.channels.base import Channel, Message, Outcome
from cunzhi_notifications.channels.email import EmailChannel
from cunzhi_notifications.channels.guard import AddressPolicy
from cunzhi_notifications.channels.robots import DingTalkRobot, WeComRobot
from cunzhi_notifications.channels.tencent import TencentSms
from cunzhi_notifications.channels.webhook import WebhookChannel
from cunzhi_notifications.fakes import sample


async def rate(seconds: float, concurrency: int, step: Callable[[], Awaitable[int]]) -> float:
    """Units/s of ``step`` (which returns how many units it did) run by ``concurrency`` workers."""
    done = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            units = await step()  # not `done += await step()`: that reads done before awaiting
            done += units

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.monotonic() - start)


def phones(n: int, offset: int) -> list[str]:
    return [f"139{(offset + i) % 100_000_000:08d}" for i in range(n)]


async def deliveries(
    channel: Channel, make: Callable[[int], list[Message]]
) -> Callable[[], Awaitable[int]]:
    counter = iter(range(0, 10**12, 1000))

    async def step() -> int:
        results = await channel.send(make(next(counter)))
        bad = [r for r in results if r.outcome is not Outcome.SENT]
        if bad:
            raise RuntimeError(f"{channel.name}: {bad[0]}")
        return len(results)

    return step


def raw_post(client: httpx.AsyncClient, url: str, **kw: Any) -> Callable[[], Awaitable[int]]:
    async def step() -> int:
        (await client.post(url, **kw)).raise_for_status()
        return 1

    return step


async def main(seconds: float, concurrency: int) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cunzhi_notifications.fakes",
        "--json",
        "--robot-per-minute",
        str(10**9),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        fakes = json.loads(await proc.stdout.readline())
        env = fakes["env"]
        key, secret = env["CUNZHI_SMS_KEY_ID"], env["CUNZHI_SMS_KEY_SECRET"]
        aliyun = AliyunSms(
            access_key_id=key,
            access_key_secret=secret,
            sign_name="村治通知",
            endpoint=fakes["aliyun_url"],
        )
        tencent = TencentSms(
            secret_id="fake-secret-id",
            secret_key="fake-secret-key",
            sdk_app_id="1400000000",
            sign_name="村治通知",
            endpoint=fakes["tencent_url"],
        )
        wecom = WeComRobot(endpoint=env["CUNZHI_WECOM_ENDPOINT"])
        dingtalk = DingTalkRobot(endpoint=env["CUNZHI_DINGTALK_ENDPOINT"])
        webhook = WebhookChannel(AddressPolicy(["127.0.0.0/8"], allow_public=False))
        email = EmailChannel(
            host="127.0.0.1",
            port=int(env["CUNZHI_SMTP_PORT"]),
            sender="n@county.example",
            security="none",
        )
        sms = {"template_code": "SMS_4810", "template_params": {"1": "第18期"}}
        cases: list[tuple[str, Channel, Callable[[int], list[Message]]]] = [
            (
                "Alibaba SMS, one message a request",
                aliyun,
                lambda o: [sample(phones(1, o)[0], **sms)],
            ),
            (
                "Alibaba SMS, SendBatchSms of 100",
                aliyun,
                lambda o: [sample(p, **sms) for p in phones(100, o)],
            ),
            (
                "Tencent SMS, one message a request",
                tencent,
                lambda o: [sample(phones(1, o)[0], **sms)],
            ),
            (
                "Tencent SMS, SendSms of 200",
                tencent,
                lambda o: [sample(p, **sms) for p in phones(200, o)],
            ),
            ("WeCom robot", wecom, lambda o: [sample(fakes["wecom_robot"])]),
            (
                "DingTalk robot, signed",
                dingtalk,
                lambda o: [sample(fakes["dingtalk_robot"], secret=fakes["dingtalk_secret"])],
            ),
            (
                "webhook, signed, guarded",
                webhook,
                lambda o: [sample(fakes["webhook_url"], body="{}", secret=fakes["webhook_secret"])],
            ),
            (
                "e-mail, 50 a connection",
                email,
                lambda o: [sample(f"u{o + i}@village.example") for i in range(50)],
            ),
        ]
        print(
            f"machine: {os.cpu_count()} cores; fakes in their own process; "
            f"{concurrency} concurrent senders, {seconds:.0f} s each"
        )
        for name, channel, make in cases:
            figure = await rate(seconds, concurrency, await deliveries(channel, make))
            print(f"  {name:<40} {figure:>10,.0f} deliveries/s")
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency)) as client:
            raws = [
                (
                    "raw: httpx POST to the SMS fake",
                    raw_post(client, fakes["aliyun_url"] + "/", data={"Action": "x"}, params={}),
                ),
                (
                    "raw: httpx POST to the robot fake",
                    raw_post(client, fakes["wecom_robot"], json={"msgtype": "text"}),
                ),
                (
                    "raw: httpx POST to the webhook fake",
                    raw_post(client, fakes["webhook_url"], content=b"{}"),
                ),
            ]
            for name, step in raws:
                figure = await rate(seconds, concurrency, _tolerant(step))
                print(f"  {name:<40} {figure:>10,.0f} requests/s")

        async def raw_smtp() -> int:
            mail = EmailMessage()
            mail["From"], mail["To"], mail["Subject"] = "n@county.example", "u@v.example", "x"
            mail.set_content("x")
            async with aiosmtplib.SMTP(
                hostname="127.0.0.1", port=int(env["CUNZHI_SMTP_PORT"]), start_tls=False
            ) as smtp:
                for _ in range(50):
                    await smtp.send_message(mail)
            return 50

        figure = await rate(seconds, concurrency, raw_smtp)
        print(f"  {'raw: aiosmtplib, 50 a connection':<40} {figure:>10,.0f} messages/s")
        for channel in (aliyun, tencent, wecom, dingtalk, webhook, email):
            await channel.aclose()
    finally:
        proc.terminate()
        await proc.wait()


def _tolerant(step: Callable[[], Awaitable[int]]) -> Callable[[], Awaitable[int]]:
    """A refusal is a full round trip too (the SMS fake refuses an unsigned call)."""

    async def run() -> int:
        try:
            return await step()
        except httpx.HTTPStatusError:
            return 1

    return run


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.concurrency))
