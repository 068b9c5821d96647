"""Bearer-token (JWT) authentication with roles and jurisdiction, for FastAPI.

The ``require_*`` checks raise the domain's ``Forbidden``, so the application layer can use
them too; the platform's error handler answers 403 with the reason and the field.

Claims: ``sub`` (person id), ``name``, ``roles`` (e.g. ``village_secretary``,
``station_head``, ``party_building_office``, ``township_committee``,
``county_organisation_department``, ``party_member``, ``county_department``), and the
jurisdiction the caller may act in: ``county_id``, ``township_ids``, ``station_ids``,
``village_ids``, and for a county department's staff ``department_ids`` (纪委, 信访局…).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Annotated

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from .aggregate import Forbidden

COUNTY_ORG_DEPT = "county_organisation_department"
COUNTY_DEPARTMENT = "county_department"
"""Staff of another county department (discipline, petitions, economy…): answers for the
departments in ``department_ids``."""


class Principal(BaseModel):
    """Who is calling and where they may act."""

    sub: str
    name: str = ""
    roles: frozenset[str] = frozenset()
    county_id: str | None = None
    township_ids: frozenset[str] = frozenset()
    station_ids: frozenset[str] = frozenset()
    village_ids: frozenset[str] = frozenset()
    department_ids: frozenset[str] = frozenset()

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles & set(roles))

    @property
    def reads_everything(self) -> bool:
        return COUNTY_ORG_DEPT in self.roles

    def require_role(self, *roles: str) -> None:
        if not self.has_role(*roles):
            raise Forbidden(
                f"this needs the role {' or '.join(sorted(roles))}; "
                f"you have {', '.join(sorted(self.roles)) or 'none'}"
            )

    def require_township(self, township_id: str, *, read: bool = False) -> None:
        """Act in (or, with ``read``, look at) a township; the county reads every township."""
        if read and self.reads_everything:
            return
        if township_id not in self.township_ids:
            raise Forbidden(
                f"township {township_id} is outside your jurisdiction", field="township_id"
            )

    def require_villages(self, village_ids: Iterable[str]) -> None:
        outside = sorted(set(village_ids) - self.village_ids)
        if outside:
            raise Forbidden(
                f"village(s) {', '.join(outside)} outside your jurisdiction", field="village_ids"
            )


class TokenIssuer:
    """Signs tokens; in production an identity provider does this, here the demo and tests."""

    def __init__(self, secret: str, algorithm: str = "HS256", audience: str = "cunzhi") -> None:
        self.secret, self.algorithm, self.audience = secret, algorithm, audience

    def issue(self, principal: Principal, ttl: dt.timedelta = dt.timedelta(hours=8)) -> str:
        claims = principal.model_dump(mode="json")
        now = dt.datetime.now(dt.UTC)
        claims.update(aud=self.audience, iat=now, exp=now + ttl)
        return jwt.encode(claims, self.secret, algorithm=self.algorithm)

    def verify(self, token: str) -> Principal:
        claims = jwt.decode(token, self.secret, algorithms=[self.algorithm], audience=self.audience)
        return Principal.model_validate(claims)


_bearer = HTTPBearer(auto_error=False)
# Dependencies are coroutines on purpose: FastAPI runs plain ``def`` dependencies in a thread
# pool, which cost most of a request's time under load.


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    issuer: TokenIssuer = request.app.state.token_issuer
    try:
        return issuer.verify(credentials.credentials)
    except jwt.PyJWTError as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"invalid token: {exc}",
            headers={"WWW-Authenticate": "Bearer"},
        ) from exc


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
