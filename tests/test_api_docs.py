"""The API docs of every service work on an intranet without internet: ``/docs`` (Swagger UI)
and ``/redoc`` load every script, style and icon from the service itself."""

from __future__ import annotations

import re

import httpx
import pytest
from cunzhi_platform.runtime import create_app
from cunzhi_platform.settings import Settings

from cunzhi_cli.services import RUNNABLE

CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


@pytest.mark.parametrize("name", sorted(RUNNABLE))
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_api_docs_load_only_what_the_service_serves(name: str, page: str) -> None:
    # Nothing is started: the docs pages need no database or broker.
    app = create_app(RUNNABLE[name](), Settings(jwt_secret="x" * 32))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://cunzhi.county") as client:
        html = (await client.get(page)).raise_for_status().text
        assert "//" not in re.sub(r"window\.location\.origin|<!--.*?-->", "", html, flags=re.S)
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert any(a.endswith(".js") for a in assets), html
        for asset in assets:
            assert asset.startswith("/"), asset
            response = await client.get(asset)
            assert response.status_code == 200, asset
            suffix = asset[asset.rindex(".") :]
            assert CONTENT_TYPES[suffix] in response.headers["content-type"], asset
        spec = re.search(r"""(?:url|spec-url)[:=] ?['"]([^'"]+)""", html)
        assert spec and spec.group(1) == "/openapi.json", html
        assert (await client.get(spec.group(1))).json()["info"]["title"] == f"cunzhi {name}"
