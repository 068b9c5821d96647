"""HTTP API: the directory, preferences, the inbox (with a live stream), deliveries, templates.

Roles (JWT ``roles``): a person reads and manages only their own inbox and preferences; the
township's party-building office (党建办) manages its township's people and groups and sees its
deliveries; the county organisation department reads every township; ``notifications_admin``
(ours: the county IT operators) manages everything, templates and webhook endpoints included,
and is the only role besides the person who sees phone numbers and e-mail addresses whole.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import asyncpg
import httpcore
from cunzhi_platform import csvfile, edge
from cunzhi_platform.aggregate import DomainError, Forbidden, NotFound
from cunzhi_platform.auth import CurrentPrincipal, Principal, with_role
from cunzhi_platform.clock import SHANGHAI
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.eventstore import StreamWrite
from cunzhi_platform.runtime import Runtime, runtime
from fastapi import Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from ..channels.guard import ForbiddenAddress
from ..channels.robots import Robot
from ..channels.webhook import WebhookChannel
from ..domain import grants
from ..domain.kinds import CHANNELS, KINDS, PERSON_CHANNELS, kind
from ..domain.privacy import mask_email, mask_phone, mask_url
from ..domain.routing import Preference, check_preference
from ..domain.templates import Template, check, default, render, sample
from ..events import NotificationRead, registry
from . import roles, webhooks

ADMIN = "notifications_admin"
OFFICE = "party_building_office"
Rt = Annotated[Runtime, Depends(runtime)]
router = edge.router()

PHONE = re.compile(r"^1[3-9][0-9]{9}$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_NOT_IN_URL = "\\x00-\\x20\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
"""Controls (NUL cannot be stored) and Unicode's white space, spelled out: regex dialects
disagree on what ``\\s`` holds (the fuzz's ECMA pattern took U+0085 as part of a URL, the
server's did not)."""
Id = edge.Id
IdPath = edge.IdPath
_ID_ADAPTER: TypeAdapter[str] = TypeAdapter(Id)
Name = Annotated[str, edge.TextRules(50)]
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})$")


def _rfc3339(value: object) -> object:
    """Only the written form pages hand back (pydantic would also take a number of seconds)."""
    if isinstance(value, str) and not RFC3339.match(value):
        raise ValueError("must be an RFC 3339 time with its offset, e.g. 2026-10-27T09:00:00+08:00")
    return value


Before = Annotated[
    dt.datetime | None,
    BeforeValidator(_rfc3339),
    Query(description="RFC 3339 with offset: the last time of the previous page"),
]


def _one_of(values: tuple[str, ...]) -> AfterValidator:
    def check(value: str) -> str:
        if value not in values:
            raise ValueError(f"{value!r} is not one of {', '.join(values)}")
        return value

    return AfterValidator(check)


KIND_CODES = tuple(KINDS)
TEMPLATE_KINDS = (*KINDS, "digest")
TEMPLATE_CHANNELS = tuple(c for c in CHANNELS if c != "webhook")
KindPath = Annotated[str, Path(json_schema_extra={"enum": list(KIND_CODES)}), _one_of(KIND_CODES)]
ChannelPath = Annotated[
    str,
    Path(json_schema_extra={"enum": list(PERSON_CHANNELS)}, description="a person's channel"),
    _one_of(PERSON_CHANNELS),
]
TemplateKindPath = Annotated[
    str,
    Path(json_schema_extra={"enum": list(TEMPLATE_KINDS)}, description="a kind, or the digest"),
    _one_of(TEMPLATE_KINDS),
]
TemplateChannelPath = Annotated[
    str,
    Path(json_schema_extra={"enum": list(TEMPLATE_CHANNELS)}, description="webhooks send JSON"),
    _one_of(TEMPLATE_CHANNELS),
]
# An id or nothing (the first page): free text here reached the database, which takes no NUL.
After = Annotated[
    str,
    Query(
        pattern=f"^$|{edge.ID_PATTERN}",
        description="the last id of the previous page (empty: the first page)",
    ),
]


def _s(rt: Runtime) -> str:
    return f'"{rt.store.schema}"'


def _may_manage(who: Principal, township_id: str | None) -> None:
    if who.has_role(ADMIN):
        return
    who.require_role(OFFICE, ADMIN)
    if township_id is None:
        raise Forbidden("only notification administrators manage people outside townships")
    who.require_township(township_id)


def _may_read_township(who: Principal, township_id: str | None) -> None:
    if who.has_role(ADMIN) or who.reads_everything:
        return
    if township_id is None:
        raise Forbidden("this is outside every township you may see", field="township_id")
    who.require_role(OFFICE, "township_committee", ADMIN)
    who.require_township(township_id, read=True)


# -- directory ------------------------------------------------------------------------------


def _known_role(role: str) -> str:
    if role not in grants.ROLES:
        raise ValueError(f"未知角色“{role}”；可用的角色：{'、'.join(grants.ROLES)}")
    return role


RoleName = Annotated[
    str,
    AfterValidator(_known_role),
    WithJsonSchema({"type": "string", "enum": list(grants.ROLES)}),
]


def _may_grant(
    who: Principal, p: PersonIn, roles_before: list[str], county_before: str | None
) -> None:
    """Roles given or taken away at or below the caller's own level, a county only its own
    (ours; ``grants.py``): a township office enrols nobody into the county's audiences."""
    beyond = grants.beyond(who.roles, roles_before, p.roles)
    if beyond:
        raise Forbidden(
            f"无权为{p.name}授予或取消高于本人层级的角色：{'、'.join(beyond)}", field="roles"
        )
    if p.county_id not in (None, county_before, who.county_id) and not (
        who.has_role(ADMIN) and who.county_id is None
    ):
        raise Forbidden(f"{p.name}所填的县不在您的管辖范围内", field="county_id")


