"""A weak-village campaign round on Bincheng's figures (seed 003), through the HTTP API.

602 villages in 10 townships are imported from CSV, assessed and ranked; the bottom 15 % (90)
are verified with the departments' opinions and 45 confirmed; the worst 25 become
district-level, the other 20 town-level; the 25 district-level villages list 79 problems and
get teams of 64 cadres patroned by 36 district leaders; 34 sending units pledge funds and
projects; 364 targets are set (each a tracked task). A week later half the teams have filed
their on-duty count: the service marks the others late by itself and lights their villages
yellow. ``bincheng_round`` generates the data
deterministically from a seed (names of the villages the seed mentions, the rest made up) and
``campaign_round`` drives the rectification service with it, then reads the figures back from
the read models — the demo prints what the service says, not what was sent.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from cunzhi_platform.auth import Principal, TokenIssuer
from cunzhi_platform.clock import ManualClock, today

from .cycle import _Steps

Json = dict[str, Any]
COUNTY = "county_organisation_department"
TOWNSHIPS = (
    ("shidong", "市东街道"),
    ("shixi", "市西街道"),
    ("shizhong", "市中街道"),
    ("beizhen", "北镇街道"),
    ("pengli", "彭李街道"),
    ("liangcai", "梁才街道"),
    ("binbei", "滨北街道"),
    ("dudian", "杜店街道"),
    ("sanhehu", "三河湖镇"),
    ("yangliuxue", "杨柳雪镇"),
)
NAMED = {
    "shidong": ["西王居委会"],
    "pengli": ["王家居委会", "郭集居委会"],
    "sanhehu": ["肖家村", "大王村", "大营刘村", "侯家园子村"],
    "yangliuxue": ["于家胡同村"],
    "liangcai": ["东玉村", "东小高村", "杨沟朱村"],
    "shixi": ["张八棍村", "张蒋村"],
    "binbei": ["双眼井村"],
}
"""Villages the seed names; the others of the 602 are made up."""
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕"
SUFFIXES = ("家村", "庄", "家庄", "集", "店", "口", "屯", "营")
SYMPTOMS = (
    "hollow_economy",
    "disunited_committee",
    "disorderly_openness",
    "weak_service",
    "weak_secretary",
    "petitions",
    "lax_organisation_life",
    "clan_or_gang_influence",
    "poor_discipline",
    "stalled_development",
)
AREAS = (
    "社会和谐稳定",
    "班子队伍建设",
    "经济社会发展",
    "民生实事落实",
    "基层组织建设",
    "村务规范管理",
)
KIND_OF_AREA = {
    "社会和谐稳定": "化解矛盾纠纷",
    "班子队伍建设": "配强班子",
    "经济社会发展": "发展集体经济",
    "民生实事落实": "实施民生项目",
    "基层组织建设": "规范组织生活",
    "村务规范管理": "规范三务公开",
}
PROBLEM_AREA = {
    "weak": "班子队伍建设",
    "disorderly": "社会和谐稳定",
    "poor": "经济社会发展",
    "specialised": "民生实事落实",
}
DEPARTMENT_TYPES = ("party_committee", "political_legal", "economic", "sector")
VERIFIERS = (
    ("discipline_commission", "经查，班子成员存在违纪问题线索"),
    ("political_legal_committee", "扫黑除恶中掌握有矛盾纠纷"),
    ("petitions_bureau", "近两年来信来访较多"),
)


@dataclass
class RoundData:
    county_id: str
    townships: list[tuple[str, str]]
    csv: str
    assessments: list[Json]
    departments: list[Json]
    leaders: list[Json]
    cadres: list[Json]
    villages: list[tuple[str, str, str]]
    """(village id, name, township id) of every village, in register order."""
    rng: random.Random = field(repr=False)


def bincheng_round(
    county_id: str, seed: int = 2019, townships_count: int = 10, villages_count: int = 602
) -> RoundData:
    """602 villages in 10 townships (61 in the first two, 60 in the others), seeded; or as many
    villages in the first ``townships_count`` townships, spread as evenly."""
    if not 1 <= townships_count <= len(TOWNSHIPS) or villages_count < townships_count:
        raise ValueError(f"between 1 and {len(TOWNSHIPS)} townships, at least a village in each")
    rng = random.Random(seed)
    townships = [(f"{county_id}-{tid}", name) for tid, name in TOWNSHIPS[:townships_count]]
    rows, assessments = ["village_id,name,kind,township_id"], []
    villages: list[tuple[str, str, str]] = []
    used: set[str] = set()
    each, extra = divmod(villages_count, townships_count)
    for n, (tid, name) in enumerate(townships):
        named = list(NAMED.get(TOWNSHIPS[n][0], []))
        for i in range(each + 1 if n < extra else each):
            if named:
                village = named.pop(0)
            else:
                village = rng.choice(SURNAMES) + rng.choice(SUFFIXES)
                while village in used:
                    village = rng.choice(SURNAMES) + rng.choice(SURNAMES) + rng.choice(SUFFIXES)
            used.add(village)
            vid = f"{tid}-{i + 1:03d}"
            kind = (
                "居"
                if name.endswith("街道") and (village.endswith("居委会") or i % 3 == 0)
                else "村"
            )
            rows.append(f"{vid},{village},{kind},{tid}")
            villages.append((vid, village, tid))
            weakness = rng.random() ** 3  # most villages sound, a few very weak
            assessments.append(
                {
                    "village_id": vid,
                    "symptoms": {
                        s: min(3, int(rng.random() * 4 * weakness + weakness))
                        for s in SYMPTOMS
                        if rng.random() < 0.2 + weakness
                    },
                    "last_year_score": round(95 - 40 * weakness - rng.random() * 10, 1),
                }
            )
    departments = [
        {"department_id": f"d{n:02d}", "name": f"区直单位{n:02d}", "type": DEPARTMENT_TYPES[n % 4]}
        for n in range(1, 35)
    ]  # 34 sending units (派出单位), alternating in type
    leaders = [{"person_id": f"L{n:02d}", "name": f"区级领导{n:02d}"} for n in range(1, 37)]
    bands = ("old", "middle", "young")
    cadres = [
        {"person_id": f"C{n:02d}", "name": f"区直干部{n:02d}", "age_band": bands[n % 3]}
        for n in range(1, 65)
    ]
    csv = "\n".join(rows) + "\n"
    return RoundData(
        county_id, townships, csv, assessments, departments, leaders, cadres, villages, rng
    )


@dataclass(frozen=True)
class Team:
    """A district team or township working group of one village, with a member who reports."""

    team_id: str
    reporter: str
    village_id: str
    target_ids: tuple[str, ...]


@dataclass(frozen=True)
class Round:
    """An opened round, as ``open_round`` left it: every confirmed village with its team."""

    base: str
    """The round's path, ``/campaigns/{id}``."""
    county: dict[str, str]
    """The county organisation department's headers."""
    teams: list[Team]
    dashboard: Json


