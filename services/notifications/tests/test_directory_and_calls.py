"""The directory (roster events, API, CSV) and the call for topics with its closing reminder."""

from __future__ import annotations

import datetime as dt

from cunzhi_platform.testing import token


async def test_roster_events_feed_the_directory_and_personal_data_is_masked(kit):
    township = kit.fresh("tw")
    person = kit.fresh("p")
    await kit.publish(
        "meetings",
        "RosterMemberAdded",
        {
            "township_id": township,
            "person_id": person,
            "name": "赵主任",
            "role": "middle_cadre",
            "village_id": None,
            "phone": "13812345678",
        },
        f"roster:{township}",
    )

    async def known():
        r = await kit.client.get(f"/people/{person}", headers=kit.admin())
        return r if r.status_code == 200 else None

    r = await kit.until_ready(known)
    assert r.json()["phone"] == "13812345678" and r.json()["roles"] == ["middle_cadre"]
    office = await kit.client.get(f"/people/{person}", headers=kit.office(township))
    assert office.json()["phone"] == "138****5678"
    mine = await kit.client.get(f"/people/{person}", headers=kit.me(person))
    assert mine.json()["phone"] == "13812345678"
    elsewhere = await kit.client.get(f"/people/{person}", headers=kit.office(kit.fresh("tw")))
    assert elsewhere.status_code == 403
    listing = await kit.client.get(f"/townships/{township}/people", headers=kit.office(township))
    assert [p["phone"] for p in listing.json()] == ["138****5678"]


async def test_bad_people_are_refused_with_the_field_and_nothing_is_stored(kit):
    township = kit.fresh("tw")
    r = await kit.client.put(
        f"/people/{kit.fresh('p')}",
        json={"name": "王", "township_id": township, "phone": "12345"},
        headers=kit.office(township),
    )
    assert r.status_code == 422 and "phone" in r.text
    other = await kit.client.put(
        f"/people/{kit.fresh('p')}",
        json={"name": "王", "township_id": kit.fresh("tw")},
        headers=kit.office(township),
    )
    assert other.status_code == 403
    csv_text = (
        "person_id,name,roles,township_id,phone,email\n"
        f"{kit.fresh('a')},甲,village_secretary,{township},13800000001,a@example.cn\n"
        f"{kit.fresh('b')},乙,station_head;party_member,{township},13800000002,not-an-email\n"
    )
    r = await kit.client.post(
        "/people/import",
        content=csv_text.encode(),
        headers={**kit.office(township), "content-type": "text/csv"},
    )
    assert r.status_code == 422 and "line 3" in r.json()["detail"], r.text
    assert (
        await kit.pool.fetchval(
            f"SELECT count(*) FROM {kit.s}.people WHERE township_id = $1", township
        )
        == 0
    )