async def _before(conn: asyncpg.Connection, s: str, ids: list[str]) -> dict[str, asyncpg.Record]:
    """What the directory holds of these people now (their township, given roles, county)."""
    rows = await conn.fetch(
        f"""SELECT person_id, township_id, manual_roles, county_id FROM {s}.people
            WHERE person_id = ANY($1::text[])""",
        ids,
    )
    return {r["person_id"]: r for r in rows}


def _may_change(who: Principal, p: PersonIn, before: asyncpg.Record | None) -> None:
    """Everything a caller must be allowed to put one person into the directory as ``p``."""
    _may_manage(who, p.township_id)
    if before is not None and before["township_id"] is not None:
        _may_manage(who, before["township_id"])  # nobody moves a person out of another's township
    if before is not None and (higher := grants.above(who.roles, before["manual_roles"])):
        # Their phone and e-mail carry the notices of that level (a county's red lights).
        raise Forbidden(
            f"无权修改{p.name}的登记：其角色（{'、'.join(higher)}）高于本人层级", field="roles"
        )
    _may_grant(
        who,
        p,
        list(before["manual_roles"]) if before else [],
        before["county_id"] if before else None,
    )


class PersonIn(edge.Body):
    """A person in the directory. ``phone`` is a mainland mobile number (11 digits).

    ``roles`` are the roles given here; the person also holds the role meetings' roster gives
    them in each township (ours: such a role is the roster's, replaced when the roster changes
    it, even if it was given here too). A caller gives and takes away only roles at or below its
    own level (village, township, county, administrator) and a county only its own (ours; 403
    otherwise): a township office enrols nobody into the county's audiences.
    """

    name: Name
    roles: list[RoleName] = Field(default_factory=list, max_length=20)
    county_id: Id | None = None
    township_id: Id | None = None
    station_id: Id | None = None
    village_id: Id | None = None
    phone: (
        Annotated[str, Field(json_schema_extra={"pattern": f"^(?:{PHONE.pattern[1:-1]})?$"})] | None
    ) = None
    # "" is taken as none, as with the phone: the document says so beside the format.
    email: (
        Annotated[
            str,
            Field(
                max_length=254,
                json_schema_extra={"anyOf": [{"format": "email"}, {"maxLength": 0}]},
            ),
        ]
        | None
    ) = None
    wecom_id: str | None = Field(default=None, max_length=64)
    dingtalk_id: str | None = Field(default=None, max_length=64)

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        if v and not PHONE.match(v):
            raise ValueError("a mainland mobile number has 11 digits and starts with 13–19")
        return v or None

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v and not EMAIL.match(v):
            raise ValueError("not an e-mail address")
        return v or None


CSV_FIELDS = (
    "person_id",
    "name",
    "roles",
    "county_id",
    "township_id",
    "station_id",
    "village_id",
    "phone",
    "email",
    "wecom_id",
    "dingtalk_id",
)
"""The CSV import's columns (header row required); ``roles`` separated by ``;``."""


def _person_out(row: asyncpg.Record, who: Principal) -> dict[str, Any]:
    whole = who.has_role(ADMIN) or who.sub == row["person_id"]
    out = {k: row[k] for k in CSV_FIELDS if k in row}
    out["roles"] = list(row["roles"])
    out["active"] = row["active"]
    if not whole:
        out["phone"], out["email"] = mask_phone(row["phone"]), mask_email(row["email"])
    return out


async def _upsert(conn: asyncpg.Connection, s: str, person_id: str, p: PersonIn) -> None:
    """The person as given; their roles are the given ones and their rosters' (``roles``)."""
    await conn.execute(
        f"""INSERT INTO {s}.people (person_id, name, manual_roles, county_id, township_id,
                station_id, village_id, phone, email, wecom_id, dingtalk_id)
            VALUES ($1, $2, {roles.manual(s, "$3", "$1")}, $4, $5, $6, $7, $8, $9, $10, $11)
            ON CONFLICT (person_id) DO UPDATE SET name = $2, manual_roles = excluded.manual_roles,
                county_id = $4, township_id = $5, station_id = $6, village_id = $7, phone = $8,
                email = $9, wecom_id = $10, dingtalk_id = $11, active = true,
                updated_at = now()""",
        person_id,
        p.name,
        sorted(set(p.roles)),
        p.county_id,
        p.township_id,
        p.station_id,
        p.village_id,
        p.phone,
        p.email,
        p.wecom_id,
        p.dingtalk_id,
    )
    await roles.settle_roles(conn, s, person_id)


@router.put("/people/{person_id}", tags=["directory"])
async def put_person(
    person_id: IdPath, body: PersonIn, who: CurrentPrincipal, rt: Rt
) -> dict[str, Any]:
    """Add or replace a person (the office of their township, or an administrator)."""
    _may_manage(who, body.township_id)
    async with rt.pool.acquire() as conn, conn.transaction():
        before = (await _before(conn, _s(rt), [person_id])).get(person_id)
        _may_change(who, body, before)
        await _upsert(conn, _s(rt), person_id, body)
        row = await conn.fetchrow(f"SELECT * FROM {_s(rt)}.people WHERE person_id = $1", person_id)
    return _person_out(row, who)