async def campaign_round(
    client: httpx.AsyncClient,
    clock: ManualClock,
    issuer: TokenIssuer,
    county_id: str,
    say: Callable[[str], None],
) -> Json:
    """Run the round through the API; returns the dashboard as the read models give it, with
    the leaders' patronages (``patronages``)."""
    steps = _Steps(issuer, "")
    opened = await open_round(client, clock, issuer, bincheng_round(county_id), say)
    say("every target village on green; a week passes, half the teams file their on-duty count")
    dashboard = await _first_week(client, steps, issuer, clock, opened)
    patronages: list[Json] = []
    while True:  # every page
        r = await client.get(
            f"{opened.base}/patrons",
            params={"limit": 500, "offset": len(patronages)},
            headers=opened.county,
        )
        r.raise_for_status()
        patronages += r.json()["items"]
        if len(patronages) >= r.json()["total"] or not r.json()["items"]:
            return {**dashboard, "patronages": patronages}


def district_level_count(villages: int) -> int:
    """Bincheng's 25 of 602, in proportion: about half of the 15 % candidates are confirmed
    (``_verify``), and 25 of Bincheng's 45 confirmed became district-level."""
    confirmed = (int(0.15 * villages + 0.5) + 1) // 2
    return max(1, round(confirmed * 25 / 45))


