"""The HTTP edge every cunzhi service shares: bounded inputs, one error model, documented.

A service's ``adapters/http.py`` gets all of it by building its router here, typing its
parameters and bodies with the types below, and authorising with ``cunzhi_platform.auth``'s
dependencies (``with_role``, ``in_township``, ``in_village``)::

    from cunzhi_platform import edge
    from cunzhi_platform.auth import CurrentPrincipal, Principal, in_township

    router = edge.router(tags=["tasks"])
    Organiser = Annotated[Principal, Depends(in_township("party_building_office"))]

    class TaskIn(edge.Body):               # unknown fields refused
        task_id: edge.Id | None = None     # client-chosen ids: one pattern for every service
        title: edge.Title                  # NFC, stripped, no NUL/controls, something visible
        name: Annotated[str, edge.TextRules(50)]  # the same rules, another length
        note: edge.Note = ""               # the same rules, may be empty
        due: edge.PlausibleDate            # 2000-01-01 … today + 5 years

    @router.post(
        "/townships/{township_id}/tasks",
        status_code=201,
        openapi_extra=edge.links(
            201, read=edge.link("get_task", task_id="$response.body#/task_id")
        ),
    )
    async def create_task(
        township_id: edge.IdPath,
        principal: Organiser,  # role and township decided before the body is validated
        body: TaskIn,
    ) -> dict[str, Any]: ...

    @router.get("/tasks/{task_id}")
    async def get_task(task_id: edge.IdPath, principal: CurrentPrincipal) -> dict[str, Any]:
        ...

    @router.get("/townships/{township_id}/tasks")
    async def tasks(township_id: edge.IdPath, principal: CurrentPrincipal,
                    limit: edge.Limit = 50, offset: edge.Offset = 0,
                    village_id: edge.IdQuery = None) -> dict[str, Any]: ...

Refuse with the platform's errors (``aggregate.DomainError`` 422, ``InvalidTransition`` 409,
``NotFound`` 404, ``Forbidden`` 403, each with ``field=`` where there is one); never raise
``HTTPException`` with a body of your own. Operation ids are the route functions' names (keep
them unique within a service), so links name them. Nothing else to wire: ``runtime.create_app``
installs the error handlers, the body limit, the clock and the document's error responses for
every router; add the service's name to ``FUZZED`` in ``tests/test_fuzz.py`` (its own roles to
``ROLES_OF`` there, and to ``SEEDS`` what the fuzz's ids must name) and the suite fuzzes it.

What a service gets:

- **One error body** (``Problem``) for every refusal: ``{"detail": "<words>", "field":
  "<field or null>", "errors": [{"field", "detail"}…]}`` — domain refusals, validation errors
  (``field`` is the body path like ``tasks.0.due_date``, or the query/path parameter's name),
  authentication, a too-large body (413, ``CUNZHI_HTTP_MAX_BODY_BYTES``), a database outage
  (503 with ``Retry-After``: any error of the connection, ``DATABASE_UNAVAILABLE``), a
  malformed body (400), a key given twice in one JSON object (422, naming it), a bad
  ``X-Correlation-ID`` (422); anything unforeseen answers 500 with the same body.
- **Safe retries**: every command (POST, PUT, PATCH, DELETE) takes an ``Idempotency-Key``
  header and is then run once, its answer remembered with its events
  (``cunzhi_platform.idempotency``); documented on every command.
- **Every status documented** on every operation with that body: 401, 403, 422 and 503
  everywhere; 404 where the path or body names a resource; 400 and 413 where there is a body;
  409 on commands. ``responses=`` on a route adds to these.
- **Times in one format**: every ``datetime`` in a response, however deep, is RFC 3339 in
  Asia/Shanghai (``2026-09-30T09:00:00+08:00``) — with ``edge.router()``; so is a time kept
  as JSON text by a read model under a key named ``at`` or ``…_at``. Any other string, however
  much it looks like a time (a title "2026-01-01T00:00:00Z"), is answered as it was written.
- **Authorise before validating**: FastAPI solves dependencies before it validates the body,
  so a dependency that checks role and jurisdiction from the path (and the token) refuses with
  403 before a malformed body could answer 422. A route that reads a raw body
  (``await request.body()``) reads it after such a dependency; an uploaded CSV is read with
  ``cunzhi_platform.csvfile`` (its cells under the text rules below).

Rules that are ours, not the source reports' (the OpenAPI descriptions say so too):
ids match ``ID_PATTERN``; dates lie in ``DATE_WINDOW_START`` … today + ``DATE_WINDOW_YEARS``
years, which also keeps calendar work (working days, lunar dates) small; offsets stop at
``MAX_OFFSET``; text is NFC-normalised, may not hold NUL, other control characters (tab and
line breaks aside) or unpaired surrogates, and must show at least one visible character.
The document states each of these as the server checks it (a JSON Schema ``pattern`` for text,
for dates beside ``format: date``, ``propertyNames`` for dictionaries keyed by ids with
``keys_are_ids``), so data the document admits is data the server takes: the fuzz's
``positive_data_acceptance`` check holds every service to it.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import sys
import unicodedata
from collections.abc import Callable, Coroutine, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
import structlog
from asyncpg.exceptions import _base as asyncpg_interface
from fastapi import APIRouter, FastAPI, Path, Query, Request, params
from fastapi.dependencies.utils import solve_dependencies
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
)
from pydantic_core import core_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import idempotency
from .aggregate import DomainError
from .clock import SHANGHAI, Clock, SystemClock, today
from .eventstore import ConcurrencyError

_log = structlog.get_logger(__name__)

# -- ids ----------------------------------------------------------------------------------------

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Every id a client names or chooses (townships, villages, people, topics, forums, tasks…):
1–64 letters, digits, ``_ . -``, starting with a letter or digit. No ``:`` (stream ids use it),
no spaces, nothing SQL or a shell would read. A rule of ours."""

