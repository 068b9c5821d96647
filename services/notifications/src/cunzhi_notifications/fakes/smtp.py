"""A real SMTP server on loopback (aiosmtpd) that keeps what it accepts.

``fake.messages`` lists the accepted e-mails (parsed); ``fake.refuse[address] = "550 5.1.1 …"``
makes it refuse a recipient; ``fail(Fault(status=451))`` makes the next DATA get that reply
(``delay_s`` for a client time-out, ``accept`` to keep the message all the same).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from email.message import EmailMessage
from typing import Any, Self

from aiosmtpd.smtp import SMTP, Envelope, Session

from .server import Faulty

REPLIES = {
    421: "421 4.3.0 try again later",
    451: "451 4.3.0 local error, try again later",
    452: "452 4.3.1 insufficient storage",
    550: "550 5.7.1 message refused",
    552: "552 5.3.4 message too big",
    554: "554 5.6.0 transaction failed",
}


class FakeSmtpServer(Faulty):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[EmailMessage] = []
        self.refuse: dict[str, str] = {}
        self._server: asyncio.Server | None = None
        self.host, self.port = "127.0.0.1", 0

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]

    # aiosmtpd handler hooks

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault = self.next_fault()
        if fault is not None and fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if fault is None or fault.status is None or fault.accept:
            raw = envelope.original_content or envelope.content or b""
            data = raw if isinstance(raw, bytes) else raw.encode()
            message = email.message_from_bytes(data, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            self.messages.append(message)
        if fault is not None and fault.status is not None:
            return REPLIES.get(fault.status, f"{fault.status} injected")
        return "250 2.0.0 Message accepted for delivery"

    async def start(self) -> Self:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="fake-smtp.cunzhi.invalid"), self.host, 0
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