@router.get("/people/{person_id}", tags=["directory"])
async def get_person(person_id: IdPath, who: CurrentPrincipal, rt: Rt) -> dict[str, Any]:
    row = await rt.pool.fetchrow(f"SELECT * FROM {_s(rt)}.people WHERE person_id = $1", person_id)
    if row is None:
        raise NotFound(f"no person {person_id} in the directory", field="person_id")
    if who.sub != person_id:
        _may_read_township(who, row["township_id"])
    return _person_out(row, who)


@router.get("/townships/{township_id}/people", tags=["directory"])
async def township_people(
    township_id: IdPath,
    who: CurrentPrincipal,
    rt: Rt,
    limit: edge.Limit = 100,
    after: After = "",
) -> list[dict[str, Any]]:
    """The township's people, by id; page with ``after`` = the last id seen."""
    _may_read_township(who, township_id)
    rows = await rt.pool.fetch(
        f"""SELECT * FROM {_s(rt)}.people WHERE township_id = $1 AND person_id > $2
            ORDER BY person_id LIMIT $3""",
        township_id,
        after,
        limit,
    )
    return [_person_out(r, who) for r in rows]


@router.post(
    "/people/import",
    tags=["directory"],
    openapi_extra=csvfile.UPLOAD_BODY,
    dependencies=[Depends(with_role(OFFICE, ADMIN))],
)
async def import_people(who: CurrentPrincipal, request: Request, rt: Rt) -> dict[str, int]:
    """CSV with a header row of ``person_id,name,roles,…`` (see ``CSV_FIELDS``; ``roles``
    separated by ``;``), read as every upload is (``cunzhi_platform.csvfile``); all or
    nothing: every bad line is answered in one 422 naming the line and the column, and nothing
    is stored. At most ``CUNZHI_HTTP_MAX_BODY_BYTES`` (2 MB, some 20,000 people) per import:
    split a county's directory by township. The file is read only once the caller's role may
    import; each person's township is checked as it is read."""
    text = csvfile.upload_text(request.headers.get("content-type", ""), await request.body())
    problems: list[csvfile.CsvProblem] = []
    people: list[tuple[str, PersonIn]] = []
    for row in csvfile.read_csv(text, CSV_FIELDS, ("person_id", "name"), problems):
        values: dict[str, Any] = {k: v or None for k, v in row.cells.items() if k != "person_id"}
        values["roles"] = [x for x in (row.cells.get("roles") or "").split(";") if x]
        try:
            pid = _ID_ADAPTER.validate_python(row.cells.get("person_id", ""))
            person = PersonIn.model_validate(values)
        except ValidationError as exc:
            for err in exc.errors():
                column = ".".join(str(x) for x in err["loc"]) or "person_id"
                words = err["msg"].removeprefix("Value error, ")
                problems.append(csvfile.CsvProblem(row.line, column, words))
            continue
        _may_manage(who, person.township_id)
        people.append((pid, person))
    if problems:
        raise csvfile.CsvRefused("people CSV", problems)
    async with rt.pool.acquire() as conn, conn.transaction():
        before = await _before(conn, _s(rt), [pid for pid, _ in people])
        for pid, person in people:
            _may_change(who, person, before.get(pid))
        for pid, person in people:
            await _upsert(conn, _s(rt), pid, person)
    return {"imported": len(people)}


class ScheduleIn(edge.Body):
    """Quiet hours (may wrap past midnight, e.g. 22:00–07:00) and the daily digest time."""

    quiet_start: dt.time | None = None
    quiet_end: dt.time | None = None
    digest_at: dt.time | None = None


class PreferenceIn(edge.Body):
    enabled: bool
    digest: bool = False


def _self_or_admin(who: Principal, person_id: str) -> None:
    if who.sub != person_id and not who.has_role(ADMIN):
        raise Forbidden("only the person or an administrator changes this", field="person_id")


async def _exists(rt: Runtime, person_id: str) -> None:
    if not await rt.pool.fetchval(
        f"SELECT true FROM {_s(rt)}.people WHERE person_id = $1", person_id
    ):
        raise NotFound(f"no person {person_id} in the directory", field="person_id")


@router.put("/people/{person_id}/schedule", tags=["preferences"])
async def put_schedule(
    person_id: IdPath, body: ScheduleIn, who: CurrentPrincipal, rt: Rt
) -> ScheduleIn:
    _self_or_admin(who, person_id)
    if (body.quiet_start is None) != (body.quiet_end is None):
        raise DomainError("quiet hours need both a start and an end", field="quiet_end")
    if body.quiet_start is not None and body.quiet_start == body.quiet_end:
        raise DomainError("quiet hours must not start and end at the same time", field="quiet_end")
    await _exists(rt, person_id)
    await rt.pool.execute(
        f"""UPDATE {_s(rt)}.people SET quiet_start = $2, quiet_end = $3, digest_at = $4
            WHERE person_id = $1""",
        person_id,
        body.quiet_start,
        body.quiet_end,
        body.digest_at,
    )
    return body


@router.put("/people/{person_id}/preferences/{kind_code}/{channel}", tags=["preferences"])
async def put_preference(
    person_id: IdPath,
    kind_code: KindPath,
    channel: ChannelPath,
    body: PreferenceIn,
    who: CurrentPrincipal,
    rt: Rt,
) -> dict[str, Any]:
    """Switch a kind on or off on a channel, or have it digested. Mandatory kinds (the forum
    notice) cannot be switched off on their default channels; time-critical kinds cannot be
    digested (422)."""
    _self_or_admin(who, person_id)
    check_preference(kind(kind_code), channel, Preference(body.enabled, body.digest))
    await _exists(rt, person_id)
    await rt.pool.execute(
        f"""INSERT INTO {_s(rt)}.preferences VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (person_id, kind, channel) DO UPDATE SET enabled = $4, digest = $5""",
        person_id,
        kind_code,
        channel,
        body.enabled,
        body.digest,
    )
    return {"kind": kind_code, "channel": channel, **body.model_dump()}


