"""``cunzhi-rectification``: run the rectification service (HTTP API, consumers, relay, timers)."""

from __future__ import annotations

from cunzhi_platform.runtime import serve

from .service import build_service


def main() -> None:
    serve(build_service(), default_port=8003)


if __name__ == "__main__":
    main()