async def open_round(
    client: httpx.AsyncClient,
    clock: ManualClock,
    issuer: TokenIssuer,
    data: RoundData,
    say: Callable[[str], None],
) -> Round:
    """Open round 3 on ``data`` and set it up to the first report: register, ranking,
    verification, tiers, teams, targets, sending units; every target village then on green."""
    county_id = data.county_id
    steps = _Steps(issuer, "")
    county = _token(
        issuer,
        Principal(sub="org-wangli", name="王丽", roles=frozenset({COUNTY}), county_id=county_id),
    )
    start = today(clock)
    opened = await steps.command(
        "open the round",
        client,
        "/campaigns",
        county,
        {
            "county_id": county_id,
            "round_number": 3,
            "name": "第三轮薄弱村集中整顿攻坚",
            "start_date": start.isoformat(),
            "period_years": 2,
            "budget_per_year_yuan": 2_100_000,
            "townships": [{"township_id": t, "name": n} for t, n in data.townships],
            "settings": {"district_level_count": district_level_count(len(data.villages))},
        },
    )
    cid = opened["campaign_id"]
    base = f"/campaigns/{cid}"
    r = await client.post(
        f"{base}/villages.csv",
        content=data.csv.encode(),
        headers={**county, "content-type": "text/csv"},
    )
    if r.is_error:
        raise RuntimeError(f"import the register: {r.status_code} {r.text}")
    await steps.command("assess", client, f"{base}/assessments", county, data.assessments)
    ranked = await steps.command("rank", client, f"{base}/ranking", county)
    say(f"{ranked['ranked']} villages assessed and ranked, {ranked['candidates']} candidates")

    candidates = (
        await steps.until(
            "candidates listed",
            client,
            f"{base}/ranking?candidates_only=true&limit=500",
            county,
            lambda page: page["total"] == ranked["candidates"],
        )
    )["items"]
    await _verify(client, steps, issuer, data, base, county, candidates)
    tiers = await steps.command("tier", client, f"{base}/tiers", county)
    say(f"verified: {len(tiers['district'])} district-level, {len(tiers['town'])} town-level")

    # ids of teams and targets name the round: a village carried over into the next round
    # gets a team and targets of that round, apart from this one's
    rnd = cid.removeprefix(f"{county_id}-")
    teams = await _district_work(client, steps, data, base, rnd, county, tiers["district"], start)
    teams += await _town_work(client, steps, issuer, data, base, rnd, tiers["town"], start)
    for n, unit in enumerate(data.departments):
        await steps.command(
            "record a sending unit",
            client,
            f"{base}/sending-units",
            county,
            {
                "unit_id": unit["department_id"],
                "name": unit["name"],
                "village_ids": [tiers["district"][n % len(tiers["district"])]],
                "funds_yuan": 150_000 + 1_000 * n,
                "projects": [f"{unit['name']}帮扶项目"] * (2 if n < 3 else 1),
            },
        )
    targets = sum(len(t.target_ids) for t in teams)
    units = len(data.departments)
    dashboard = await steps.until(
        "dashboard",
        client,
        f"{base}/dashboard",
        county,
        lambda d: (
            d["targets"] == targets
            and d["sending_units"]["units"] == units
            and d["green"] == len(teams)
        ),
    )
    return Round(base, county, teams, dashboard)


def _token(issuer: TokenIssuer, principal: Principal) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.issue(principal)}"}


async def _verify(
    client: httpx.AsyncClient,
    steps: _Steps,
    issuer: TokenIssuer,
    data: RoundData,
    base: str,
    county: dict[str, str],
    candidates: list[Json],
) -> None:
    """One department's opinion on each candidate; 45 confirmed, the worst more likely."""
    verifiers = [
        (
            _token(issuer, Principal(sub=role, roles=frozenset({role}), county_id=data.county_id)),
            words,
        )
        for role, words in VERIFIERS
    ]
    worst_first = sorted(candidates, key=lambda c: -c["rank"])
    keep = (len(candidates) + 1) // 2  # Bincheng: 45 of 90, the worst 30 and 15 others
    worst = round(keep * 2 / 3)
    kept = set(c["village_id"] for c in worst_first[:worst])
    kept |= set(data.rng.sample([c["village_id"] for c in worst_first[worst:]], keep - worst))
    for n, c in enumerate(worst_first):
        headers, words = verifiers[n % 3]
        vid = c["village_id"]
        await steps.command(
            "opinion",
            client,
            f"{base}/candidates/{vid}/opinions",
            headers,
            {
                "opinion": words,
                "recommends": "confirm" if vid in kept else "remove",
            },
        )
        if vid in kept:
            await steps.command(
                "confirm",
                client,
                f"{base}/candidates/{vid}/confirm",
                county,
                {"reason": "纪委、政法、信访意见和实地查看核实"},
            )
        else:
            await steps.command(
                "remove",
                client,
                f"{base}/candidates/{vid}/remove",
                county,
                {"reason": "实地查看：班子运行正常，问题已整改"},
            )


