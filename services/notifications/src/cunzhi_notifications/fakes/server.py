"""A fake provider: a real HTTP server on 127.0.0.1 (Starlette on uvicorn, a free port).

Each fake answers like its provider and keeps what it received for a test to inspect.
Failures are injected per request: ``fail(Fault(...), times=n)`` queues what the next requests
meet instead of the normal answer (an error code, an HTTP status, garbage, a delay for a
client time-out, with or without the provider having acted on the request).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

STARTUP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Fault:
    """What one request meets instead of the normal answer."""

    code: str | int | None = None
    """The provider's error code (``isv.BUSINESS_LIMIT_CONTROL``, ``45009``…), in its format."""
    status: int | None = None
    """An HTTP status (or an SMTP reply code for the SMTP fake) instead of the normal one."""
    body: bytes | None = None
    """A raw body instead of the provider's answer (garbage)."""
    delay_s: float = 0.0
    """Wait this long before answering (longer than the client's time-out: no answer)."""
    accept: bool = False
    """Act on the request (record the send) before answering with the fault: lost answers."""
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def replaces_answer(self) -> bool:
        return self.code is not None or self.status is not None or self.body is not None


class _Server(uvicorn.Server):
    """Several servers share a process: signals are the process's to handle, not uvicorn's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Running:
    """``async with fake`` starts it and stops it; or ``await start()`` and ``await stop()``."""

    async def start(self) -> Self:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class Faulty(Running):
    """A fake whose requests can meet injected faults (``fail``, ``fail_always``, ``heal``)."""

    def __init__(self) -> None:
        self._faults: deque[Fault] = deque()
        self._always: Fault | None = None

    def fail(self, fault: Fault, times: int = 1) -> None:
        """The next ``times`` requests meet ``fault``."""
        self._faults.extend([fault] * times)

    def fail_always(self, fault: Fault) -> None:
        """Every request meets ``fault`` until ``heal()``: a provider down for a while."""
        self._always = fault

    def heal(self) -> None:
        self._faults.clear()
        self._always = None

    def next_fault(self) -> Fault | None:
        if self._faults:
            return self._faults.popleft()
        return self._always


class FakeServer(Faulty):
    """Start with ``async with Fake() as fake`` (or ``await fake.start()``); ``fake.url``."""

    def __init__(self) -> None:
        super().__init__()
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.url = ""

    def routes(self) -> list[Route]:
        raise NotImplementedError

    async def answer(
        self,
        fault: Fault | None,
        normal: Callable[[], Awaitable[Response]],
        refusal: Callable[[Fault], Response],
    ) -> Response:
        """The normal answer, or what ``fault`` says (``refusal`` renders a provider code)."""
        if fault is None:
            return await normal()
        if fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if not fault.replaces_answer:
            return await normal()  # only late
        if fault.accept:
            await normal()
        if fault.body is not None:
            return Response(fault.body, status_code=fault.status or 200, headers=fault.headers)
        if fault.code is not None:
            return refusal(fault)
        return Response(b"", status_code=fault.status or 500, headers=fault.headers)

    # -- running --------------------------------------------------------------------------------

    async def start(self) -> Self:
        app = Starlette(routes=self.routes())
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            app, lifespan="off", log_config=None, access_log=False, timeout_graceful_shutdown=1
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(
            self._server.serve(sockets=[sock]), name=type(self).__name__
        )
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            while not self._server.started:
                if self._task.done():
                    self._task.result()
                    raise RuntimeError(f"{type(self).__name__} did not start")
                await asyncio.sleep(0.01)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = self._task = None


async def form_or_query(request: Request) -> dict[str, str]:
    """Parameters of an RPC-style call, whether sent as a form body or in the query string."""
    params = dict(request.query_params)
    if request.method == "POST":
        body = (await request.body()).decode("utf-8", "replace")
        params.update(urllib.parse.parse_qsl(body, keep_blank_values=True))
    return params
