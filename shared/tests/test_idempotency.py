"""``Idempotency-Key`` on commands: run once, the first answer again, remembered with the events."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Annotated, Any

from counting import Incremented, registry
from cunzhi_platform import edge
from cunzhi_platform.aggregate import DomainError
from cunzhi_platform.auth import Principal, in_township
from cunzhi_platform.edge import Body, IdPath
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.housekeeping import prune_idempotency_keys
from cunzhi_platform.idempotency import fingerprint
from cunzhi_platform.runtime import Service, current_runtime
from cunzhi_platform.settings import Settings
from cunzhi_platform.testing import eventually, running, token
from fastapi import Depends, Request

router = edge.router(tags=["counts"])
Office = Annotated[Principal, Depends(in_township("party_building_office"))]


class CountIn(Body):
    counter: edge.Id
    amount: int


@router.post("/townships/{township_id}/counts", status_code=201)
async def count(
    township_id: IdPath,
    principal: Office,
    body: CountIn,
    request: Request,
    wait_s: float = 0,
) -> dict[str, Any]:
    """Appends one event per call (no client-chosen id: a retry would count twice)."""
    if body.amount < 0:
        raise DomainError("a count cannot go down", field="amount")
    rt = current_runtime(request)
    stream = f"counter:{body.counter}"
    stored = await rt.store.append(
        stream, await rt.store.version(stream), [Incremented(counter=body.counter, amount=1)],
        CommandContext(actor=principal.sub),
    )  # fmt: skip
    # Work after the append, on the same pool: part of the keyed command's transaction.
    await rt.pool.execute("SELECT pg_sleep($1)", wait_s)
    return {"event_id": stored[0].envelope.id, "answer": uuid.uuid4().hex}


def service(name: str) -> Service:
    return Service(name=name, registry=registry, routers=[router])


def office(settings: Settings, sub: str = "p1") -> dict[str, str]:
    return token(settings, sub=sub, roles=["party_building_office"], township_ids=["t1"])


async def counted(client: Any, counter: str) -> int:
    rt = client.app.state.runtime
    return len(await rt.store.load(f"counter:{counter}"))


async def test_a_retry_with_the_same_key_stores_nothing_and_answers_the_first_answer(
    schema, settings, pool
):
    async with running(service(schema), settings) as client:
        url, body = "/townships/t1/counts", {"counter": "a", "amount": 1}
        keyed = {**office(settings), "Idempotency-Key": "8e03978e-40d5-43e8-bc93-6894a57f9324"}
        first = await client.post(url, json=body, headers=keyed)
        assert first.status_code == 201, first.text
        again = await client.post(url, json=body, headers=keyed)
        assert (again.status_code, again.content) == (201, first.content)
        assert again.headers["idempotent-replayed"] == "true"
        assert again.headers["content-type"] == "application/json"
        assert await counted(client, "a") == 1
        # Remembered with the event it produced, in the service's schema
        row = await pool.fetchrow(
            f'SELECT principal, status, event_ids FROM "{schema}".idempotency_keys'
        )
        assert (row["principal"], row["status"]) == ("p1", 201)
        assert [str(e) for e in row["event_ids"]] == [first.json()["event_id"]]

        # The quoted form of the draft names the same key
        quoted = {**keyed, "Idempotency-Key": '"8e03978e-40d5-43e8-bc93-6894a57f9324"'}
        r = await client.post(url, json=body, headers=quoted)
        assert r.content == first.content and await counted(client, "a") == 1

        # The same key for another request: refused, nothing stored
        r = await client.post(url, json={**body, "amount": 2}, headers=keyed)
        assert r.status_code == 422 and r.json()["field"] == "Idempotency-Key", r.text
        r = await client.post("/townships/t1/counts?wait_s=0", json=body, headers=keyed)
        assert r.status_code == 422
        assert await counted(client, "a") == 1

        # Another person's key of the same name is theirs
        theirs = {**office(settings, sub="p2"), "Idempotency-Key": keyed["Idempotency-Key"]}
        r = await client.post(url, json=body, headers=theirs)
        assert r.status_code == 201 and r.content != first.content
        assert await counted(client, "a") == 2

        # Without the header, nothing changes: each call counts
        for _ in range(2):
            r = await client.post(url, json=body, headers=office(settings))
            assert r.status_code == 201 and "idempotent-replayed" not in r.headers
        assert await counted(client, "a") == 4


async def test_a_refused_command_is_not_remembered(schema, settings):
    async with running(service(schema), settings) as client:
        url = "/townships/t1/counts"
        keyed = {**office(settings), "Idempotency-Key": "k-refused"}
        r = await client.post(url, json={"counter": "b", "amount": -1}, headers=keyed)
        assert r.status_code == 422 and r.json()["field"] == "amount"
        r = await client.post(url, json={"counter": "b", "amount": 1}, headers=keyed)
        assert r.status_code == 201 and "idempotent-replayed" not in r.headers
        assert await counted(client, "b") == 1
        # Outside one's jurisdiction: 403, and the key stays free
        r = await client.post(
            "/townships/t9/counts", json={"counter": "b", "amount": 1},
            headers={**keyed, "Idempotency-Key": "k-403"},
        )  # fmt: skip
        assert r.status_code == 403
        for bad in ("", "a b", "é".encode(), "x" * 256):
            r = await client.post(
                url, json={"counter": "b", "amount": 1},
                headers={**office(settings), "Idempotency-Key": bad},
            )  # fmt: skip
            assert r.status_code == 422 and r.json()["field"] == "Idempotency-Key", bad
        assert await counted(client, "b") == 1


async def test_a_retry_while_the_first_runs_is_409_and_then_gets_its_answer(schema, settings, pool):
    async with running(service(schema), settings) as client:
        url, body = "/townships/t1/counts", {"counter": "c", "amount": 1}
        keyed = {**office(settings), "Idempotency-Key": "k-slow"}
        slow = asyncio.create_task(client.post(f"{url}?wait_s=2", json=body, headers=keyed))

        async def sleeping() -> bool:
            return bool(
                await pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE query LIKE 'SELECT pg_sleep($1)%' AND state = 'active'"
                )
            )

        assert await eventually(sleeping, timeout=10)
        r = await client.post(f"{url}?wait_s=2", json=body, headers=keyed)
        assert r.status_code == 409 and r.json()["field"] == "Idempotency-Key", r.text
        # Not committed yet: the event the first appended is not visible to others
        assert await pool.fetchval(f'SELECT count(*) FROM "{schema}".events') == 0
        first = await slow
        assert first.status_code == 201
        r = await client.post(f"{url}?wait_s=2", json=body, headers=keyed)
        assert r.content == first.content and await counted(client, "c") == 1


async def test_housekeeping_forgets_keys_after_their_time(schema, settings, pool):
    async with running(service(schema), settings) as client:
        url, body = "/townships/t1/counts", {"counter": "d", "amount": 1}
        keyed = {**office(settings), "Idempotency-Key": "k-old"}
        assert (await client.post(url, json=body, headers=keyed)).status_code == 201
        table = f'"{schema}".idempotency_keys'
        assert await prune_idempotency_keys(pool, schema, dt.timedelta(hours=1)) == 0
        await pool.execute(f"UPDATE {table} SET created_at = now() - interval '25 hours'")
        assert await prune_idempotency_keys(pool, schema, dt.timedelta(hours=24)) == 1
        r = await client.post(url, json=body, headers=keyed)  # a new command now
        assert r.status_code == 201 and "idempotent-replayed" not in r.headers
        assert await counted(client, "d") == 2


def _request(body_type: str, path: str = "/townships/t1/roster.csv") -> Request:
    scope = {
        "type": "http", "method": "POST", "path": path, "query_string": b"",
        "headers": [(b"content-type", body_type.encode())],
    }  # fmt: skip
    return Request(scope)


def test_a_retried_upload_is_the_same_request_whatever_its_multipart_boundary():
    def upload(boundary: str, content: bytes) -> bytes:
        return (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="roster.csv"\r\n\r\n'
            ).encode()
            + content
            + f"\r\n--{boundary}--\r\n".encode()
        )

    first = fingerprint(_request("multipart/form-data; boundary=abc123"), upload("abc123", b"x"))
    retry = fingerprint(_request('multipart/form-data; boundary="zz9"'), upload("zz9", b"x"))
    other = fingerprint(_request("multipart/form-data; boundary=abc123"), upload("abc123", b"y"))
    assert first == retry != other
    raw = fingerprint(_request("text/csv"), b"x")
    assert raw != fingerprint(_request("text/csv", "/townships/t2/roster.csv"), b"x")