async def test_call_opened_to_villages_and_stations_then_a_reminder_to_who_submitted_nothing(kit):
    township, forum = kit.fresh("tw"), kit.fresh("forum")
    csv_text = (
        "person_id,name,roles,township_id,village_id,station_id,phone\n"
        + "".join(
            f"{township}-{n},书记{n},village_secretary,{township},v{n},,1380000000{n}\n"
            for n in range(1, 4)
        )
        + f"{township}-nj,站长,station_head,{township},,nongjing,13900000009\n"
        + (f"{township}-m,党员,party_member,{township},v1,,13900000008\n")
    )
    r = await kit.client.post(
        "/people/import",
        content=csv_text.encode(),
        headers={**kit.office(township), "content-type": "text/csv"},
    )
    assert r.json() == {"imported": 5}, r.text
    closes = dt.datetime(2026, 10, 23, 17, 30, tzinfo=kit.start.tzinfo)
    event_id = await kit.publish(
        "topics",
        "CallForTopicsOpened",
        {
            "township_id": township,
            "forum_id": forum,
            "forum_date": "2026-10-30",
            "opened_at": kit.start.isoformat(),
            "closes_at": closes.isoformat(),
        },
        f"call:{township}:{forum}",
    )
    rows = await kit.settled("source_event_id = $1", event_id, count=8)  # 4 people × inbox, sms
    assert {r["recipient_id"] for r in rows} == {f"{township}-{x}" for x in ("1", "2", "3", "nj")}
    sms = kit.channels["sms"].to("13800000001")[0]
    assert "10月23日 17:30" in sms.body

    # village 1 submits (by someone else of the village), the station submits
    for person, village, station in [("x", "v1", None), (f"{township}-nj", None, "nongjing")]:
        await kit.publish(
            "topics",
            "TopicSubmitted",
            {
                "topic_id": kit.fresh("t"),
                "township_id": township,
                "forum_id": forum,
                "village_ids": [],
                "submitter_ids": [person],
                "title": "道路硬化",
                "description": "d",
                "category": "c",
                "submitted_by": person,
                "submitter_role": "village_secretary",
                "submitter_village_id": village,
                "submitter_station_id": station,
                "submitted_at": kit.start.isoformat(),
            },
            f"topic:{forum}",
        )
    assert await kit.until_ready(
        lambda: kit.pool.fetchval(
            f"SELECT count(*) = 2 FROM {kit.s}.submissions WHERE forum_id = $1", forum
        )
    )
    reminder = await kit.pool.fetchrow(
        f"SELECT * FROM {kit.s}.reminders WHERE cancel_key = $1", f"forum:{forum}"
    )
    assert reminder["due_at"] == dt.datetime(2026, 10, 22, 9, 0, tzinfo=kit.start.tzinfo)
    kit.clock.set(reminder["due_at"] + dt.timedelta(minutes=1))
    rows = await kit.until_rows(
        "kind = 'call_closing' AND township_id = $1",
        township,
        check=lambda rows: len(rows) == 4 and all(r["status"] == "sent" for r in rows),
    )
    assert {r["recipient_id"] for r in rows} == {f"{township}-2", f"{township}-3"}
    fired = await kit.pool.fetchval(
        f"SELECT status FROM {kit.s}.reminders WHERE cancel_key = $1", f"forum:{forum}"
    )
    assert fired == "fired"


async def test_a_roster_update_replaces_the_roster_role_and_keeps_those_given_here(kit):
    township, elsewhere, person = kit.fresh("tw"), kit.fresh("tw"), kit.fresh("p")

    def roster(type_name: str, where: str, role: str | None = None):
        body = {"township_id": where, "person_id": person, "name": "赵书记"}
        if role is not None:
            body |= {"role": role, "village_id": None, "phone": None}
        return kit.publish("meetings", type_name, body, f"roster:{where}")

    async def roles_become(expected: list[str]) -> None:
        async def check():
            return await kit.pool.fetchval(
                f"SELECT roles = $2::text[] FROM {kit.s}.people WHERE person_id = $1",
                person,
                expected,
            )

        await kit.until_ready(check)

    await roster("RosterMemberAdded", township, "village_secretary")
    await roster("RosterMemberAdded", elsewhere, "leadership")
    await roles_become(["township_leadership", "village_secretary"])
    # the office edits the person as read back, adding a role of its own
    r = await kit.client.put(
        f"/people/{person}",
        json={
            "name": "赵书记",
            "township_id": township,
            "roles": ["village_secretary", "township_leadership", "party_member"],
        },
        headers=kit.admin(),
    )
    assert r.status_code == 200
    assert r.json()["roles"] == ["party_member", "township_leadership", "village_secretary"]
    await roster("RosterMemberUpdated", township, "middle_cadre")
    await roles_become(["middle_cadre", "party_member", "township_leadership"])
    await roster("RosterMemberRemoved", elsewhere)
    await roles_become(["middle_cadre", "party_member"])


async def test_a_call_opened_past_its_deadline_asks_nobody_for_topics(kit):
    """A forum planned a few days ahead gets a call already closed for submissions: nobody is
    told to submit by a deadline gone, nor reminded of it."""
    township, forum = kit.fresh("tw"), kit.fresh("forum")
    await kit.person(township, roles=["village_secretary"], village_id="v1", phone="13800000001")
    closes = kit.start - dt.timedelta(days=2)
    event_id = await kit.publish(
        "topics",
        "CallForTopicsOpened",
        {
            "township_id": township,
            "forum_id": forum,
            "forum_date": (kit.start + dt.timedelta(days=4)).date().isoformat(),
            "opened_at": kit.start.isoformat(),
            "closes_at": closes.isoformat(),
        },
        f"call:{township}:{forum}",
    )
    assert await kit.until_ready(
        lambda: kit.pool.fetchval(
            f'SELECT true FROM {kit.s}."planner__processed" WHERE event_id = $1', event_id
        )
    )
    assert await kit.rows("source_event_id = $1", event_id) == []
    assert not await kit.pool.fetchval(
        f"SELECT count(*) FROM {kit.s}.reminders WHERE cancel_key = $1", f"forum:{forum}"
    )


