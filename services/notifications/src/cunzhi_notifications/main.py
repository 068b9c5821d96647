"""``cunzhi-notifications``: run the notifications service (API, consumers, sender, reminders)."""

from __future__ import annotations

from cunzhi_platform.runtime import serve

from .service import build_service


def main() -> None:
    serve(build_service(), default_port=8004)


if __name__ == "__main__":
    main()