_ID_DOC = "1–64 of A–Z a–z 0–9 _ . - (starting with a letter or digit); a rule of ours"
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN), Field(description=_ID_DOC)]
IdPath = Annotated[str, Path(pattern=ID_PATTERN, description=_ID_DOC)]
IdQuery = Annotated[str | None, Query(pattern=ID_PATTERN, description=_ID_DOC)]


def keys_are_ids(schema: dict[str, Any]) -> None:
    """``json_schema_extra`` of a ``dict[Id, V]`` field: its keys follow ``ID_PATTERN``.

    Pydantic publishes such keys as ``patternProperties``, which leaves every other key
    unconstrained (``additionalProperties`` is absent, so anything goes); ``propertyNames``
    says what the server checks: ``Field(json_schema_extra=edge.keys_are_ids)``."""
    values = schema.pop("patternProperties", {}).get(ID_PATTERN, {})
    schema["additionalProperties"] = values
    schema["propertyNames"] = {"pattern": ID_PATTERN, "description": _ID_DOC}


# -- text ---------------------------------------------------------------------------------------

NO_CONTROLS = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$"
"""What the JSON Schema of free text says (the checks add: no unpaired surrogates, something
visible); tab and line breaks are text."""

_INVISIBLE = {"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"}
"""Spaces, controls and format characters (a zero-width space, a right-to-left override) show
nothing. Private-use characters do (GB18030, what Excel writes here, maps rare hanzi there), as
do code points this Unicode database does not know (newer ones: CJK Extension H and later)
and combining marks (on a dotted circle)."""
_ALLOWED_CONTROLS = {"\t", "\n", "\r"}


@functools.cache
def text_pattern(required: bool) -> str:
    """What ``clean_text`` accepts, as a JSON Schema pattern: no controls (``NO_CONTROLS``) and
    something visible — a character outside the invisible categories, listed from the same
    Unicode database the check reads — or, where text may be empty, only what stripping
    removes. Ranges are literal characters (escapes differ between regex dialects); unpaired
    surrogates, which no UTF-8 text holds, are left to the check."""
    text = f"{_NOT_CONTROL}*[^{_invisible()}]{_NOT_CONTROL}*"
    if required:
        return f"^{text}$"
    strippable = "".join(  # every character str.isspace() takes lies below U+3001
        ch
        for ch in map(chr, range(0x3001))
        if ch.isspace() and (ch in _ALLOWED_CONTROLS or unicodedata.category(ch) != "Cc")
    )
    return f"^(?:[{strippable}]*|{text})$"


