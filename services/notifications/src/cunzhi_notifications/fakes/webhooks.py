"""A fake subscriber of outbound webhooks: any path, signatures checked per Standard Webhooks.

``add_endpoint()`` makes an endpoint with its own ``whsec_`` secret and returns its URL and
secret. ``fake.received`` lists every delivery with whether its signature verified. Answers
are 204 unless a fault says otherwise (``Fault(status=410)``, ``Fault(status=429,
headers={"retry-after": "30"})``…); ``gone`` paths answer 410 for good.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from standardwebhooks.webhooks import Webhook
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .server import FakeServer, Fault

TOLERANCE_S = 300
"""The specification's suggested window for webhook-timestamp."""


@dataclass
class Delivery:
    path: str
    webhook_id: str
    timestamp: str
    signature: str
    body: str
    verified: bool
    """The v1 signature matches the endpoint's secret and the timestamp is within 5 minutes."""


class FakeWebhookReceiver(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[str, str] = {}
        self.received: list[Delivery] = []
        self.gone: set[str] = set()

    def routes(self) -> list[Route]:
        return [Route("/{path:path}", self.handle, methods=["POST"])]

    def add_endpoint(self, path: str | None = None) -> tuple[str, str]:
        """A new endpoint: its URL and its secret."""
        path = "/" + (path or f"hooks/{secrets.token_hex(6)}").lstrip("/")
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        self.secrets[path] = secret
        return self.url + path, secret

    def for_path(self, url_or_path: str) -> list[Delivery]:
        path = "/" + url_or_path.removeprefix(self.url).lstrip("/")
        return [d for d in self.received if d.path == path]

    async def handle(self, request: Request) -> Response:
        path = request.url.path
        body = (await request.body()).decode("utf-8", "replace")
        headers = request.headers
        delivery = Delivery(
            path,
            headers.get("webhook-id", ""),
            headers.get("webhook-timestamp", ""),
            headers.get("webhook-signature", ""),
            body,
            self._verified(path, body, headers),
        )
        if path in self.gone:
            return Response(status_code=410)
        if path not in self.secrets:
            return Response(status_code=404)

        async def normal() -> Response:
            self.received.append(delivery)
            return Response(status_code=204)

        def refusal(fault: Fault) -> Response:
            return Response(status_code=fault.status or 500, headers=fault.headers)

        return await self.answer(self.next_fault(), normal, refusal)

    def _verified(self, path: str, body: str, headers: Mapping[str, str]) -> bool:
        secret = self.secrets.get(path)
        stamp = headers.get("webhook-timestamp", "")
        msg_id = headers.get("webhook-id", "")
        if secret is None or not stamp.isdigit() or not msg_id:
            return False
        if abs(time.time() - int(stamp)) > TOLERANCE_S:
            return False
        expected = Webhook(secret).sign(msg_id, dt.datetime.fromtimestamp(int(stamp), dt.UTC), body)
        return any(
            hmac.compare_digest(expected, given)
            for given in headers.get("webhook-signature", "").split()
        )
