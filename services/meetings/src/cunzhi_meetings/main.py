"""``cunzhi-meetings``: run the meetings service (HTTP API, consumers, relay, notice timer)."""

from __future__ import annotations

from cunzhi_platform.runtime import serve

from .service import build_service


def main() -> None:
    serve(build_service(), default_port=8002)


if __name__ == "__main__":
    main()
