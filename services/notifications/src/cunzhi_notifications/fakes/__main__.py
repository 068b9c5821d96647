"""Run every fake provider until Ctrl-C: ``python -m cunzhi_notifications.fakes``.

Prints the ``CUNZHI_…`` settings that point the channels at the fakes (``--json`` prints them
as one JSON object instead, with a ready WeCom robot, DingTalk robot and webhook endpoint), so
that a service, a demo or a benchmark in another process can use them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys

from . import FakeProviders


async def serve(sms: str, as_json: bool, robot_per_minute: int) -> None:
    fakes = FakeProviders()
    fakes.wecom.per_minute = fakes.dingtalk.per_minute = robot_per_minute
    async with fakes:
        settings = fakes.settings(sms="tencent" if sms == "tencent" else "aliyun")
        env = {
            f"CUNZHI_{name.upper()}": value.get_secret_value()
            if hasattr(value, "get_secret_value")
            else str(value)
            for name, value in settings
        }
        webhook, secret = fakes.webhooks.add_endpoint("hooks/demo")
        ready = {
            "aliyun_url": fakes.aliyun.url,
            "tencent_url": fakes.tencent.url,
            "wecom_robot": fakes.wecom.add_robot("demo"),
            "dingtalk_robot": fakes.dingtalk.add_robot("demo", secret="SECdemo"),
            "dingtalk_secret": "SECdemo",
            "webhook_url": webhook,
            "webhook_secret": secret,
        }
        if as_json:
            print(json.dumps({"env": env, **ready}), flush=True)
        else:
            for name, value in env.items():
                print(f"export {name}={json.dumps(value, ensure_ascii=False)}")
            for name, value in ready.items():
                print(f"# {name}: {value}")
            print("# fake providers running; Ctrl-C stops them", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sms", choices=["aliyun", "tencent"], default="aliyun")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--robot-per-minute", type=int, default=20)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.sms, args.json, args.robot_per_minute))
    sys.exit(0)


if __name__ == "__main__":
    main()
