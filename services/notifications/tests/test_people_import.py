"""The directory's CSV import, read as every upload is (``cunzhi_platform.csvfile``)."""

from __future__ import annotations

import pytest
from cunzhi_platform.testing import token

HEAD = "person_id,name,roles,township_id,phone\n"
TWO_BAD = "{p},王书记,village_secretary,{t},123\n{p}x,李,,{t},,extra\n"


async def people_of(kit, township: str) -> int:
    query = f"SELECT count(*) FROM {kit.s}.people WHERE township_id = $1"
    count: int = await kit.pool.fetchval(query, township)
    return count


async def test_the_file_is_read_only_for_an_office_or_an_administrator(kit) -> None:
    member = token(kit.settings, sub="m", roles=["party_member"], township_ids=["t1"])
    r = await kit.client.post(
        "/people/import",
        content=b"person_id,name\r\x00\xff garbage",
        headers={**member, "content-type": "text/csv"},
    )
    assert r.status_code == 403


@pytest.mark.parametrize(
    ("rows", "words"),
    [
        # a bare CR in the header: csv.Error, answered 500
        ("person_id,name\rroles\n", "line 1: unreadable CSV"),
        ("{p},王\x00书记,village_secretary,{t},\n", "line 2, column name: holds the control"),
        (TWO_BAD, "line 2, column phone: a mainland mobile number"),
        (TWO_BAD, "line 3: 6 values"),
    ],
)
async def test_every_bad_line_is_named_and_nothing_stored(kit, rows, words) -> None:
    township = kit.fresh("tw")
    text = rows if rows.startswith("person_id") else HEAD + rows
    r = await kit.client.post(
        "/people/import",
        content=text.format(p=kit.fresh("p"), t=township).encode(),
        headers={**kit.office(township), "content-type": "text/csv"},
    )
    assert r.status_code == 422 and r.json()["field"] == "file", r.text
    assert words in r.json()["detail"]
    assert await people_of(kit, township) == 0


async def test_cells_are_cleaned_and_a_form_upload_is_read(kit) -> None:
    township, person = kit.fresh("tw"), kit.fresh("p")
    form = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="p.csv"\r\n\r\n'
        + f"{HEAD}{person}, 王书记 ,village_secretary,{township},13800000001\n".encode("gb18030")
        + b"\r\n--b--\r\n"
    )
    r = await kit.client.post(
        "/people/import",
        content=form,
        headers={**kit.office(township), "content-type": "multipart/form-data; boundary=b"},
    )
    assert r.json() == {"imported": 1}, r.text
    r = await kit.client.get(f"/people/{person}", headers=kit.admin())
    assert r.json()["name"] == "王书记"