@router.get("/people/{person_id}/preferences", tags=["preferences"])
async def get_preferences(person_id: IdPath, who: CurrentPrincipal, rt: Rt) -> list[dict[str, Any]]:
    """Every kind × channel with the person's choice, or the kind's default."""
    _self_or_admin(who, person_id)
    stored = {
        (r["kind"], r["channel"]): r
        for r in await rt.pool.fetch(
            f"SELECT * FROM {_s(rt)}.preferences WHERE person_id = $1", person_id
        )
    }
    out = []
    for k in KINDS.values():
        for channel in PERSON_CHANNELS:
            row = stored.get((k.code, channel))
            out.append(
                {
                    "kind": k.code,
                    "label": k.label,
                    "channel": channel,
                    "enabled": row["enabled"] if row else channel in k.channels,
                    "digest": bool(row and row["digest"]),
                    "mandatory": k.mandatory and channel in k.channels,
                    "default": row is None,
                }
            )
    return out


# -- groups ---------------------------------------------------------------------------------


def _unreadable(url: str) -> str | None:
    """Why no URL parser reads an address the pattern admits (``http://[::1``, a port past
    65535): stored, it would fail every send and trip clients that read it back."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as exc:
        return f"不是可解析的网址：{exc}"
    return None if parts.hostname else "网址缺少主机名"


class GroupIn(edge.Body):
    """A township or village group's robot (群机器人): its webhook URL and, for DingTalk's
    signed robots, the signing secret."""

    name: Annotated[str, edge.TextRules(100)]
    township_id: Id
    village_id: Id | None = None
    channel: Literal["wecom", "dingtalk"]
    webhook_url: Annotated[
        str,
        Field(max_length=500, pattern=rf"^https?://[^{_NOT_IN_URL}]+$"),
    ]
    """The robot's webhook; the channel sends only to its provider's configured host."""
    secret: str | None = Field(default=None, max_length=200)


async def _refuse_unreachable(rt: Runtime, channel: str, url: str, field: str) -> None:
    """An address the channel would never send to is refused when it is registered (422), not
    found out at the first notice (ours); the channel checks again at every send."""
    if unreadable := _unreadable(url):
        raise DomainError(unreadable, field=field)
    adapter = getattr(rt.service, "channels", {}).get(channel)
    why = None
    if isinstance(adapter, Robot) and adapter.token(url) is None:
        why = f"not a robot webhook of {adapter.endpoint}{adapter.path}"
    elif isinstance(adapter, WebhookChannel):
        try:
            _, host, port = adapter.policy.check_url(url)
            async with asyncio.timeout(adapter.timeout_s):
                await adapter.policy.resolve(host, port)
        except ForbiddenAddress as exc:
            why = str(exc)
        except (httpcore.ConnectError, TimeoutError):
            pass  # a name that does not resolve (yet, or in time): the send decides then
    if why:
        raise DomainError(f"{channel} would never send there: {why}", field=field)


@router.put("/groups/{group_id}", tags=["directory"])
async def put_group(
    group_id: IdPath, body: GroupIn, who: CurrentPrincipal, rt: Rt
) -> dict[str, Any]:
    _may_manage(who, body.township_id)
    await _refuse_unreachable(rt, body.channel, body.webhook_url, "webhook_url")
    await rt.pool.execute(
        f"""INSERT INTO {_s(rt)}.groups (group_id, name, township_id, village_id, channel,
                webhook_url, secret) VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (group_id) DO UPDATE SET name = $2, township_id = $3, village_id = $4,
                channel = $5, webhook_url = $6, secret = $7, active = true""",
        group_id,
        body.name,
        body.township_id,
        body.village_id,
        body.channel,
        body.webhook_url,
        body.secret,
    )
    return {
        "group_id": group_id,
        **body.model_dump(exclude={"secret"}),
        "webhook_url": mask_url(body.webhook_url),
    }


@router.get("/townships/{township_id}/groups", tags=["directory"])
async def township_groups(
    township_id: IdPath,
    who: CurrentPrincipal,
    rt: Rt,
    limit: edge.Limit = 100,
    after: After = "",
) -> list[dict[str, Any]]:
    """The township's groups, by id; page with ``after`` = the last id seen."""
    _may_read_township(who, township_id)
    rows = await rt.pool.fetch(
        f"""SELECT * FROM {_s(rt)}.groups WHERE township_id = $1 AND group_id > $2
            ORDER BY group_id LIMIT $3""",
        township_id,
        after,
        limit,
    )
    return [
        {
            "group_id": r["group_id"],
            "name": r["name"],
            "village_id": r["village_id"],
            "channel": r["channel"],
            "webhook_url": mask_url(r["webhook_url"]),
            "active": r["active"],
        }
        for r in rows
    ]


# -- inbox ----------------------------------------------------------------------------------

_INBOX = "channel = 'inbox' AND status IN ('sent', 'delivered')"


def _item(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "delivery_id": str(r["delivery_id"]),
        "kind": r["kind"],
        "subject": r["subject"],
        "body": r["body"],
        "sent_at": r["sent_at"],
        "read_at": r["read_at"],
    }


async def _unread(pool: asyncpg.Pool, s: str, person_id: str) -> int:
    count: int = await pool.fetchval(
        f"SELECT count(*) FROM {s}.deliveries WHERE recipient_id = $1 AND {_INBOX} "
        "AND read_at IS NULL",
        person_id,
    )
    return count


