"""Who did what, when, in which jurisdiction: ``GET /audit`` over the event store's metadata."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Kit

pytestmark = pytest.mark.slow


async def test_the_audit_names_people_and_the_service_itself_within_ones_jurisdiction(
    kit: Kit,
) -> None:
    town, other_town, village = kit.fresh("town"), kit.fresh("town"), kit.fresh("v")
    forum = await kit.open_call(town)  # as a policy would: no person behind it
    await kit.open_call(other_town)
    wang_id = kit.fresh("wang")
    wang = {**kit.secretary(town, village, sub=wang_id), "X-Correlation-ID": f"req-{wang_id}"}
    topic_id = await kit.submit(town, forum, wang, village_ids=[village])

    r = await kit.client.get(f"/audit?correlation_id=req-{wang_id}", headers=kit.office(town))
    assert r.status_code == 200, r.text
    (submitted,) = r.json()["items"]
    assert (submitted["type"], submitted["actor"]) == ("cunzhi.topics.TopicSubmitted", wang_id)
    assert (submitted["stream_id"], submitted["township_id"]) == (f"topic:{topic_id}", town)

    r = await kit.client.get(
        f"/audit?actor=system:topics&township_id={town}", headers=kit.office(town)
    )
    assert {i["type"] for i in r.json()["items"]} >= {
        "cunzhi.topics.CallForTopicsScheduled",
        "cunzhi.topics.CallForTopicsOpened",
    }
    assert {i["township_id"] for i in r.json()["items"]} == {town}

    # An office sees its own townships only; the county sees them all; villages see none.
    r = await kit.client.get("/audit?actor=system:topics", headers=kit.office(town))
    assert {i["township_id"] for i in r.json()["items"]} == {town}
    r = await kit.client.get(f"/audit?township_id={other_town}", headers=kit.office(town))
    assert r.status_code == 403
    r = await kit.client.get("/audit?actor=system:topics&limit=500", headers=kit.county())
    assert {town, other_town} <= {i["township_id"] for i in r.json()["items"]}
    assert (await kit.client.get("/audit", headers=wang)).status_code == 403