_NOT_CONTROL = NO_CONTROLS.removeprefix("^").removesuffix("*$")


@functools.cache
def _invisible() -> str:
    ranges: list[tuple[int, int]] = []
    category = unicodedata.category
    for cp in range(sys.maxunicode + 1):
        if category(chr(cp)) not in _INVISIBLE - {"Cs"}:  # UTF-8 cannot carry a surrogate
            continue
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))

    def char(cp: int) -> str:
        return "\\" + chr(cp) if chr(cp) in "\\]-^[" else chr(cp)

    return "".join(char(a) if a == b else f"{char(a)}-{char(b)}" for a, b in ranges)


def clean_text(value: str) -> str:
    """NFC, stripped; refused when it cannot be stored or seen (NUL, controls, unpaired
    surrogates, nothing visible — e.g. only a right-to-left override or a zero-width space)."""
    for ch in value:
        if ch in _ALLOWED_CONTROLS:
            continue
        category = unicodedata.category(ch)
        if category == "Cs":
            raise ValueError("holds an unpaired surrogate (broken UTF-16); send the text again")
        if category == "Cc":
            raise ValueError(
                f"holds the control character U+{ord(ch):04X}; remove it (NUL cannot be stored)"
            )
    value = unicodedata.normalize("NFC", value).strip()
    if value and all(unicodedata.category(ch) in _INVISIBLE for ch in value):
        raise ValueError("shows nothing (only spaces or invisible characters); write some words")
    return value


@dataclass(frozen=True)
class TextRules:
    """Free text of at most ``max_length`` characters after NFC and stripping (``clean_text``);
    ``required``: something visible, otherwise empty is fine (a note). Use it in a type:
    ``Annotated[str, TextRules(100)]``."""

    max_length: int
    required: bool = True

    def check(self, value: str) -> str:
        value = clean_text(value)
        if self.required and not value:
            raise ValueError("is empty; write some words")
        if len(value) > self.max_length:
            raise ValueError(f"is {len(value)} characters long; at most {self.max_length} fit")
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        json_schema = dict(handler(schema))
        json_schema.update(
            minLength=1 if self.required else 0,
            maxLength=self.max_length,
            pattern=text_pattern(self.required),
            description="NFC-normalised; no NUL, control characters or unpaired surrogates; "
            + ("something visible " if self.required else "")
            + "(a rule of ours)",
        )
        return json_schema


Title = Annotated[str, TextRules(200)]
"""A title or a name: one line people read in lists."""
Text = Annotated[str, TextRules(4000)]
"""A description, an outcome, a reason."""
LongText = Annotated[str, TextRules(20_000)]
"""Minutes of a meeting, a task's description."""
Note = Annotated[str, TextRules(1000, required=False)]
"""An optional remark; may be empty."""

# -- dates --------------------------------------------------------------------------------------

DATE_WINDOW_START = dt.date(2000, 1, 1)
DATE_WINDOW_YEARS = 5


_CLOCK: ContextVar[Clock | None] = ContextVar("cunzhi_edge_clock", default=None)


class ClockScope:
    """Validation reads the service's injectable clock (``create_app`` installs this)."""

    def __init__(self, app: Any, clock: Clock) -> None:
        self.app, self.clock = app, clock

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        token = _CLOCK.set(self.clock)
        try:
            await self.app(scope, receive, send)
        finally:
            _CLOCK.reset(token)


def today_here() -> dt.date:
    """Today in Asia/Shanghai on the service's clock (in a request; the system's elsewhere)."""
    return today(_CLOCK.get() or SystemClock())