@router.get("/inbox", tags=["inbox"])
async def inbox(
    who: CurrentPrincipal,
    rt: Rt,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: Before = None,
    unread: bool = False,
) -> dict[str, Any]:
    """The caller's own inbox, newest first; page with ``before`` = the last ``sent_at`` seen."""
    rows = await rt.pool.fetch(
        f"""SELECT * FROM {_s(rt)}.deliveries WHERE recipient_id = $1 AND {_INBOX}
              AND ($2::timestamptz IS NULL OR sent_at < $2) AND (NOT $3 OR read_at IS NULL)
            ORDER BY sent_at DESC, delivery_id LIMIT $4""",
        who.sub,
        before,
        unread,
        limit,
    )
    return {
        "items": [_item(r) for r in rows],
        "unread": await _unread(rt.pool, _s(rt), who.sub),
        "next_before": rows[-1]["sent_at"] if len(rows) == limit else None,
    }


@router.get("/inbox/unread-count", tags=["inbox"])
async def unread_count(who: CurrentPrincipal, rt: Rt) -> dict[str, int]:
    return {"unread": await _unread(rt.pool, _s(rt), who.sub)}


async def _mark_read(rt: Runtime, who: Principal, request: Request, only: str | None) -> int:
    s, now = _s(rt), rt.clock.now()
    async with rt.pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            f"""UPDATE {s}.deliveries SET read_at = $2, stream_version = stream_version + 1
                WHERE recipient_id = $1 AND {_INBOX} AND read_at IS NULL
                  AND ($3::uuid IS NULL OR delivery_id = $3)
                RETURNING delivery_id, source_event_id, kind, recipient_id, channel,
                          stream_version""",
            who.sub,
            now,
            only,
        )
        writes = [
            StreamWrite(
                f"delivery:{r['delivery_id']}",
                r["stream_version"] - 1,
                [
                    NotificationRead(
                        delivery_id=str(r["delivery_id"]),
                        source_event_id=str(r["source_event_id"]),
                        kind=r["kind"],
                        recipient_id=r["recipient_id"],
                        channel=r["channel"],
                        read_at=now,
                    )
                ],
            )
            for r in rows
        ]
        if writes:
            # The platform's middleware checked the header (or made one up).
            ctx = CommandContext(actor=who.sub, correlation_id=request.headers["x-correlation-id"])
            await webhooks.append(rt.store, conn, writes, ctx)
            await conn.execute("SELECT pg_notify($1, $2)", f"{rt.store.schema}.inbox", who.sub)
    return len(rows)


@router.post("/inbox/{delivery_id}/read", tags=["inbox"])
async def read_one(
    delivery_id: uuid.UUID, who: CurrentPrincipal, request: Request, rt: Rt
) -> dict[str, int]:
    """Mark one notice read (→ ``NotificationRead``); reading it again changes nothing."""
    owner = await rt.pool.fetchval(
        f"SELECT recipient_id FROM {_s(rt)}.deliveries WHERE delivery_id = $1 AND {_INBOX}",
        delivery_id,
    )
    if owner != who.sub:  # someone else's notice is as good as none
        raise NotFound(f"no notice {delivery_id} in your inbox", field="delivery_id")
    # Counted before the command: nothing that can fail runs after its commit.
    unread = await _unread(rt.pool, _s(rt), who.sub)
    marked = await _mark_read(rt, who, request, str(delivery_id))
    return {"marked": marked, "unread": max(unread - marked, 0)}


@router.post("/inbox/read-all", tags=["inbox"])
async def read_all(who: CurrentPrincipal, request: Request, rt: Rt) -> dict[str, int]:
    marked = await _mark_read(rt, who, request, None)
    return {"marked": marked, "unread": 0}


