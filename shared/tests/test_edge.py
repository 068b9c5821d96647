"""The HTTP edge every service shares: tokens, the error model, bounds, outages, the document."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from typing import Annotated, Any

import asyncpg
import jwt
import pytest
from asyncpg.exceptions import _base as asyncpg_interface
from counting import registry
from cunzhi_platform import edge
from cunzhi_platform.auth import (
    InsecureSettings,
    Principal,
    check_token_settings,
    in_township,
)
from cunzhi_platform.clock import SHANGHAI, ManualClock
from cunzhi_platform.edge import Body, IdPath, Limit, Offset, PlausibleDate
from cunzhi_platform.infra import free_port
from cunzhi_platform.runtime import Service, current_runtime
from cunzhi_platform.settings import DEMO_JWT_SECRET, Settings
from cunzhi_platform.testing import eventually, running, token
from fastapi import Depends, Request

router = edge.router(tags=["things"])
Office = Annotated[Principal, Depends(in_township("party_building_office"))]


class ThingIn(Body):
    title: edge.Title
    due: PlausibleDate
    note: edge.Note = ""


@router.post("/townships/{township_id}/things", status_code=201)
async def add_thing(township_id: IdPath, principal: Office, body: ThingIn) -> dict[str, Any]:
    return {
        "township_id": township_id,
        "title": body.title,
        "at": dt.datetime(2026, 9, 1, 1, 0, tzinfo=dt.UTC),  # 09:00 in Shanghai
        # A time a read model kept as JSON text: converted, being a time (…_at).
        "nested": [{"seen_at": dt.datetime(2026, 9, 1, 2, 0, tzinfo=dt.UTC).isoformat()}],
    }


@router.get("/townships/{township_id}/things")
async def things(
    township_id: IdPath,
    principal: Office,
    request: Request,
    limit: Limit = 50,
    offset: Offset = 0,
    wait_s: float = 0,
) -> dict[str, Any]:
    pool = current_runtime(request).pool
    found = await pool.fetchval("SELECT $1::bigint FROM pg_sleep($2)", offset, wait_s)
    return {"offset": found, "limit": limit}


FAILURES: dict[str, Exception] = {
    # What asyncpg raises when PostgreSQL dies, restarts or fails over under a query, or the
    # pool cannot give a connection: each is the connection's trouble, not the request's.
    "internal_client": asyncpg.InternalClientError("unexpected connection_lost() call"),
    "protocol": asyncpg.exceptions.ProtocolError("unexpected message"),
    "interface": asyncpg.InterfaceError("cannot perform operation: connection is closed"),
    "does_not_exist": asyncpg.ConnectionDoesNotExistError("connection was closed in the middle"),
    "pool_closing": asyncpg.InterfaceError("pool is closing"),
    "outdated_cache": asyncpg.exceptions.OutdatedSchemaCacheError("cached statement plan"),
    "connection_08": asyncpg.PostgresConnectionError("08000"),
    "failure_08006": asyncpg.ConnectionFailureError("08006"),
    "cannot_connect_08001": asyncpg.ClientCannotConnectError("08001"),
    "admin_shutdown": asyncpg.AdminShutdownError("terminating connection"),
    "crash_shutdown": asyncpg.CrashShutdownError("crash"),
    "cannot_connect_now": asyncpg.CannotConnectNowError("the database system is starting up"),
    "too_many": asyncpg.TooManyConnectionsError("too many clients"),
    "read_only": asyncpg.ReadOnlySQLTransactionError("read-only transaction"),
    "reset": ConnectionResetError("reset by peer"),
    "refused": ConnectionRefusedError("refused"),
    "broken_pipe": BrokenPipeError("broken pipe"),
    "timeout": TimeoutError(),
}


@router.get("/townships/{township_id}/failing/{name}")
async def failing(township_id: IdPath, name: str, principal: Office) -> None:
    raise FAILURES.get(name) or asyncpg_interface.DataError("invalid input for query argument $1")


def service(name: str) -> Service:
    return Service(name=name, registry=registry, routers=[router])


def office(settings: Settings, township: str = "t1") -> dict[str, str]:
    return token(settings, sub="p1", roles=["party_building_office"], township_ids=[township])


def raw_token(settings: Settings, **claims: Any) -> dict[str, str]:
    encoded = jwt.encode(claims, settings.jwt_secret, algorithm=settings.jwt_algorithm)
    return {"Authorization": f"Bearer {encoded}"}


GOOD = {"title": "修路", "due": "2026-10-01"}


async def test_tokens_missing_claims_or_of_the_wrong_shape_are_refused_with_the_reason(
    schema, settings
):
    later = int(dt.datetime.now(dt.UTC).timestamp()) + 600
    base = {"aud": settings.jwt_audience, "exp": later, "sub": "p1", "township_ids": ["t1"]}
    async with running(service(schema), settings) as client:
        url = "/townships/t1/things"
        no_exp = {k: v for k, v in base.items() if k != "exp"}
        r = await client.get(url, headers=raw_token(settings, **no_exp, roles=["x"]))
        assert r.status_code == 401 and "exp" in r.json()["detail"]
        no_sub = {k: v for k, v in base.items() if k != "sub"}
        r = await client.get(url, headers=raw_token(settings, **no_sub, roles=["x"]))
        assert r.status_code == 401 and "sub" in r.json()["detail"]
        for nobody in ("", "   "):  # a token naming no one acts for no one
            r = await client.get(url, headers=raw_token(settings, **{**base, "sub": nobody}))
            assert r.status_code == 401 and "sub" in r.json()["detail"], r.text
        r = await client.get(url, headers=raw_token(settings, **base, roles="office"))
        assert r.status_code == 401 and "roles" in r.json()["detail"]
        assert r.headers["www-authenticate"] == "Bearer"

    with_issuer = settings.model_copy(update={"jwt_issuer": "https://idp.county.example"})
    async with running(service(schema), with_issuer) as client:
        r = await client.get(url, headers=raw_token(settings, **base, roles=["x"]))
        assert r.status_code == 401 and "iss" in r.json()["detail"]
        r = await client.get(url, headers=office(with_issuer))
        assert r.status_code == 200


async def test_a_deployment_answers_only_tokens_of_its_county(schema, settings):
    county = settings.model_copy(update={"county_id": "dongchangfu"})
    async with running(service(schema), county) as client:
        url = "/townships/t1/things"
        mine = token(
            county, sub="p1", roles=["party_building_office"], township_ids=["t1"],
            county_id="dongchangfu",
        )  # fmt: skip
        assert (await client.get(url, headers=mine)).status_code == 200
        other = token(
            county, sub="p1", roles=["party_building_office"], township_ids=["t1"],
            county_id="bincheng",
        )  # fmt: skip
        r = await client.get(url, headers=other)
        assert r.status_code == 403 and r.json()["field"] == "county_id"
        assert "dongchangfu" in r.json()["detail"]
        assert (await client.get(url, headers=office(county))).status_code == 403


def test_start_up_refuses_a_guessable_key(settings):
    with pytest.raises(InsecureSettings, match="at least 32"):
        check_token_settings(settings.model_copy(update={"jwt_secret": "short-secret"}))
    remote = settings.model_copy(
        update={
            "database_url": "postgresql://cunzhi@db.county.internal:5432/cunzhi",
            "kafka_bootstrap_servers": "kafka-0.county.internal:9092",
        }
    )
    assert remote.jwt_secret == DEMO_JWT_SECRET
    with pytest.raises(InsecureSettings, match="demo key"):
        check_token_settings(remote)
    check_token_settings(remote.model_copy(update={"jwt_secret": "k" * 48}))
    check_token_settings(settings)  # the embedded pair, on loopback: the demo key is fine


async def test_start_up_with_a_short_key_fails(schema, settings):
    with pytest.raises(InsecureSettings):
        async with running(service(schema), settings.model_copy(update={"jwt_secret": "x" * 8})):
            pass


async def test_refusals_share_one_body_and_authorisation_comes_before_validation(schema, settings):
    async with running(service(schema), settings) as client:
        url = "/townships/t1/things"
        bad = {"title": "\u202e\u200b", "due": "0001-01-01", "colour": "red"}
        r = await client.post(url, json=bad, headers=office(settings))
        assert r.status_code == 422
        problem = r.json()
        assert set(problem) == {"detail", "field", "errors"}
        fields = {e["field"]: e["detail"] for e in problem["errors"]}
        assert set(fields) == {"title", "due", "colour"}
        assert "invisible" in fields["title"] and "2000-01-01" in fields["due"]
        assert problem["field"] == "title" and "title:" in problem["detail"]
        # The same body outside one's township: 403, not what the body lacks.
        r = await client.post("/townships/t2/things", json=bad, headers=office(settings))
        assert r.status_code == 403 and r.json()["field"] == "township_id"
        r = await client.post(url, json=GOOD, headers=office(settings, "t2"))
        assert r.status_code == 403
        as_json = {**office(settings), "Content-Type": "application/json"}
        r = await client.post(url, content=b'{"title": ', headers=as_json)
        assert r.status_code == 400 and "JSON" in r.json()["detail"]
        # Not even a broken body tells an outsider more than that they may not.
        outsider = {**office(settings, "t2"), "Content-Type": "application/json"}
        r = await client.post(url, content=b'{"title": ', headers=outsider)
        assert r.status_code == 403 and r.json()["field"] == "township_id"
        r = await client.post(url, content=b"{", headers={"Content-Type": "application/json"})
        assert r.status_code == 401
        r = await client.post(url, json=GOOD)
        assert r.status_code == 401 and r.json()["field"] is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("a\\u0000b", "U+0000"),
        ("a\\ud800b", "surrogate"),  # as JSON escapes it
        ("\u200b\u202e ", "invisible"),
        ("   ", "empty"),
        ("x" * 201, "at most 200"),
    ],
)
async def test_text_that_cannot_be_stored_or_seen_is_refused(schema, settings, value, reason):
    async with running(service(schema), settings) as client:
        body = json.dumps({**GOOD, "title": "TITLE"}).replace("TITLE", value)
        headers = {**office(settings), "Content-Type": "application/json"}
        r = await client.post("/townships/t1/things", content=body.encode(), headers=headers)
        assert r.status_code == 422 and r.json()["field"] == "title"
        assert reason in r.json()["detail"]


async def test_text_is_normalised_and_dates_stay_in_the_window(schema, settings):
    async with running(service(schema), settings) as client:
        url = "/townships/t1/things"
        r = await client.post(
            url, json={**GOOD, "title": "  Cafe\u0301 "}, headers=office(settings)
        )
        assert r.status_code == 201 and r.json()["title"] == "Caf\u00e9"
        for due in ("0001-01-01", "1999-12-31", "9999-12-31"):
            r = await client.post(url, json={**GOOD, "due": due}, headers=office(settings))
            assert r.status_code == 422 and r.json()["field"] == "due"
        r = await client.post(url, json={**GOOD, "due": "2020-01-06"}, headers=office(settings))
        assert r.status_code == 201


async def test_the_date_window_follows_the_services_clock(schema, settings):
    clock = ManualClock(dt.datetime(2030, 1, 1, 9, 0, tzinfo=SHANGHAI))
    async with running(service(schema), settings, clock) as client:
        url = "/townships/t1/things"
        r = await client.post(url, json={**GOOD, "due": "2034-12-31"}, headers=office(settings))
        assert r.status_code == 201, r.text
        r = await client.post(url, json={**GOOD, "due": "2035-01-02"}, headers=office(settings))
        assert r.status_code == 422 and "2035-01-01" in r.json()["detail"]


async def test_times_in_every_answer_are_rfc3339_in_shanghai(schema, settings):
    async with running(service(schema), settings) as client:
        r = await client.post("/townships/t1/things", json=GOOD, headers=office(settings))
        assert r.json()["at"] == "2026-09-01T09:00:00+08:00"
        assert r.json()["nested"] == [{"seen_at": "2026-09-01T10:00:00+08:00"}]
        assert dt.datetime.fromisoformat(r.json()["at"]).utcoffset() == dt.timedelta(hours=8)
        assert SHANGHAI.key == "Asia/Shanghai"


async def test_text_that_looks_like_a_time_is_answered_as_written(schema, settings):
    async with running(service(schema), settings) as client:
        for title in ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00+00:00"):
            body = {**GOOD, "title": title}
            r = await client.post("/townships/t1/things", json=body, headers=office(settings))
            assert r.status_code == 201 and r.json()["title"] == title


async def test_offsets_and_limits_are_bounded(schema, settings):
    async with running(service(schema), settings) as client:
        url = "/townships/t1/things"
        r = await client.get(url, params={"offset": 2**63}, headers=office(settings))
        assert r.status_code == 422 and r.json()["field"] == "offset"
        r = await client.get(url, params={"offset": edge.MAX_OFFSET}, headers=office(settings))
        assert r.status_code == 200 and r.json()["offset"] == edge.MAX_OFFSET
        r = await client.get(url, params={"limit": 0}, headers=office(settings))
        assert r.status_code == 422 and r.json()["field"] == "limit"
        r = await client.get("/townships/t1%00x/things", headers=office(settings))
        assert r.status_code == 422 and r.json()["field"] == "township_id"
        r = await client.get("/townships/t1';drop/things", headers=office(settings))
        assert r.status_code == 422


async def test_bodies_beyond_the_limit_are_refused_before_they_are_read(schema, settings):
    small = settings.model_copy(update={"http_max_body_bytes": 1_000})
    async with running(service(schema), small) as client:
        url = "/townships/t1/things"
        big = {**GOOD, "note": "x" * 2_000}
        r = await client.post(url, json=big, headers=office(small))
        assert r.status_code == 413 and r.json()["detail"]

        async def stream():  # no Content-Length: counted while it arrives
            yield b'{"title": "x", "due": "2026-10-01", "note": "'
            for _ in range(10):
                yield b"y" * 200
            yield b'"}'

        r = await client.post(url, content=stream(), headers=office(small))
        assert r.status_code == 413


async def test_the_correlation_header_is_bounded(schema, settings):
    async with running(service(schema), settings) as client:
        url = "/townships/t1/things"
        for bad in ("x" * 129, "a b", "<script>", "é".encode(), ""):
            r = await client.get(url, headers={**office(settings), "X-Correlation-ID": bad})
            assert r.status_code == 422 and r.json()["field"] == "X-Correlation-ID"
        ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        r = await client.get(url, headers={**office(settings), "X-Correlation-ID": ok})
        assert r.status_code == 200 and r.headers["x-correlation-id"] == ok


async def test_a_database_outage_answers_503_with_retry_after(schema, settings, pool, caplog):
    async with running(service(schema), settings) as client:
        rt = client.app.state.runtime
        url = "/townships/t1/things"
        live = rt.pool
        dead = await asyncpg.create_pool(
            f"postgresql://postgres@127.0.0.1:{free_port()}/cunzhi", min_size=0, timeout=2
        )
        try:
            rt.pool = dead
            r = await client.get(url, headers=office(settings))
            assert r.status_code == 503 and r.headers["retry-after"] == "5"
            assert "database is unavailable" in r.json()["detail"]

            # A connection killed under a query (a PostgreSQL restart, a failover).
            rt.pool = live
            slow = asyncio.create_task(
                client.get(url, params={"wait_s": 30}, headers=office(settings))
            )

            async def sleeping() -> list[int]:
                return [
                    row["pid"]
                    for row in await pool.fetch(
                        "SELECT pid FROM pg_stat_activity WHERE query LIKE '%FROM pg_sleep($2)'"
                        " AND state = 'active'"
                    )
                ]

            pids = await eventually(sleeping, timeout=10)
            await pool.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid", pids)
            r = await slow
            assert r.status_code == 503 and r.headers["retry-after"] == "5"
            r = await client.get(url, headers=office(settings))  # the pool reconnects
            assert r.status_code == 200
        finally:
            rt.pool = live
            await dead.close()


@pytest.mark.parametrize("name", sorted(FAILURES))
async def test_every_error_of_the_database_connection_answers_503_with_the_problem_body(
    schema, settings, name
):
    async with running(service(schema), settings) as client:
        r = await client.get(f"/townships/t1/failing/{name}", headers=office(settings))
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == str(edge.RETRY_AFTER_S)
        assert r.headers["content-type"] == "application/json"
        assert "database is unavailable" in r.json()["detail"]


async def test_an_error_of_our_own_answers_500_with_the_problem_body(schema, settings):
    async with running(service(schema), settings) as client:
        # asyncpg's DataError is an InterfaceError too, but the request's (a bug), not an outage
        r = await client.get("/townships/t1/failing/data", headers=office(settings))
        assert r.status_code == 500 and r.headers["content-type"] == "application/json"
        assert r.json()["detail"] and "retry-after" not in r.headers


async def test_a_key_given_twice_in_a_body_is_refused_naming_it(schema, settings):
    async with running(service(schema), settings) as client:
        url = "/townships/t1/things"
        twice = '{"title": "修路", "due": "2026-10-01", "title": "修桥"}'
        json_headers = {"Content-Type": "application/json"}
        r = await client.post(url, content=twice, headers={**office(settings), **json_headers})
        assert r.status_code == 422 and r.json()["field"] == "title", r.text
        assert "'title'" in r.json()["detail"]
        nested = '{"title": "修路", "due": "2026-10-01", "note": "", "x": {"a": 1, "a": 2}}'
        r = await client.post(url, content=nested, headers={**office(settings), **json_headers})
        assert r.status_code == 422 and r.json()["field"] == "a"
        # Outside one's jurisdiction the answer is 403, whatever the body
        r = await client.post(
            "/townships/t2/things", content=twice, headers={**office(settings), **json_headers}
        )
        assert r.status_code == 403
        once = '{"title": "修路", "due": "2026-10-01"}'
        r = await client.post(url, content=once, headers={**office(settings), **json_headers})
        assert r.status_code == 201 and r.json()["title"] == "修路"


async def test_every_operation_documents_each_status_with_the_problem_body(schema, settings):
    async with running(service(schema), settings) as client:
        document = (await client.get("/openapi.json")).json()
        assert "HTTPValidationError" not in document["components"]["schemas"]
        post = document["paths"]["/townships/{township_id}/things"]["post"]
        get = document["paths"]["/townships/{township_id}/things"]["get"]
        assert post["operationId"] == "add_thing"
        assert set(post["responses"]) == {"201", "400", "401", "403", "404", "409", "413", "422",
                                          "503"}  # fmt: skip
        assert set(get["responses"]) == {"200", "401", "403", "404", "422", "503"}
        for status in ("403", "422", "503"):
            schema_ref = post["responses"][status]["content"]["application/json"]["schema"]
            assert schema_ref == {"$ref": "#/components/schemas/Problem"}
        assert "Retry-After" in get["responses"]["503"]["headers"]
        assert "responses" not in document["paths"]["/healthz"]["get"] or set(
            document["paths"]["/healthz"]["get"]["responses"]
        ) == {"200"}
        problem = document["components"]["schemas"]["Problem"]
        assert set(problem["required"]) == {"detail"}
        header = next(p for p in get["parameters"] if p["name"] == "X-Correlation-ID")
        assert header["in"] == "header" and not header["required"]
        key = next(p for p in post["parameters"] if p["name"] == "Idempotency-Key")
        assert key["in"] == "header" and not key["required"] and "pattern" in key["schema"]
        assert "Idempotency-Key" not in {p["name"] for p in get["parameters"]}
        offset = next(p for p in get["parameters"] if p["name"] == "offset")
        assert offset["schema"]["maximum"] == edge.MAX_OFFSET


async def test_the_audit_of_a_township_pages_newest_first_through_an_index(schema, settings, pool):
    async with running(service(schema), settings) as client:
        # 40,000 events of 200 townships, as a county's store holds after a while
        await pool.execute(
            f"""INSERT INTO "{schema}".events (stream_id, stream_version, event_id, type,
                    schema_version, payload, metadata, recorded_at)
                SELECT 'counter:' || i, 1, gen_random_uuid(), 'cunzhi.test.Incremented', 1,
                       jsonb_build_object('township_id', 't' || (i % 200), 'counter', 'c' || i,
                                          'amount', 1),
                       jsonb_build_object('actor', 'p' || (i % 7), 'correlation_id', 'c' || i),
                       now() - (40000 - i) * interval '1 second'
                FROM generate_series(1, 40000) i"""
        )
        await pool.execute(f'ANALYZE "{schema}".events')
        store = client.app.state.runtime.store
        for asked, index in (
            ({"township_ids": ["t1", "t2"], "offset": 5000}, "events_by_township_position"),
            ({"township_ids": ["t1"], "before": 30000, "actor": "p3"}, "events_by_township"),
            ({"township_ids": None, "before": 20000, "offset": 100}, "events_pkey"),
        ):
            sql, args = store.audit_query(limit=50, **asked)
            plan = str(await pool.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args))
            assert "Seq Scan" not in plan and index in plan, (asked, plan)

        office2 = token(
            settings, sub="p1", roles=["party_building_office"], township_ids=["t1", "t2"]
        )
        seen: list[int] = []
        before = None
        while True:
            params: dict[str, Any] = {"limit": 150}
            if before is not None:
                params["before"] = before
            r = await client.get("/audit", params=params, headers=office2)
            assert r.status_code == 200, r.text
            seen += [item["position"] for item in r.json()["items"]]
            assert {item["township_id"] for item in r.json()["items"]} <= {"t1", "t2"}
            before = r.json()["next_before"]
            if before is None:
                break
        assert len(seen) == 400 and seen == sorted(seen, reverse=True)

        r = await client.get("/audit", params={"offset": 10_001}, headers=office2)
        assert r.status_code == 422 and r.json()["field"] == "offset"


async def test_the_audit_takes_real_times_only(schema, settings):
    async with running(service(schema), settings) as client:
        county = token(settings, sub="c1", roles=["county_organisation_department"])
        for bad in ("2026-13-45T25:61", "2026-02-30T10:00:00+08:00", "soon", "0", "0.5"):
            r = await client.get("/audit", params={"since": bad}, headers=county)
            assert r.status_code == 422 and r.json()["field"] == "since", (bad, r.text)
        # any real time bounds the filter, however far out (the document admits them all)
        for good in ("2026-11-25T09:00:00+08:00", "2026-11-25T01:00:00Z", "2026-11-25T09:00",
                     "1594-08-07T00:00:00Z", "9999-12-31T23:59:59-23:59"):  # fmt: skip
            r = await client.get("/audit", params={"until": good}, headers=county)
            assert r.status_code == 200, (good, r.text)
        document = (await client.get("/openapi.json")).json()
        (since,) = [p for p in document["paths"]["/audit"]["get"]["parameters"]
                    if p["name"] == "since"]  # fmt: skip
        schemas = since["schema"].get("anyOf", [since["schema"]])
        assert {"type": "string", "format": "date-time"} in schemas
        assert not any("pattern" in s for s in schemas)


TEXTS = ["", " ", "\u3000\t\n", "a", " 王 ", "\u200b", "\u202e\u200b ", "\x00a", "a\x1b",
         "\ue000", "\u0301", "Cafe\u0301", "\U000323af", "\u2028", "\ufeff", "第\n一\r\n条",
         "\x85", "\t"]  # fmt: skip


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("required", [True, False])
def test_the_published_text_pattern_is_the_check(text, required):
    """The document admits exactly the text the server takes (the fuzz's positive data found
    text of spaces or invisible characters admitted, then refused)."""
    rules = edge.TextRules(100, required=required)
    try:
        rules.check(text)
        accepted = True
    except ValueError:
        accepted = False
    assert bool(re.match(edge.text_pattern(required), text)) == accepted


def test_private_use_and_newer_characters_are_text():
    """GB18030 maps rare hanzi to private use; a newer Unicode's hanzi (CJK Extension H) is
    unknown to this database: both are seen, so both are text."""
    assert edge.TextRules(200).check("\ue000") == "\ue000"
    assert edge.TextRules(200).check("张\U000323af") == "张\U000323af"


@pytest.mark.parametrize(
    ("first", "last"),
    [
        (edge.DATE_WINDOW_START, dt.date(2031, 3, 9)),
        (dt.date(2026, 12, 8), dt.date(2031, 12, 8)),
        (dt.date(2026, 2, 28), dt.date(2026, 3, 1)),
        (dt.date(2024, 1, 1), dt.date(2024, 12, 31)),
    ],
)
def test_the_published_date_pattern_is_the_window(first, last):
    pattern = re.compile(edge.dates_between(first, last))
    day = first - dt.timedelta(days=40)
    while day <= last + dt.timedelta(days=40):
        assert bool(pattern.match(day.isoformat())) == (first <= day <= last), day
        day += dt.timedelta(days=1)
    assert not pattern.match("9999-01-01") and not pattern.match(f"{last.year}-13-01")


async def test_the_document_states_the_window_of_the_services_clock(schema, settings):
    clock = ManualClock(dt.datetime(2030, 1, 1, 9, 0, tzinfo=SHANGHAI))
    async with running(service(schema), settings, clock) as client:
        document = (await client.get("/openapi.json")).json()
        due = document["components"]["schemas"]["ThingIn"]["properties"]["due"]
        assert due["format"] == "date"
        assert due["pattern"] == edge.dates_between(edge.DATE_WINDOW_START, dt.date(2035, 1, 1))
        clock.advance(dt.timedelta(days=1))  # the document follows the day
        document = (await client.get("/openapi.json")).json()
        due = document["components"]["schemas"]["ThingIn"]["properties"]["due"]
        assert due["pattern"] == edge.dates_between(edge.DATE_WINDOW_START, dt.date(2035, 1, 2))
