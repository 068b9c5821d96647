"""``cunzhi-notifications``: run the notifications service (API, consumers, sender, reminders).

The channels come from the environment (``CUNZHI_SMS_PROVIDER``, ``CUNZHI_SMTP_HOST``…, see
CHANNELS.md); the in-app inbox and the group robots and webhooks are always there.
"""

from __future__ import annotations

from cunzhi_platform.runtime import serve

from .channels.registry import ChannelSettings, build_channels
from .service import build_service


def main() -> None:
    serve(build_service(build_channels(ChannelSettings())), default_port=8004)


if __name__ == "__main__":
    main()