def date_window(on: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """The dates any command or query may name: 2000-01-01 … today + 5 years (Asia/Shanghai).

    A rule of ours: the mechanisms date from the 2010s (history back to 2020 is entered), and
    nothing is planned further ahead than a term of office; calendar work (working days,
    lunar dates) stays small and quick for any date that passes.
    """
    on = on or today_here()
    try:
        last = on.replace(year=on.year + DATE_WINDOW_YEARS)
    except ValueError:  # 29 February
        last = on.replace(year=on.year + DATE_WINDOW_YEARS, day=28)
    return DATE_WINDOW_START, last


def dates_between(first: dt.date, last: dt.date) -> str:
    """A pattern of the dates ``first`` … ``last`` written as ``YYYY-MM-DD`` (beside ``format:
    date``, which says which of them exist): whole years, then whole months, then days."""
    either = "|".join
    any_day, any_month = "(?:0[1-9]|[12][0-9]|3[01])", "(?:0[1-9]|1[0-2])"
    years, parts = [], []
    for year in range(first.year, last.year + 1):
        if dt.date(year, 1, 1) >= first and dt.date(year, 12, 31) <= last:
            years.append(str(year))
            continue
        for month in range(1, 13):
            start = dt.date(year, month, 1)
            end = (start + dt.timedelta(days=31)).replace(day=1) - dt.timedelta(days=1)
            if end < first or start > last:
                continue
            if start >= first and end <= last:
                parts.append(f"{year}-{month:02}-{any_day}")
                continue
            days = range(max(start, first).day, min(end, last).day + 1)
            parts.append(f"{year}-{month:02}-(?:{either(f'{d:02}' for d in days)})")
    if years:
        parts.insert(0, f"(?:{either(years)})-{any_month}-{any_day}")
    return f"^(?:{either(parts)})$"


@dataclass(frozen=True)
class DateRules:
    """A date of the window (``date_window``), from ``since`` days after today (``None``: the
    window's start) to ``until`` days after today (``None``: its end), both on the service's
    clock. The document states the dates it takes as a pattern, written again each day. Use
    it in a type: ``Annotated[dt.date, DateRules(until=0)]`` (today at the latest)."""

    since: int | None = None
    until: int | None = None

    def bounds(self) -> tuple[dt.date, dt.date]:
        first, last = date_window()
        on = today_here()
        if self.since is not None:
            first = max(first, on + dt.timedelta(days=self.since))
        if self.until is not None:
            last = min(last, on + dt.timedelta(days=self.until))
        return first, last

    def check(self, value: dt.date) -> dt.date:
        first, last = self.bounds()
        if not first <= value <= last:
            raise ValueError(f"{value} lies outside {first} … {last}; give a date in that window")
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        json_schema = dict(handler(schema))
        json_schema["pattern"] = dates_between(*self.bounds())
        return json_schema


PlausibleDate = Annotated[
    dt.date,
    DateRules(),
    Field(description="a date from 2000-01-01 to five years from today (a rule of ours)"),
]
PastDate = Annotated[
    dt.date,
    DateRules(until=0),
    Field(description="a day that has come: from 2000-01-01 to today (Asia/Shanghai)"),
]
"""When something took place (a session held, an issue raised)."""
BeforeToday = Annotated[
    dt.date,
    DateRules(until=-1),
    Field(description="a day before today: from 2000-01-01 to yesterday (Asia/Shanghai)"),
]
FromToday = Annotated[
    dt.date,
    DateRules(since=0),
    Field(description="today or a later day, up to five years from today (Asia/Shanghai)"),
]
AfterToday = Annotated[
    dt.date,
    DateRules(since=1),
    Field(description="a day after today, up to five years from today (Asia/Shanghai)"),
]

# -- pagination ---------------------------------------------------------------------------------

MAX_OFFSET = 1_000_000
"""Further than any list of a county goes (a rule of ours); PostgreSQL's bigint stays far."""


Limit = Annotated[int, Query(ge=1, le=500, description="1 to 500")]
Offset = Annotated[
    int, Query(ge=0, le=MAX_OFFSET, description=f"0 to {MAX_OFFSET:,} (a rule of ours)")
]

# -- bodies -------------------------------------------------------------------------------------


class Body(BaseModel):
    """A request body: unknown fields are refused (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")


# -- the error model ----------------------------------------------------------------------------


class FieldError(BaseModel):
    field: str = Field(description="where: body path (`tasks.0.due_date`) or parameter name")
    detail: str = Field(description="what is wrong, in words")


class Problem(BaseModel):
    """Every refusal of every cunzhi service."""

    detail: str = Field(description="what went wrong and what to do, in words a person reads")
    field: str | None = Field(None, description="the field or parameter at fault, if one is")
    errors: list[FieldError] = Field(
        default_factory=list, description="every field at fault (validation only)"
    )


_MEANING = {
    400: "The body cannot be read (malformed JSON).",
    401: "No bearer token, or one that is expired, badly signed or missing a claim.",
    403: "Outside your role or jurisdiction.",
    404: "There is no such resource.",
    409: "The state does not allow this now, a concurrent change won, a client-chosen id "
    "is already used with different content, or a request with the same Idempotency-Key is "
    "still running.",
    413: "The body is larger than this service accepts.",
    422: "A field is invalid, a key is given twice in one object, the domain refuses the "
    "content, or the Idempotency-Key was used for another request; `field` says which.",
    503: "The database is unavailable for a moment; retry after `Retry-After` seconds.",
}


def document_errors(openapi: dict[str, Any]) -> dict[str, Any]:
    """Give every operation of an OpenAPI document the statuses it can answer besides its
    success, each with the ``Problem`` body: 401, 403, 422 and 503 everywhere; 404 where the
    path or the body names a resource; 400 and 413 with a body; 409 on commands. What a route
    documents itself (``responses=``) stays."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, schema in schemas["Problem"].pop("$defs", {}).items():
        schemas[name] = schema
    for path, item in openapi.get("paths", {}).items():
        for method, operation in item.items():
            if "security" not in operation:
                continue  # operations endpoints (health, metrics) answer for themselves
            statuses = {401, 403, 422, 503}
            if "{" in path or "requestBody" in operation:
                statuses.add(404)  # the path or the body names something that may not exist
            if "requestBody" in operation:
                statuses |= {400, 413}
            if method != "get":
                statuses.add(409)
            parameters = operation.setdefault("parameters", [])
            headers = [CORRELATION_HEADER]
            if method.upper() in idempotency.COMMANDS:
                headers.append(idempotency.PARAMETER)
            for header in headers:
                if not any(p.get("name") == header["name"] for p in parameters):
                    parameters.append(header)
            responses = operation.setdefault("responses", {})
            for status in sorted(statuses):
                documented = responses.get(str(status), {})
                if status == 422 or "content" not in documented:
                    responses[str(status)] = _problem(status)
    return openapi


def _problem(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _MEANING[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if status == 503:
        response["headers"] = {
            "Retry-After": {"description": "seconds", "schema": {"type": "integer"}}
        }
    return response


class EdgeRoute(APIRoute):
    """A route whose answers give every time in Asia/Shanghai, RFC 3339; that refuses an
    unauthorised caller before it says what is wrong with the body (not JSON, a key given
    twice, a bad ``Idempotency-Key``); and that runs a command sent with an
    ``Idempotency-Key`` once (``cunzhi_platform.idempotency``)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, _shanghai_times(endpoint), **kwargs)
        self._json_body = self.body_field is not None and not isinstance(
            self.body_field.field_info, params.Form
        )

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def app(request: Request) -> Response:
            try:
                if self._json_body:
                    await self._parse_json(request)
                key = idempotency.key_of(request)
            except DomainError:
                await self._authorise(request)
                raise
            try:
                sub = None
                if key is not None:
                    sub = request.app.state.token_issuer.subject(
                        request.headers.get("authorization")
                    )
                if key is None or sub is None:  # no key, or a token the handler refuses
                    return await handler(request)
                return await idempotency.run(request, key, sub, handler)
            except RequestValidationError as exc:
                if any(e.get("type") == "json_invalid" for e in exc.errors()):
                    await self._authorise(request)
                raise

        return app

    async def _authorise(self, request: Request) -> None:
        """FastAPI parses the body before it solves the dependencies that authorise; solving
        them without a body raises their 401/403 and calls no endpoint."""
        await solve_dependencies(
            request=request,
            dependant=self.dependant,
            body=None,
            dependency_overrides_provider=self.dependency_overrides_provider,
            async_exit_stack=request.scope["fastapi_inner_astack"],
            embed_body_fields=self._embed_body_fields,
        )

    @staticmethod
    async def _parse_json(request: Request) -> None:
        """Parse a JSON body refusing a key given twice in one object (``json`` would keep
        the last silently); FastAPI then uses the parsed body. Not JSON: FastAPI answers 400."""
        content_type = request.headers.get("content-type", "application/json")
        kind = content_type.split(";")[0].strip().lower()
        if not (kind == "application/json" or re.fullmatch(r"application/.+\+json", kind)):
            return
        body = await request.body()
        if not body:
            return
        try:
            parsed = json.loads(body, object_pairs_hook=_unique_keys)
        except _KeyTwice as exc:
            raise DomainError(
                f"the key {exc.key!r} is given more than once in one object of the body; "
                "give it once",
                field=exc.key,
            ) from None
        except ValueError:  # not JSON (nor UTF-8): FastAPI parses it again and answers 400
            return
        request._json = parsed  # Starlette's cache of request.json(), which FastAPI reads


class _KeyTwice(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _KeyTwice(key)
        found[key] = value
    return found


def router(**kwargs: Any) -> APIRouter:
    """The router of a service's HTTP adapter (``APIRouter`` arguments pass through)."""
    return APIRouter(route_class=EdgeRoute, **kwargs)


def links(status: int = 200, **named: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI links of a route's success answer, for ``openapi_extra=``:
    ``links(201, read=link("get_topic", topic_id="$response.body#/topic_id"))``."""
    return {"responses": {str(status): {"links": named}}}


def link(
    operation_id: str, *, request_body: dict[str, Any] | None = None, **parameters: str
) -> dict[str, Any]:
    """A link to the operation named ``operation_id`` (a route's function name, see
    ``operation_ids``) whose ``parameters`` come from runtime expressions, e.g.
    ``topic_id="$response.body#/topic_id"`` or ``township_id="$request.path.township_id"``;
    ``request_body`` may hold such expressions as values too."""
    found: dict[str, Any] = {"operationId": operation_id, "parameters": parameters}
    if request_body is not None:
        found["requestBody"] = request_body
    return found


def operation_ids(route: APIRoute) -> str:
    """Operation ids are the routes' function names (``generate_unique_id_function``), so
    links can name them and generated clients read well."""
    return route.name


def _shanghai(value: Any, time_key: bool = False) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(SHANGHAI) if value.tzinfo else value.replace(tzinfo=SHANGHAI)
    if isinstance(value, dict):
        return {k: _shanghai(v, _is_time_key(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_shanghai(v, time_key) for v in value]
    if isinstance(value, BaseModel):
        return _shanghai(value.model_dump())
    if time_key and isinstance(value, str) and _RFC3339.match(value):
        return dt.datetime.fromisoformat(value).astimezone(SHANGHAI).isoformat()
    return value


# A time a read model kept as JSON text (``…_at``, in another offset or ``Z``) is a time;
# the same characters in a title or a note are what a person wrote, and stay as written.
_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _is_time_key(key: object) -> bool:
    return isinstance(key, str) and (key == "at" or key.endswith("_at"))


def _shanghai_times(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    if getattr(endpoint, "__cunzhi_edge__", False):
        return endpoint

    @functools.wraps(endpoint)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return _shanghai(await endpoint(*args, **kwargs))

    wrapper.__cunzhi_edge__ = True  # type: ignore[attr-defined]
    return wrapper


# -- answering errors ---------------------------------------------------------------------------

RETRY_AFTER_S = 5
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.InsufficientResourcesError,  # class 53: too many connections, disk full
    asyncpg.OperatorInterventionError,  # class 57: shutdown, cannot connect now
    asyncpg.ReadOnlySQLTransactionError,  # a replica after a failover
    asyncpg.InterfaceError,  # the connection closed or died under the query, the pool closing
    asyncpg.InternalClientError,  # the protocol lost its footing when the connection broke
    OSError,  # refused, reset, unreachable when the pool opens a connection
    TimeoutError,  # the pool has no connection to give, or the server does not answer
)
"""Errors of the connection rather than of the request: 503 with ``Retry-After`` (a retry
after the outage succeeds). asyncpg's ``DataError`` and feature errors are interface errors of
our own making, not of the connection: they stay server errors."""
_OUR_OWN = (
    asyncpg_interface.DataError,  # an argument of the wrong type (not SQLSTATE class 22)
    asyncpg_interface.ClientConfigurationError,
    asyncpg_interface.UnsupportedClientFeatureError,
    asyncpg_interface.UnsupportedServerFeatureError,
)


def _field(loc: Iterable[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


def _validation_words(error: dict[str, Any]) -> str:
    message = str(error.get("msg", "invalid"))
    return message.removeprefix("Value error, ")


def problem(status: int, detail: str, field: str | None = None, **extra: Any) -> JSONResponse:
    body = Problem(detail=detail, field=field, **extra).model_dump(mode="json")
    return JSONResponse(body, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """Make every refusal of ``app`` a ``Problem`` (see the module docstring)."""

    async def domain_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)
        return problem(exc.status, exc.message, exc.field)

    async def conflict(_: Request, exc: Exception) -> JSONResponse:
        return problem(409, str(exc))

    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            FieldError(field=_field(e.get("loc", ())), detail=_validation_words(e))
            for e in exc.errors()
        ]
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return problem(400, "the body is not valid JSON; check quotes, commas and brackets")
        first = errors[0] if errors else FieldError(field="body", detail="invalid")
        detail = "; ".join(f"{e.field}: {e.detail}" for e in errors[:5])
        return problem(422, detail, first.field, errors=errors)

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        response = problem(exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, _OUR_OWN):  # a bug: logged in full, as Starlette would
            _log.error("request_failed", path=request.url.path, exc_info=exc)
            return await failed(request, exc)
        _log.warning(
            "database_unavailable", path=request.url.path, error=f"{type(exc).__name__}: {exc}"
        )
        response = problem(
            503, f"the database is unavailable; try again in {RETRY_AFTER_S} seconds"
        )
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    async def failed(_: Request, exc: Exception) -> JSONResponse:
        # Starlette raises the exception again after this answer is sent: the server logs it.
        return problem(
            500,
            "something went wrong on our side; it is logged with this request's "
            "X-Correlation-ID — try again, and report it with that id if it persists",
        )

    app.add_exception_handler(Exception, failed)
    app.add_exception_handler(DomainError, domain_error)
    app.add_exception_handler(ConcurrencyError, conflict)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    for kind in DATABASE_UNAVAILABLE:
        app.add_exception_handler(kind, unavailable)


# -- the size of a body -------------------------------------------------------------------------


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is larger than {limit:,} bytes; send less at a time")


class BodyLimit:
    """Refuse a body beyond ``max_bytes`` with 413 before reading it (``Content-Length``), or
    as soon as the bytes received pass it (a streamed body). Plain ASGI, so it costs no task."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            exc = BodyTooLarge(self.max_bytes)
            await problem(exc.status_code, str(exc.detail))(scope, receive, send)
            return
        received = 0

        async def counted() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException, so FastAPI's body reading passes it on to the handler.
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted, send)


# -- the correlation header ---------------------------------------------------------------------

CORRELATION_PATTERN = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
"""What ``X-Correlation-ID`` may hold: 1–128 safe characters (a UUID, a W3C trace id…)."""
CORRELATION_HEADER = {
    "name": "X-Correlation-ID",
    "in": "header",
    "required": False,
    "description": "carried into the logs and the events this call causes, and echoed; made up "
    "when absent (1–128 of A–Z a–z 0–9 . _ : / + = -; a rule of ours)",
    "schema": {"type": "string", "pattern": f"^{CORRELATION_PATTERN.pattern}$"},
}