async def test_a_call_read_after_it_closed_is_still_told_of(kit):
    """Judged when the call opened: a planner behind its topic (a backlog, an outage) still
    tells of a call that was open then."""
    township, forum = kit.fresh("tw"), kit.fresh("forum")
    secretary = await kit.person(township, roles=["village_secretary"], village_id="v1")
    opened = kit.start - dt.timedelta(days=6)
    event_id = await kit.publish(
        "topics",
        "CallForTopicsOpened",
        {
            "township_id": township,
            "forum_id": forum,
            "forum_date": (kit.start + dt.timedelta(days=4)).date().isoformat(),
            "opened_at": opened.isoformat(),
            "closes_at": (opened + dt.timedelta(days=3)).isoformat(),
        },
        f"call:{township}:{forum}",
    )
    [told] = await kit.settled("source_event_id = $1", event_id, count=1)
    assert (told["recipient_id"], told["kind"]) == (secretary, "call_opened")


async def test_an_office_grants_only_roles_of_its_level_in_its_own_county(kit):
    """A township office enrols nobody into the county's audiences: no county role given or
    taken away, no other county, no made-up role; an administrator may."""

    township, person = kit.fresh("tw"), kit.fresh("p")
    office = token(
        kit.settings,
        sub=kit.fresh("office"),
        roles=["party_building_office"],
        township_ids=[township],
        county_id="bincheng",
    )
    body = {"name": "王书记", "roles": ["village_secretary"], "township_id": township}

    async def put(headers, **fields):
        return await kit.client.put(f"/people/{person}", json={**body, **fields}, headers=headers)

    for roles in (["county_organisation_department"], ["discipline_commission"]):
        r = await put(office, roles=["village_secretary", *roles])
        assert r.status_code == 403 and r.json()["field"] == "roles", r.text
        assert "高于本人层级" in r.json()["detail"]
    made_up = await put(office, roles=["superuser"])
    assert made_up.status_code == 422 and made_up.json()["field"].startswith("roles"), made_up.text
    assert "未知角色" in made_up.text
    other_county = await put(office, county_id="zhanhua")
    assert other_county.status_code == 403 and other_county.json()["field"] == "county_id"
    assert not await kit.pool.fetchval(
        f"SELECT true FROM {kit.s}.people WHERE person_id = $1", person
    )
    own = await put(office, roles=["village_secretary", "party_member"], county_id="bincheng")
    assert own.status_code == 200 and own.json()["roles"] == ["party_member", "village_secretary"]
    # a county role an administrator gave stays the administrator's to take away
    given = await put(kit.admin(), roles=["village_secretary", "petitions_bureau"])
    assert given.status_code == 200
    taken = await put(office, roles=["village_secretary"])
    assert taken.status_code == 403 and taken.json()["field"] == "roles"
    # nor may the office rewrite that person's phone, which carries the county's notices
    rewritten = await put(
        office, roles=["village_secretary", "petitions_bureau"], phone="13812345678"
    )
    assert rewritten.status_code == 403 and "高于本人层级" in rewritten.json()["detail"]
    assert await kit.pool.fetchval(
        f"SELECT phone IS NULL FROM {kit.s}.people WHERE person_id = $1", person
    )
    csv = (
        "person_id,name,roles,township_id\n"
        f"{kit.fresh('p')},李书记,village_secretary;county_organisation_department,{township}\n"
    )
    imported = await kit.client.post(
        "/people/import", content=csv.encode(), headers={**office, "content-type": "text/csv"}
    )
    assert imported.status_code == 403 and imported.json()["field"] == "roles", imported.text
    csv = f"person_id,name,roles,township_id\n{kit.fresh('p')},李书记,superuser,{township}\n"
    imported = await kit.client.post(
        "/people/import", content=csv.encode(), headers={**office, "content-type": "text/csv"}
    )
    assert imported.status_code == 422 and "line 2, column roles" in imported.json()["detail"]
    assert "未知角色" in imported.json()["detail"]
    rows = await kit.pool.fetchval(
        f"SELECT count(*) FROM {kit.s}.people WHERE township_id = $1", township
    )
    assert rows == 1