async def _district_work(
    client: httpx.AsyncClient,
    steps: _Steps,
    data: RoundData,
    base: str,
    rnd: str,
    county: dict[str, str],
    villages: list[str],
    start: dt.date,
) -> list[Team]:
    """79 problems, 25 teams (36 patrons, 64 cadres), six common targets plus one per problem.

    Returns each team with a member who reports for it."""
    rng = data.rng
    teams: list[Team] = []
    kinds = ("weak", "disorderly", "poor", "specialised")
    cadres = iter(data.cadres)
    for n, vid in enumerate(sorted(villages)):
        problems = [
            {
                "problem_id": f"P{p + 1}",
                "kind": kinds[(n + p) % 4] if p < 2 else rng.choice(kinds),
                "description": f"问题{p + 1}",
            }
            for p in range(4 if n < 4 else 3)  # 4 × 4 + 21 × 3 = 79
        ]
        await steps.command("problems", client, f"{base}/villages/{vid}/problems", county, problems)
        proposal = await steps.command(
            "propose a team",
            client,
            f"{base}/team-proposals",
            county,
            {"village_id": vid, "departments": data.departments},
        )
        departments = proposal["departments"][:3]
        members = [
            {**next(cadres), "department_id": departments[m % len(departments)]["department_id"]}
            for m in range(3 if n < 14 else 2)  # 14 × 3 + 11 × 2 = 64
        ]
        # 40 patronages of 36 leaders: the first four patron two villages each
        slots = (2 * n, 2 * n + 1) if n < 15 else (30 + (n - 15),)
        patrons = [data.leaders[s % 36] for s in slots]
        await steps.command(
            "form a team",
            client,
            f"{base}/teams",
            county,
            {
                "team_id": f"team-{vid}-{rnd}",
                "level": "district",
                "village_ids": [vid],
                "departments": departments,
                "members": members,
                "patrons": patrons,
                "township_assistant": "街道党工委副书记",
            },
        )
        targets = _common_targets(vid, rnd, start) + [
            {
                "target_id": f"{vid}-{rnd}-{p['problem_id']}",
                "title": f"解决{p['description']}",
                "area": PROBLEM_AREA[p["kind"]],
                "task_kind": KIND_OF_AREA[PROBLEM_AREA[p["kind"]]],
                "weight": 2,
                "due_date": (start + dt.timedelta(days=365)).isoformat(),
                "owner": members[0]["name"],
            }
            for p in problems
        ]
        await steps.command("targets", client, f"{base}/villages/{vid}/targets", county, targets)
        ids = tuple(t["target_id"] for t in targets)
        teams.append(Team(f"team-{vid}-{rnd}", members[0]["person_id"], vid, ids))
    return teams


async def _town_work(
    client: httpx.AsyncClient,
    steps: _Steps,
    issuer: TokenIssuer,
    data: RoundData,
    base: str,
    rnd: str,
    villages: list[str],
    start: dt.date,
) -> list[Team]:
    """A working group per town-level village, led by a township leadership member; six common
    targets each, and one more for the first fifteen (20 × 6 + 15 = 135; 229 + 135 = 364)."""
    teams: list[Team] = []
    for n, vid in enumerate(sorted(villages)):
        township = vid.rsplit("-", 1)[0]
        office = _token(
            issuer,
            Principal(
                sub=f"office-{township}",
                roles=frozenset({"party_building_office"}),
                township_ids=frozenset({township}),
            ),
        )
        await steps.command(
            "working group",
            client,
            f"{base}/teams",
            office,
            {
                "team_id": f"group-{vid}-{rnd}",
                "level": "town",
                "village_ids": [vid],
                "departments": [
                    {
                        "department_id": township,
                        "name": "乡镇(街道)党(工)委",
                        "type": "party_committee",
                    }
                ],
                "members": [
                    {
                        "person_id": f"{vid}-lead",
                        "name": "班子成员",
                        "department_id": township,
                        "age_band": "middle",
                        "role": "leader",
                    },
                    {
                        "person_id": f"{vid}-m",
                        "name": "乡镇干部",
                        "department_id": township,
                        "age_band": "young",
                    },
                ],
            },
        )
        targets = _common_targets(vid, rnd, start)
        if n < 15:
            targets.append(
                {
                    "target_id": f"{vid}-{rnd}-S1",
                    "title": "壮大村集体经济",
                    "area": "经济社会发展",
                    "task_kind": "盘活集体资产",
                    "weight": 2,
                    "owner": "工作组",
                    "due_date": (start + dt.timedelta(days=540)).isoformat(),
                }
            )
        await steps.command("targets", client, f"{base}/villages/{vid}/targets", office, targets)
        ids = tuple(t["target_id"] for t in targets)
        teams.append(Team(f"group-{vid}-{rnd}", f"{vid}-lead", vid, ids))
    return teams