class InboxHub:
    """One LISTEN connection per process, fanned out to the open streams of each person."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.queues: dict[str, set[asyncio.Queue[None]]] = {}
        self.conn: asyncpg.Connection | None = None
        self.lock = asyncio.Lock()

    async def subscribe(self, person_id: str) -> asyncio.Queue[None]:
        async with self.lock:
            if self.conn is None or self.conn.is_closed():
                assert self.rt.settings.database_url
                self.conn = await asyncpg.connect(self.rt.settings.database_url)
                await self.conn.add_listener(f"{self.rt.store.schema}.inbox", self._notified)
        queue: asyncio.Queue[None] = asyncio.Queue(maxsize=1)
        self.queues.setdefault(person_id, set()).add(queue)
        return queue

    async def unsubscribe(self, person_id: str, queue: asyncio.Queue[None]) -> None:
        async with self.lock:
            mine = self.queues.get(person_id, set())
            mine.discard(queue)
            if not mine:
                self.queues.pop(person_id, None)
            if not self.queues and self.conn is not None:
                # The last stream closed: do not hold a connection for nobody.
                await self.conn.close(timeout=2)
                self.conn = None

    def _notified(self, _conn: object, _pid: int, _channel: str, person_id: str) -> None:
        for queue in self.queues.get(person_id, ()):
            if queue.empty():  # one wake-up is enough: the stream reads the current state
                queue.put_nowait(None)


def _shanghai(value: object) -> str:
    """Times in the stream as in every answer: RFC 3339 in +08:00 (the edge does this for JSON
    answers; a stream is written here)."""
    if isinstance(value, dt.datetime):
        return value.astimezone(SHANGHAI).isoformat()
    return str(value)


def _hub(request: Request, rt: Runtime) -> InboxHub:
    hub: InboxHub | None = getattr(request.app.state, "inbox_hub", None)
    if hub is None:
        hub = request.app.state.inbox_hub = InboxHub(rt)
    return hub


@router.get("/inbox/stream", tags=["inbox"], response_class=StreamingResponse)
async def inbox_stream(
    request: Request,
    who: CurrentPrincipal,
    rt: Rt,
    heartbeat_s: Annotated[float, Query(ge=1, le=300)] = 25,
) -> StreamingResponse:
    """Server-Sent Events: an ``inbox`` event with the unread count and the newest notice at
    once and whenever the inbox changes; a comment line every ``heartbeat_s`` keeps proxies
    from closing the stream."""
    hub = _hub(request, rt)
    queue = await hub.subscribe(who.sub)
    s = _s(rt)

    async def events() -> AsyncIterator[str]:
        try:
            while True:
                newest = await rt.pool.fetchrow(
                    f"""SELECT * FROM {s}.deliveries WHERE recipient_id = $1 AND {_INBOX}
                        ORDER BY sent_at DESC LIMIT 1""",
                    who.sub,
                )
                data = {
                    "unread": await _unread(rt.pool, s, who.sub),
                    "newest": _item(newest) if newest else None,
                }
                text = json.dumps(data, default=_shanghai, ensure_ascii=False)
                yield f"event: inbox\ndata: {text}\n\n"
                while True:
                    try:
                        await asyncio.wait_for(queue.get(), timeout=heartbeat_s)
                        break
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                if await request.is_disconnected():
                    return
        finally:
            await hub.unsubscribe(who.sub, queue)

    return StreamingResponse(events(), media_type="text/event-stream")


# -- deliveries (read models) ---------------------------------------------------------------


def _delivery(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "delivery_id": str(r["delivery_id"]),
        "source_event_id": str(r["source_event_id"]),
        "recipient_id": r["recipient_id"],
        "kind": r["kind"],
        "channel": r["channel"],
        "status": r["status"],
        "attempts": r["attempts"],
        "held": r["held"],
        "digest": r["digest"],
        "not_before": r["not_before"],
        "sent_at": r["sent_at"],
        "read_at": r["read_at"],
        "failed_at": r["failed_at"],
        "last_error": r["last_error"],
        # ours: a robot's unclear send, recorded as sent and not posted again (CHANNELS.md)
        "unconfirmed": r["status"] == "sent" and r["unclear"],
    }


@router.get("/subjects/{subject_ref}/deliveries", tags=["deliveries"])
async def subject_deliveries(
    subject_ref: Annotated[str, Path(max_length=200)],
    who: CurrentPrincipal,
    rt: Rt,
    limit: edge.Limit = 100,
    offset: edge.Offset = 0,
) -> dict[str, Any]:
    """Who has been told about ``forum:{id}`` (or ``call:…``, ``topic:…``), on which channel,
    and who has read it: per recipient, every delivery of every notice about the subject.
    ``recipients`` is one page (by recipient id, ``limit`` and ``offset``) of ``total``;
    ``by_status`` and ``read`` count them all."""
    s = _s(rt)
    notices = await rt.pool.fetch(
        f"SELECT * FROM {s}.notices WHERE subject_ref = $1 ORDER BY created_at", subject_ref
    )
    for n in {n["township_id"] for n in notices}:
        _may_read_township(who, n)
    of_subject = f"""{s}.deliveries d JOIN {s}.notices n
        ON n.source_event_id = d.source_event_id AND n.kind = d.kind WHERE n.subject_ref = $1"""
    counts = await rt.pool.fetchrow(
        f"""SELECT count(DISTINCT d.recipient_id) AS total,
                count(DISTINCT d.recipient_id) FILTER (WHERE d.read_at IS NOT NULL) AS read
            FROM {of_subject}""",
        subject_ref,
    )
    by_status = await rt.pool.fetch(
        f"SELECT d.status, count(*) AS n FROM {of_subject} GROUP BY d.status ORDER BY d.status",
        subject_ref,
    )
    rows = await rt.pool.fetch(
        f"""SELECT d.* FROM {of_subject} AND d.recipient_id IN (
                SELECT DISTINCT d.recipient_id FROM {of_subject}
                ORDER BY d.recipient_id LIMIT $2 OFFSET $3)
            ORDER BY d.recipient_id, d.kind, d.channel""",
        subject_ref,
        limit,
        offset,
    )
    recipients: dict[str, dict[str, Any]] = {}
    for r in rows:
        entry = recipients.setdefault(
            r["recipient_id"], {"recipient_id": r["recipient_id"], "read": False, "deliveries": []}
        )
        entry["deliveries"].append(_delivery(r))
        entry["read"] = entry["read"] or r["read_at"] is not None
    return {
        "subject_ref": subject_ref,
        "notices": [
            {
                "source_event_id": str(n["source_event_id"]),
                "kind": n["kind"],
                "source_type": n["source_type"],
                "created_at": n["created_at"],
            }
            for n in notices
        ],
        "by_status": {r["status"]: r["n"] for r in by_status},
        "read": counts["read"],
        "total": counts["total"],
        "limit": limit,
        "offset": offset,
        "recipients": list(recipients.values()),
    }


@router.get("/townships/{township_id}/deliveries", tags=["deliveries"])
async def township_deliveries(
    township_id: IdPath,
    who: CurrentPrincipal,
    rt: Rt,
    status: Literal["pending", "sending", "sent", "delivered", "failed", "cancelled"] | None = None,
    limit: edge.Limit = 100,
    before: Before = None,
) -> list[dict[str, Any]]:
    """The township's deliveries, newest first (``failed`` ones are the failures to act on)."""
    _may_read_township(who, township_id)
    rows = await rt.pool.fetch(
        f"""SELECT * FROM {_s(rt)}.deliveries WHERE township_id = $1
              AND ($2::text IS NULL OR status = $2)
              AND ($3::timestamptz IS NULL OR created_at < $3)
            ORDER BY created_at DESC, delivery_id LIMIT $4""",
        township_id,
        status,
        before,
        limit,
    )
    return [_delivery(r) for r in rows]


