"""Likely duplicates among a township's topics, on Chinese titles (no spaces between words)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from cunzhi_topics.adapters.similar import title_terms

if TYPE_CHECKING:
    from conftest import Kit


def test_titles_are_split_into_words_without_function_words() -> None:
    assert title_terms("流动党员管理难") == sorted(["流动", "党员", "管理", "难"])
    # search mode: a compound word also yields its parts; 关于, 的, 等 say nothing
    assert set(title_terms("关于党员发展工作细则的意见")) == {
        "党员",
        "发展",
        "工作",
        "细则",
        "工作细则",
        "意见",
    }
    assert title_terms("，。！") == []


@pytest.mark.slow
async def test_a_submission_lists_the_townships_similar_topics_and_not_near_misses(
    kit: Kit,
) -> None:
    town, other_town = kit.fresh("town"), kit.fresh("town")
    village = kit.fresh("v")
    forum = await kit.open_call(town)
    other_forum = await kit.open_call(other_town)
    wang = kit.secretary(town, village)

    async def submit(title: str, township: str = town, call: str = forum) -> str:
        headers = wang if township == town else kit.secretary(township, village)
        topic_id = await kit.submit(township, call, headers, title=title, village_ids=[village])
        await kit.topic(topic_id, bool)
        return topic_id

    lost_touch = await submit("流动党员管理难")
    await submit("党员发展工作细则")  # shares only 党员: a near miss
    await submit("村民选举委员会工作职责")
    await submit("流动党员管理难", other_town, other_forum)  # another township's
    withdrawn = await submit("外出流动党员管理")
    r = await kit.post(f"/topics/{withdrawn}/withdraw", wang, {"reason": "重复"})
    assert r.status_code == 200, r.text
    await kit.topic(withdrawn, lambda t: t["state"] == "withdrawn")

    r = await kit.client.post(
        f"/townships/{town}/calls/{forum}/topics",
        json={
            "title": "外出流动党员失联",
            "description": "部分外出务工党员长期联系不上",
            "category": "member_management",
            "village_ids": [village],
        },
        headers=wang,
    )
    assert r.status_code == 201, r.text
    answer = r.json()
    assert [(s["topic_id"], s["score"]) for s in answer["similar"]] == [(lost_touch, 0.33)]

    # The office sees the same from the topic it consolidates, in both directions.
    new = answer["topic_id"]
    await kit.topic(new, bool)
    r = await kit.client.get(f"/topics/{lost_touch}/similar", headers=kit.office(town))
    assert r.status_code == 200, r.text
    assert [s["topic_id"] for s in r.json()] == [new]
    r = await kit.client.get(f"/topics/{lost_touch}/similar", headers=kit.office(other_town))
    assert r.status_code == 403