async def _first_week(
    client: httpx.AsyncClient,
    steps: _Steps,
    issuer: TokenIssuer,
    clock: ManualClock,
    opened: Round,
) -> Json:
    """Every other team files its first weekly on-duty count (每周统计在岗); the clock passes
    the due time; the service marks the others late by itself and their villages turn yellow."""
    base, county = opened.base, opened.county
    filed, missing = opened.teams[::2], opened.teams[1::2]
    due_at = ""
    for team in filed:
        team_id, person_id = team.team_id, team.reporter
        member = _token(issuer, Principal(sub=person_id, roles=frozenset({"work_team_member"})))
        answer = await steps.command(
            "on-duty count",
            client,
            f"{base}/teams/{team_id}/on-duty",
            member,
            {"period": 1, "on_duty_days": {person_id: 5}, "summary": "驻村5天"},
        )
        due_at = answer["due_at"]
    clock.set(dt.datetime.fromisoformat(due_at) + dt.timedelta(minutes=1))
    return await steps.until(
        "late reports and lights",
        client,
        f"{base}/dashboard",
        county,
        lambda d: d["late_reports"] == len(missing) and d["yellow"] == len(missing),
    )


def _common_targets(vid: str, rnd: str, start: dt.date) -> list[Json]:
    """The campaign template: one target in each of the six areas (共性目标)."""
    return [
        {
            "target_id": f"{vid}-{rnd}-C{a + 1}",
            "title": f"{area}共性目标",
            "area": area,
            "task_kind": KIND_OF_AREA[area],
            "weight": 1,
            "due_date": (start + dt.timedelta(days=180 * (1 + a % 4))).isoformat(),
            "owner": "工作组",
            "common": True,
        }
        for a, area in enumerate(AREAS)
    ]


def campaign_summary(d: Json) -> list[str]:
    """The round's figures as the dashboard (a read model) gives them."""
    problems = d["problems_of_district_level"]
    units = d["sending_units"]
    of_two = sum(1 for p in d["patronages"] if len(p["village_ids"]) > 1)
    return [
        f"{d['registered']} villages registered, {d['ranked']} ranked, {d['candidates']} "
        f"candidates, {d['confirmed']} confirmed ({d['removed']} removed after verification)",
        f"{d['district_level']} district-level and {d['town_level']} town-level villages; "
        f"{problems} problems on the district-level lists ({_kinds(d['problems'])})",
        f"{d['district_teams']} district teams: {d['patron_leaders']} district leaders as "
        f"patrons ({of_two} of them of two villages), {d['district_cadres']} cadres; "
        f"{d['teams'] - d['district_teams']} township working groups",
        f"{d['targets']} targets (each a tracked task), {d['overdue_targets']} overdue, "
        f"{d['late_reports']} late reports; progress {d['progress'] or 0:.0f}%",
        f"lights: {d['green']} green, {d['yellow']} yellow, {d['red']} red; "
        f"{units['units']} sending units, {units['funds_yuan'] / 10_000:.0f}万元, "
        f"{units['projects']} projects",
    ]


def _kinds(counts: Json) -> str:
    names = {"weak": "弱", "disorderly": "乱", "poor": "穷", "specialised": "专业"}
    return ", ".join(f"{names[k]} {n}" for k, n in sorted(counts.items()))
