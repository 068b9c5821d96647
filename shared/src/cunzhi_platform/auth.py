"""Bearer-token (JWT) authentication with roles and jurisdiction, for FastAPI.

The ``require_*`` checks raise the domain's ``Forbidden``, so the application layer can use
them too; the platform's error handler answers 403 with the reason and the field.

Claims: ``sub`` (person id), ``name``, ``roles`` (e.g. ``village_secretary``,
``station_head``, ``party_building_office``, ``township_committee``,
``county_organisation_department``, ``party_member``, ``county_department``), and the
jurisdiction the caller may act in: ``county_id``, ``township_ids``, ``station_ids``,
``village_ids``, and for a county department's staff ``department_ids`` (纪委, 信访局…).

Required: ``sub``, ``exp`` and ``aud``; ``iss`` when ``CUNZHI_JWT_ISSUER`` is set. A token that
misses one, or whose claims have the wrong type (``roles`` as a string), is refused with 401
and the reason. A deployment serves one county (``CUNZHI_COUNTY_ID``): when it is set, a token
for another county (or none) is refused with 403 — so the county organisation department of
one county reads only its own.

Start-up refuses an HMAC key shorter than 32 bytes, and the demo key unless PostgreSQL and
Kafka are both on this machine's loopback (as the embedded infrastructure is). In production
the key comes from a Secret (see ``deploy/env.md``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated
from urllib.parse import urlsplit

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, ValidationError

from .aggregate import Forbidden
from .edge import IdPath
from .settings import DEMO_JWT_SECRET, Settings

COUNTY_ORG_DEPT = "county_organisation_department"
COUNTY_DEPARTMENT = "county_department"
"""Staff of another county department (discipline, petitions, economy…): answers for the
departments in ``department_ids``."""


def _someone(sub: str) -> str:
    if not sub.strip():
        raise ValueError("is empty; a token must name the person (sub)")
    return sub


class Principal(BaseModel):
    """Who is calling and where they may act."""

    # Someone, always: the actor of every event, the owner of inbox notices and keys.
    sub: Annotated[str, AfterValidator(_someone)]
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


MIN_HMAC_KEY_BYTES = 32
"""RFC 7518 §3.2: an HMAC key at least as long as the hash (HS256: 32 bytes)."""


class InsecureSettings(Exception):
    """Start-up refused: the token settings would let anyone forge a token."""


def _on_loopback(host: str | None) -> bool:
    if not host or host == "localhost":
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def embedded_infrastructure(settings: Settings) -> bool:
    """PostgreSQL and every Kafka bootstrap server on this machine's loopback."""
    if not settings.database_url or not settings.kafka_bootstrap_servers:
        return False
    hosts = [urlsplit(settings.database_url).hostname]
    for server in settings.kafka_bootstrap_servers.split(","):
        hosts.append(server.strip().rpartition(":")[0].strip("[]"))
    return all(_on_loopback(h) for h in hosts)


def check_token_settings(settings: Settings) -> None:
    """Refuse to start with a key anyone can guess or brute-force."""
    size = len(settings.jwt_secret.encode())
    if settings.jwt_algorithm.startswith("HS") and size < MIN_HMAC_KEY_BYTES:
        raise InsecureSettings(
            f"CUNZHI_JWT_SECRET is {size} bytes; an HMAC key needs at least "
            f"{MIN_HMAC_KEY_BYTES} (e.g. `openssl rand -base64 48`)"
        )
    if settings.jwt_secret == DEMO_JWT_SECRET and not embedded_infrastructure(settings):
        raise InsecureSettings(
            "CUNZHI_JWT_SECRET is the demo key, published in the source: set a secret of your "
            "own (it is accepted only when PostgreSQL and Kafka run on this machine's loopback)"
        )


class InvalidToken(Exception):
    """A token that cannot be trusted or read; the message says why (HTTP 401)."""


class TokenIssuer:
    """Signs tokens; in production an identity provider does this, here the demo and tests."""

    def __init__(
        self,
        secret: str,
        algorithm: str = "HS256",
        audience: str = "cunzhi",
        issuer: str | None = None,
    ) -> None:
        self.secret, self.algorithm, self.audience = secret, algorithm, audience
        self.issuer = issuer

    @classmethod
    def for_settings(cls, settings: Settings) -> TokenIssuer:
        return cls(
            settings.jwt_secret, settings.jwt_algorithm, settings.jwt_audience, settings.jwt_issuer
        )

    def issue(self, principal: Principal, ttl: dt.timedelta = dt.timedelta(hours=8)) -> str:
        claims = principal.model_dump(mode="json")
        now = dt.datetime.now(dt.UTC)
        claims.update(aud=self.audience, iat=now, exp=now + ttl)
        if self.issuer:
            claims["iss"] = self.issuer
        return jwt.encode(claims, self.secret, algorithm=self.algorithm)

    def verify(self, token: str) -> Principal:
        required = ["exp", "sub", "aud", *(["iss"] if self.issuer else [])]
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": required},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        try:
            return Principal.model_validate(claims)
        except ValidationError as exc:
            reasons = "; ".join(
                f"claim {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidToken(reasons) from exc

    def subject(self, authorization: str | None) -> str | None:
        """The ``sub`` of a valid bearer token in an ``Authorization`` header; None otherwise
        (the route's own authentication then answers 401)."""
        scheme, _, credentials = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not credentials:
            return None
        try:
            return self.verify(credentials.strip()).sub
        except InvalidToken:
            return None


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
        principal = issuer.verify(credentials.credentials)
    except InvalidToken as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"invalid token: {exc}",
            headers={"WWW-Authenticate": "Bearer"},
        ) from exc
    county: str | None = request.app.state.settings.county_id
    if county is not None and principal.county_id != county:
        raise Forbidden(
            f"this deployment serves county {county}; your token is for "
            f"{principal.county_id or 'no county'}",
            field="county_id",
        )
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


# Checks that run as dependencies, so they decide before FastAPI validates the body: a caller
# outside their role or jurisdiction learns 403, never what their body lacked (422).


def with_role(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """Dependency: the caller holds one of ``roles``."""

    async def check(principal: CurrentPrincipal) -> Principal:
        principal.require_role(*roles)
        return principal

    return check


def in_township(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """Dependency: the caller holds one of ``roles`` in the path's ``township_id``."""

    async def check(township_id: IdPath, principal: CurrentPrincipal) -> Principal:
        principal.require_role(*roles)
        principal.require_township(township_id)
        return principal

    return check


def in_village(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """Dependency: the caller holds one of ``roles`` for the path's ``village_id``."""

    async def check(village_id: IdPath, principal: CurrentPrincipal) -> Principal:
        principal.require_role(*roles)
        if village_id not in principal.village_ids:
            raise Forbidden(
                f"village {village_id} is outside your jurisdiction", field="village_id"
            )
        return principal

    return check