@router.get("/failures", tags=["deliveries"])
async def failures(
    who: CurrentPrincipal,
    rt: Rt,
    limit: edge.Limit = 100,
    before: Before = None,
) -> list[dict[str, Any]]:
    """Deliveries that failed for good, newest first, with why: the townships the caller may
    see (administrators and the county: all)."""
    everywhere = who.has_role(ADMIN) or who.reads_everything
    if not everywhere:
        who.require_role(OFFICE, "township_committee")
    rows = await rt.pool.fetch(
        f"""SELECT * FROM {_s(rt)}.deliveries WHERE status = 'failed'
              AND ($1 OR township_id = ANY($2::text[]))
              AND ($3::timestamptz IS NULL OR failed_at < $3)
            ORDER BY failed_at DESC, delivery_id LIMIT $4""",
        everywhere,
        sorted(who.township_ids),
        before,
        limit,
    )
    return [_delivery(r) for r in rows]


@router.get("/channels/health", tags=["deliveries"])
async def channel_health(who: CurrentPrincipal, rt: Rt) -> list[dict[str, Any]]:
    """Per channel: what waits, what is being sent, what went and failed in the last 24 hours,
    and the age of the oldest delivery that is due but not sent (the backlog)."""
    if not (who.has_role(ADMIN) or who.reads_everything):
        raise Forbidden("channel health is for administrators and the county")
    now = rt.clock.now()
    rows = await rt.pool.fetch(
        f"""SELECT channel,
              count(*) FILTER (WHERE status = 'pending') AS pending,
              count(*) FILTER (WHERE status = 'sending') AS sending,
              count(*) FILTER (WHERE status IN ('sent', 'delivered') AND sent_at > $1) AS sent_24h,
              count(*) FILTER (WHERE status = 'failed' AND failed_at > $1) AS failed_24h,
              count(*) FILTER (WHERE status = 'pending' AND attempts > 0) AS retrying,
              min(not_before) FILTER (WHERE status IN ('pending', 'sending')
                                        AND not_before <= $2) AS oldest_due
            FROM {_s(rt)}.deliveries GROUP BY channel ORDER BY channel""",
        now - dt.timedelta(hours=24),
        now,
    )
    return [
        {
            **{
                k: r[k]
                for k in ("channel", "pending", "sending", "sent_24h", "failed_24h", "retrying")
            },
            "backlog_s": (now - r["oldest_due"]).total_seconds() if r["oldest_due"] else 0.0,
        }
        for r in rows
    ]


# -- templates ------------------------------------------------------------------------------


class TemplateIn(edge.Body):
    subject: edge.Title
    body: edge.Text


class PreviewIn(edge.Body):
    """A template to try (the stored one if omitted) and data (the kind's sample if omitted)."""

    template: TemplateIn | None = None
    context: dict[str, Any] | None = None


def _template_kind(kind_code: str, channel: str) -> None:
    if kind_code != "digest":
        kind(kind_code)
    if channel not in CHANNELS or channel == "webhook":
        raise DomainError(f"no templates for channel {channel!r}", field="channel")


async def _template(rt: Runtime, kind_code: str, channel: str) -> tuple[Template, bool]:
    row = await rt.pool.fetchrow(
        f"SELECT subject, body FROM {_s(rt)}.templates WHERE kind = $1 AND channel = $2",
        kind_code,
        channel,
    )
    if row:
        return Template(row["subject"], row["body"]), True
    return default(kind_code, channel), False


@router.get("/templates", tags=["templates"])
async def templates(_: CurrentPrincipal, rt: Rt) -> list[dict[str, Any]]:
    """Every kind × channel: the kind's label, and whether an operator replaced the built-in."""
    custom = {
        (r["kind"], r["channel"]): r
        for r in await rt.pool.fetch(f"SELECT * FROM {_s(rt)}.templates")
    }
    return [
        {
            "kind": code,
            "label": KINDS[code].label if code in KINDS else "通知汇总",
            "channel": channel,
            "custom": (code, channel) in custom,
            "updated_by": custom[(code, channel)]["updated_by"]
            if (code, channel) in custom
            else None,
        }
        for code in (*KINDS, "digest")
        for channel in CHANNELS
        if channel != "webhook"
    ]


@router.get("/templates/{kind_code}/{channel}", tags=["templates"])
async def get_template(
    kind_code: TemplateKindPath, channel: TemplateChannelPath, _: CurrentPrincipal, rt: Rt
) -> Any:
    _template_kind(kind_code, channel)
    template, custom = await _template(rt, kind_code, channel)
    return {
        "kind": kind_code,
        "channel": channel,
        "subject": template.subject,
        "body": template.body,
        "custom": custom,
        "sample": sample(kind_code),
    }


@router.put("/templates/{kind_code}/{channel}", tags=["templates"])
async def put_template(
    kind_code: TemplateKindPath,
    channel: TemplateChannelPath,
    body: TemplateIn,
    who: CurrentPrincipal,
    rt: Rt,
) -> Any:
    """Replace a template (administrators). It must render with the kind's sample data within
    the renderer's bounds (ours: steps, time and size, so that no template can hold up the
    sender), and an SMS must stay within the providers' length (422 naming ``subject`` or
    ``body`` and why, nothing stored)."""
    who.require_role(ADMIN)
    _template_kind(kind_code, channel)
    # In a thread: even within its bounds a render may take up to a second of CPU.
    rendered = await asyncio.to_thread(check, kind_code, channel, Template(body.subject, body.body))
    await rt.pool.execute(
        f"""INSERT INTO {_s(rt)}.templates VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (kind, channel) DO UPDATE SET subject = $3, body = $4, updated_by = $5,
                updated_at = $6""",
        kind_code,
        channel,
        body.subject,
        body.body,
        who.sub,
        rt.clock.now(),
    )
    return {"kind": kind_code, "channel": channel, "preview": rendered.__dict__}


