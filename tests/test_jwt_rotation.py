"""Rotating the JWT secret as the runbook says: new Secret, restart, old tokens refused.

The same service (store, relay, HTTP) is started with one key, then restarted with the next,
as `kubectl rollout restart` does after the Secret changed.
"""

from __future__ import annotations

from cunzhi_platform.auth import CurrentPrincipal
from cunzhi_platform.events import EventRegistry
from cunzhi_platform.runtime import Service
from cunzhi_platform.settings import Settings
from cunzhi_platform.testing import running, token
from fastapi import APIRouter

router = APIRouter()


@router.get("/whoami")
async def whoami(who: CurrentPrincipal) -> dict[str, str]:
    return {"sub": who.sub}


async def test_after_a_restart_with_a_new_secret_only_new_tokens_are_accepted(
    schema: str, settings: Settings
) -> None:
    service = Service(name=schema, registry=EventRegistry(), routers=[router])
    old = settings.model_copy(update={"jwt_secret": "old-key-" + "o" * 40})
    new = settings.model_copy(update={"jwt_secret": "new-key-" + "n" * 40})
    signed_with_old, signed_with_new = token(old, sub="cadre"), token(new, sub="cadre")

    async with running(service, old) as client:
        assert (await client.get("/whoami", headers=signed_with_old)).json() == {"sub": "cadre"}
        assert (await client.get("/whoami", headers=signed_with_new)).status_code == 401

    async with running(service, new) as client:
        refused = await client.get("/whoami", headers=signed_with_old)
        assert refused.status_code == 401
        assert (await client.get("/whoami", headers=signed_with_new)).json() == {"sub": "cadre"}
