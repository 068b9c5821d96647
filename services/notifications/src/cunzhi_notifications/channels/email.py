"""E-mail (电子邮件) through the county's SMTP relay, with aiosmtplib.

One connection per ``send`` call, reused for its messages. ``Message-ID`` is made from our
delivery id, so a message sent twice after an unclear answer is one message to mail clients
and to the relay's duplicate filter. Replies: 4xx RETRY, 5xx FAILED (RFC 5321: transient vs
permanent); a connection that cannot be made RETRY; one lost in the middle of a message
UNCLEAR (the relay may have taken it), and the next message gets a fresh connection.
"""

from __future__ import annotations

import email.utils
from collections.abc import Sequence
from email.message import EmailMessage

import aiosmtplib
from cunzhi_platform.clock import Clock, SystemClock

from .base import Message, Outcome, SendResult

PROVIDER = "SMTP relay"


def message_id(delivery_id: str, domain: str) -> str:
    return f"<{delivery_id}@{domain}>"


def outcome_of_reply(code: int, text: str, what: str) -> SendResult:
    outcome = Outcome.RETRY if 400 <= code < 500 else Outcome.FAILED
    return SendResult(outcome, error=f"{PROVIDER} refused the {what}: {code} {text}".strip())


class EmailChannel:
    name = "email"
    max_batch = 50
    at_most_once = False  # a resend keeps its Message-ID, which mail clients fold

    def __init__(
        self,
        *,
        host: str,
        port: int = 25,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        security: str = "starttls",
        timeout_s: float = 10.0,
        validate_certs: bool = True,
        clock: Clock | None = None,
    ) -> None:
        if security not in ("none", "starttls", "tls"):
            raise ValueError(f"e-mail security must be none, starttls or tls, not {security!r}")
        self.host, self.port, self.sender = host, port, sender
        self.domain = email.utils.parseaddr(sender)[1].rpartition("@")[2] or "cunzhi.invalid"
        self.clock = clock or SystemClock()
        self._username, self._password = username, password
        self._security = security
        self._timeout_s = timeout_s
        self._validate_certs = validate_certs

    def _client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self._username,
            password=self._password,
            use_tls=self._security == "tls",
            start_tls=self._security == "starttls",
            timeout=self._timeout_s,
            validate_certs=self._validate_certs,
        )

    async def aclose(self) -> None:
        return None  # connections live only within one send call

    def compose(self, message: Message) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.address
        # A header is one line: a title with a line break made every try fail for good.
        mail["Subject"] = " ".join(message.subject.split())
        mail["Message-ID"] = message_id(message.delivery_id, self.domain)
        mail["Date"] = email.utils.format_datetime(self.clock.now())
        for name, value in message.headers.items():
            mail[name] = value
        mail.set_content(message.body)
        return mail

    async def send(self, messages: Sequence[Message]) -> list[SendResult]:
        results: list[SendResult] = []
        smtp: aiosmtplib.SMTP | None = None
        try:
            for message in messages:
                if not _plausible(message.address):
                    results.append(SendResult(Outcome.FAILED, error="not an e-mail address"))
                    continue
                if smtp is None:
                    smtp = self._client()
                    try:
                        await smtp.connect()
                    except (aiosmtplib.SMTPException, OSError) as exc:
                        failure = SendResult(
                            Outcome.RETRY, error=f"{PROVIDER} could not be reached ({exc})"
                        )
                        results.extend([failure] * (len(messages) - len(results)))
                        smtp = None
                        break
                result, usable = await self._send_one(smtp, message)
                results.append(result)
                if not usable:
                    smtp.close()
                    smtp = None
        finally:
            if smtp is not None:
                await _quietly_quit(smtp)
        return results

    async def receipt(self, message: Message, provider_id: str | None) -> SendResult | None:
        return None  # SMTP has no way to ask a relay what it did with a message

    async def _send_one(self, smtp: aiosmtplib.SMTP, message: Message) -> tuple[SendResult, bool]:
        """The result, and whether the connection can carry the next message."""
        try:
            mail = self.compose(message)
        except ValueError as exc:  # a header the e-mail package refuses (line breaks…)
            return SendResult(Outcome.FAILED, error=f"the message cannot be composed: {exc}"), True
        try:
            await smtp.send_message(mail)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            first = exc.recipients[0]
            return outcome_of_reply(first.code, first.message, "recipient"), await _reset(smtp)
        except aiosmtplib.SMTPSenderRefused as exc:
            return outcome_of_reply(exc.code, exc.message, "sender"), await _reset(smtp)
        except aiosmtplib.SMTPDataError as exc:
            return outcome_of_reply(exc.code, exc.message, "message"), await _reset(smtp)
        except (aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected, OSError) as exc:
            return SendResult(
                Outcome.UNCLEAR,
                error=f"{PROVIDER} connection lost while sending ({type(exc).__name__}: {exc}); "
                "the relay may have taken it",
            ), False
        except aiosmtplib.SMTPResponseException as exc:
            return outcome_of_reply(exc.code, exc.message, "message"), await _reset(smtp)
        return SendResult(Outcome.SENT, provider_id=mail["Message-ID"]), True


def _plausible(address: str) -> bool:
    name, parsed = email.utils.parseaddr(address)
    return bool(parsed) and "@" in parsed and not name and parsed == address.strip()


async def _reset(smtp: aiosmtplib.SMTP) -> bool:
    try:
        await smtp.rset()
    except (aiosmtplib.SMTPException, OSError):
        return False
    return True


async def _quietly_quit(smtp: aiosmtplib.SMTP) -> None:
    try:
        await smtp.quit()
    except (aiosmtplib.SMTPException, OSError):
        smtp.close()