@router.post("/templates/{kind_code}/{channel}/preview", tags=["templates"])
async def preview_template(
    kind_code: TemplateKindPath,
    channel: TemplateChannelPath,
    body: PreviewIn,
    who: CurrentPrincipal,
    rt: Rt,
) -> Any:
    """What a template gives with sample data (or data given): subject, body, SMS parts.
    Administrators only (ours): a template is code the service runs, rendered within bounds
    of steps, time and size (422 with why when one is reached)."""
    who.require_role(ADMIN)
    _template_kind(kind_code, channel)
    template = (
        Template(body.template.subject, body.template.body)
        if body.template
        else (await _template(rt, kind_code, channel))[0]
    )
    context = body.context if body.context is not None else sample(kind_code)
    return (await asyncio.to_thread(render, template, channel, context)).__dict__


@router.delete("/templates/{kind_code}/{channel}", tags=["templates"], status_code=204)
async def reset_template(
    kind_code: TemplateKindPath, channel: TemplateChannelPath, who: CurrentPrincipal, rt: Rt
) -> None:
    """Back to the built-in template."""
    who.require_role(ADMIN)
    _template_kind(kind_code, channel)
    await rt.pool.execute(
        f"DELETE FROM {_s(rt)}.templates WHERE kind = $1 AND channel = $2", kind_code, channel
    )


# -- outbound webhook endpoints -------------------------------------------------------------


def _our_event_types(schema: dict[str, Any]) -> None:
    schema.update(items={"type": "string", "enum": sorted(registry.names())}, uniqueItems=True)


class EndpointIn(edge.Body):
    """Another system's endpoint, subscribed to our event types. Only http(s); the addresses the
    operator allows are enforced again by the webhook channel when it sends (no SSRF)."""

    url: Annotated[
        str,
        Field(max_length=500, pattern=rf"^https?://[^{_NOT_IN_URL}/]+(/[^{_NOT_IN_URL}]*)?$"),
    ]
    event_types: list[str] = Field(
        min_length=1,
        max_length=20,
        json_schema_extra=_our_event_types,
    )
    secret: str = Field(min_length=24, max_length=200)

    @field_validator("event_types")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(registry.names()))
        if unknown:
            raise ValueError(f"unknown event types: {', '.join(unknown)}")
        return sorted(set(v))


@router.put("/endpoints/{endpoint_id}", tags=["webhooks"])
async def put_endpoint(endpoint_id: IdPath, body: EndpointIn, who: CurrentPrincipal, rt: Rt) -> Any:
    """Register or replace an endpoint; one the allow list (``CUNZHI_WEBHOOK_ALLOW``) does not
    admit is refused (422, ``url``)."""
    who.require_role(ADMIN)
    await _refuse_unreachable(rt, "webhook", body.url, "url")
    await rt.pool.execute(
        f"""INSERT INTO {_s(rt)}.endpoints VALUES ($1, $2, $3, $4, true, NULL, $5)
            ON CONFLICT (endpoint_id) DO UPDATE SET url = $2, event_types = $3, secret = $4,
                active = true, disabled_reason = NULL""",
        endpoint_id,
        body.url,
        body.event_types,
        body.secret,
        rt.clock.now(),
    )
    return {
        "endpoint_id": endpoint_id,
        "url": body.url,
        "event_types": body.event_types,
        "active": True,
    }


@router.delete("/endpoints/{endpoint_id}", tags=["webhooks"], status_code=204)
async def disable_endpoint(endpoint_id: IdPath, who: CurrentPrincipal, rt: Rt) -> None:
    """Stop sending to an endpoint (what is queued for it is cancelled); PUT enables it again."""
    who.require_role(ADMIN)
    async with rt.pool.acquire() as conn, conn.transaction():
        found = await conn.fetchval(
            f"""UPDATE {_s(rt)}.endpoints SET active = false, disabled_reason = $2
                WHERE endpoint_id = $1 RETURNING true""",
            endpoint_id,
            f"disabled by {who.sub}",
        )
        if not found:
            raise NotFound(f"no endpoint {endpoint_id}", field="endpoint_id")
        await conn.execute(
            f"""UPDATE {_s(rt)}.deliveries SET status = 'cancelled', last_error = $2
                WHERE recipient_id = $1 AND status = 'pending'""",
            f"endpoint:{endpoint_id}",
            f"endpoint disabled by {who.sub}",
        )


@router.get("/endpoints", tags=["webhooks"])
async def endpoints(
    who: CurrentPrincipal, rt: Rt, limit: edge.Limit = 100, after: After = ""
) -> list[dict[str, Any]]:
    """The endpoints, by id; page with ``after`` = the last id seen."""
    who.require_role(ADMIN)
    rows = await rt.pool.fetch(
        f"""SELECT * FROM {_s(rt)}.endpoints WHERE endpoint_id > $1
            ORDER BY endpoint_id LIMIT $2""",
        after,
        limit,
    )
    return [
        {k: r[k] for k in ("endpoint_id", "url", "event_types", "active", "disabled_reason")}
        for r in rows
    ]
