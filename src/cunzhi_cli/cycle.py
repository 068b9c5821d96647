"""One monthly village cadre forum (乡村干部论坛) of Guandi township (关堤乡), end to end.

``forum_cycle`` drives the topics, meetings and rectification services only through what any
client sees: their HTTP APIs with JWT roles, and the broker. ``cunzhi demo`` and the end-to-end
test both run it, so the demo shows exactly what the test checks.

The steps, and who moves each one:

1. the party-building office imports the roster and plans the forum (meetings HTTP);
2. ``ForumPlanned`` reaches topics over the broker, which opens the call for topics at once
   because the clock is past D−10;
3. village secretaries submit topics; two villages report the same problem (流动党员管理);
4. the office merges the duplicates and shortlists (topics HTTP);
5. the clock passes the call's deadline and the topics timer closes the call;
6. the committee selects the merged topic and disposes of the others (defer, refer, decline);
7. ``TopicSelected`` reaches meetings over the broker, which sets the forum's topic;
8. the clock reaches the notice time and the meetings timer issues the notice by itself;
9. on the forum day the office records attendance, speakers and minutes;
10. the committee adopts a resolution: a policy document and tasks for villages;
11. ``ResolutionAdopted`` reaches rectification over the broker, which tracks the tasks; each
    village secretary reports progress and completes their task with evidence (rectification
    HTTP); its ``TaskCompleted`` events close the forum (meetings) and resolve the topic
    (topics).

Time: the services share one ``ManualClock``. The cycle moves it to the times the services
publish themselves (the call's ``closes_at``, the forum's ``notice_due_at`` and ``date``) and
never re-derives their calendar rules, so a change of those rules cannot silently desynchronise
the demo from the services.

Waiting: a command answers once its events are stored; read models and the other service follow
through the relay and the broker. Each step therefore polls the read model it depends on and,
if that never gets there, raises ``CycleError`` naming the step and the last answer seen.

People, villages and documents are illustrative: six of Guandi's 19 villages, names made up.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from cunzhi_platform.auth import Principal, TokenIssuer
from cunzhi_platform.clock import SHANGHAI, ManualClock

from .ledger import LEDGER
from .ledger import entry as ledger_entry

TOWNSHIP_NAME = "关堤乡"
CYCLE_START = dt.datetime(2026, 10, 21, 9, 0, tzinfo=SHANGHAI)
"""A Wednesday. The default forum date is then Friday 30 October (the month's last working
day), whose call for topics should have opened on the 20th (D−10): ForumPlanned opens it at
once. October is chosen because its notice (Tuesday 27th) falls after the call closes (Friday
23rd), so the automatic notice visibly waits for the clock."""
STEP_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.1

OFFICE = "party_building_office"
COMMITTEE = "township_committee"
VILLAGE_SECRETARY = "village_secretary"
COUNTY = "county_organisation_department"

Json = dict[str, Any]
Headers = dict[str, str]
Report = Callable[[str], None]


class CycleError(RuntimeError):
    """A step of the cycle was refused or stalled; the message names the step."""


@dataclass(frozen=True)
class Person:
    person_id: str
    name: str
    title: str


@dataclass(frozen=True)
class Village:
    code: str
    name: str
    secretary: Person


LEADERSHIP = (
    Person("chen-lixin", "陈立新", "党委书记"),
    Person("zhou-jianhua", "周建华", "乡长"),
    Person("wu-haiyan", "吴海燕", "党委副书记"),
    Person("zheng-hongwei", "郑宏伟", "组织委员"),
)
MIDDLE_CADRES = (
    Person("ma-xiaodong", "马晓东", "党建办主任"),
    Person("yang-chunsheng", "杨春生", "农经站站长"),
    Person("he-zhiyong", "何志勇", "司法所所长"),
)
QIAN, HOU, DONG, XI, NAN, BEI = VILLAGES = (
    Village("qianguandi", "前关堤村", Person("wang-jianguo", "王建国", "支部书记")),
    Village("houguandi", "后关堤村", Person("li-guoqiang", "李国强", "支部书记")),
    Village("dongxinzhuang", "东辛庄村", Person("zhang-shulin", "张树林", "支部书记")),
    Village("xiliuzhuang", "西刘庄村", Person("liu-yuhua", "刘玉华", "支部书记")),
    Village("nansunzhuang", "南孙庄村", Person("sun-desheng", "孙德胜", "支部书记")),
    Village("beiwangzhuang", "北王庄村", Person("zhao-zhigang", "赵志刚", "支部书记")),
)
FIRST_SECRETARY = Person("feng-bo", "冯博", "驻村第一书记")
EXPERT = {"expert_name": "刘振华", "affiliation": "市委党校", "subject": "新时代农村基层党建"}
POLICY = {"title": "关堤乡流动党员联系服务制度", "document_number": "关党发〔2026〕21号"}


@dataclass(frozen=True)
class Submission:
    village: Village
    title: str
    description: str
    category: str


MOBILE_MEMBERS = (
    Submission(
        HOU,
        "流动党员管理难",
        "本村外出务工经商党员23名，常年在外，组织生活参加不上，党费收缴不及时，个别党员多年失联。",
        "member_management",
    ),
    Submission(
        NAN,
        "外出流动党员失联、组织关系“挂空”",
        "村里17名党员在外地务工，组织关系在村、人在外地，“三会一课”参加不上，管理出现空档。",
        "member_management",
    ),
)
ECONOMY = Submission(
    DONG,
    "村集体经济薄弱、增收渠道单一",
    "村集体除少量土地发包外没有经营性收入，想办合作社但缺项目、缺资金。",
    "collective_economy",
)
DEMOLITION = Submission(
    BEI,
    "征地拆迁补偿标准不统一",
    "县城扩建涉及本村120户，群众对补偿标准和安置方式顾虑较多。",
    "land_acquisition_demolition",
)
DISPUTE = Submission(
    QIAN,
    "两户村民宅基地边界纠纷",
    "两户村民因宅基地边界多次争吵，要求乡里出面解决。",
    "disputes_petitions",
)
REFERRED_TO = "乡征地拆迁工作办公室"
DECLINE_REASON = "属个案纠纷，由村调解委员会和乡司法所依法调处，不作为论坛议题"
ABSENT = {MIDDLE_CADRES[2].person_id: "参加县司法局业务培训"}
LATE = frozenset({BEI.secretary.person_id})
MINUTES = (
    "围绕流动党员管理难题，刘振华作专题辅导，王建国、刘玉华交流本村做法；与会人员面对面讨论，"
    "议定出台《关堤乡特殊党员管理办法》，建立流动党员台账和联系人制度，每月开展一次线上组织生活。"
)


@dataclass(frozen=True)
class CycleResult:
    township_id: str
    forum_id: str
    topic_ids: dict[str, str]
    """Submitted topic title → topic id."""
    selected_topic: Json
    """The selected (merged) topic as topics finally shows it."""
    forum: Json
    """The forum's full record as meetings finally shows it."""
    township_record: Json
    task_ids: tuple[str, ...]
    tasks: tuple[Json, ...]
    """The forum's tasks as rectification finally shows them."""


def village_id(township_id: str, village: Village) -> str:
    """Village ids carry the township id, so that each run's villages are its own."""
    return f"{township_id}-{village.code}"


class _Steps:
    """HTTP calls that raise ``CycleError`` naming the step, and read-model polling."""

    def __init__(self, issuer: TokenIssuer, township_id: str) -> None:
        self.issuer = issuer
        self.township_id = township_id

    def as_(self, sub: str, name: str, *roles: str, village: Village | None = None) -> Headers:
        principal = Principal(
            sub=sub,
            name=name,
            roles=frozenset(roles),
            township_ids=frozenset({self.township_id}),
            village_ids=frozenset({village_id(self.township_id, village)} if village else ()),
        )
        return {"Authorization": f"Bearer {self.issuer.issue(principal)}"}

    async def command(
        self, step: str, client: httpx.AsyncClient, path: str, headers: Headers, body: Any = None
    ) -> Json:
        r = await client.post(path, json=body, headers=headers)
        if r.is_error:
            raise CycleError(f"{step}: POST {path} was answered {r.status_code}: {r.text}")
        answer: Json = r.json()
        return answer

    async def until(
        self,
        step: str,
        client: httpx.AsyncClient,
        path: str,
        headers: Headers,
        ready: Callable[[Json], bool],
    ) -> Json:
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while True:
            r = await client.get(path, headers=headers)
            last: Any = r.json() if r.status_code == 200 else f"{r.status_code} {r.text}"
            if r.status_code == 200 and ready(last):
                return dict(last)
            if time.monotonic() > deadline:
                raise CycleError(
                    f"stalled at «{step}»: GET {path} did not get there within "
                    f"{STEP_TIMEOUT_S:.0f}s; last answer: {last}"
                )
            await asyncio.sleep(POLL_INTERVAL_S)


def _roster(township_id: str) -> list[Json]:
    def member(person: Person, role: str, village: Village | None = None) -> Json:
        return {
            "person_id": person.person_id,
            "name": person.name,
            "role": role,
            "village_id": village_id(township_id, village) if village else None,
        }

    return [
        *(member(p, "leadership") for p in LEADERSHIP),
        *(member(p, "middle_cadre") for p in MIDDLE_CADRES),
        *(member(v.secretary, "village_secretary", v) for v in VILLAGES),
    ]


def _shanghai(moment: str) -> dt.datetime:
    return dt.datetime.fromisoformat(moment).astimezone(SHANGHAI)


def _titled(people: Sequence[Person]) -> str:
    return "、".join(f"{p.name}({p.title})" for p in people)


def _names(people: Sequence[Json]) -> str:
    return "、".join(p["name"] for p in people)


async def forum_cycle(
    topics: httpx.AsyncClient,
    meetings: httpx.AsyncClient,
    rectification: httpx.AsyncClient,
    clock: ManualClock,
    issuer: TokenIssuer,
    township_id: str,
    report: Report,
) -> CycleResult:
    """Run one forum of ``township_id`` from roster to close; see the module docstring.

    ``clock`` is the services' clock, expected at ``CYCLE_START`` (or another moment past the
    call's D−10 and before its deadline); ``report`` gets one line per step.
    """
    steps = _Steps(issuer, township_id)
    office = steps.as_(MIDDLE_CADRES[0].person_id, MIDDLE_CADRES[0].name, OFFICE)
    committee = steps.as_(LEADERSHIP[0].person_id, LEADERSHIP[0].name, COMMITTEE)
    county = steps.as_("county-org", "县委组织部", COUNTY)

    # 1. Roster and plan (meetings).
    roster = _roster(township_id)
    await steps.command(
        "import the roster", meetings, f"/townships/{township_id}/roster", office, roster
    )
    report(
        f"roster of {TOWNSHIP_NAME}: {len(roster)} default attendees — leadership "
        f"{_titled(LEADERSHIP)}; middle-level cadres {_titled(MIDDLE_CADRES)}; village party "
        f"secretaries {'、'.join(f'{v.secretary.name}({v.name})' for v in VILLAGES)}"
    )
    plan = {
        "place": "关堤乡政府三楼会议室",
        "mode": "at_township",
        "expert_lectures": [EXPERT],
        "exchange_speaker_ids": [QIAN.secretary.person_id, XI.secretary.person_id],
        "discussion": True,
    }
    planned = await steps.command(
        "plan the forum", meetings, f"/townships/{township_id}/forums", office, plan
    )
    forum_id: str = planned["forum_id"]
    report(
        f"forum {forum_id} planned (No. {planned['number']}) for {planned['date']} at "
        f"{plan['place']}: lecture by {EXPERT['expert_name']} ({EXPERT['affiliation']}), "
        f"experience exchange by {QIAN.secretary.name} and {XI.secretary.name}, discussion"
    )
    await steps.command(
        "invite the first secretary",
        meetings,
        f"/forums/{forum_id}/invitees",
        office,
        {
            "person_id": FIRST_SECRETARY.person_id,
            "name": FIRST_SECRETARY.name,
            "role": FIRST_SECRETARY.title,
            "village_id": village_id(township_id, NAN),
        },
    )
    report(f"invited beyond the roster: {FIRST_SECRETARY.name} ({NAN.name}{FIRST_SECRETARY.title})")

    # 2. ForumPlanned → topics opens the call.
    call_path = f"/townships/{township_id}/calls/{forum_id}"
    call = await steps.until(
        "topics opens the call for topics on ForumPlanned",
        topics,
        call_path,
        office,
        lambda c: c["state"] == "open",
    )
    closes_at = _shanghai(call["closes_at"])
    report(
        f"call for topics open (ForumPlanned over the broker): since "
        f"{_shanghai(call['opens_at']):%Y-%m-%d %H:%M}, closes {closes_at:%Y-%m-%d %H:%M}"
    )

    # 3. Submissions from the villages: two of them report the same problem.
    topic_ids: dict[str, str] = {}
    for s in (*MOBILE_MEMBERS, ECONOMY, DEMOLITION, DISPUTE):
        secretary = s.village.secretary
        answer = await steps.command(
            f"{s.village.name} submits «{s.title}»",
            topics,
            f"{call_path}/topics",
            steps.as_(secretary.person_id, secretary.name, VILLAGE_SECRETARY, village=s.village),
            {
                "title": s.title,
                "description": s.description,
                "category": s.category,
                "village_ids": [village_id(township_id, s.village)],
            },
        )
        topic_ids[s.title] = answer["topic_id"]
        report(f"topic submitted by {secretary.name} ({s.village.name}): «{s.title}»")

    # 4. The office merges the duplicates and shortlists.
    merged_id, duplicate_id = (topic_ids[s.title] for s in MOBILE_MEMBERS)
    await steps.command(
        "merge the duplicates",
        topics,
        "/topics/merge",
        office,
        {"survivor_id": merged_id, "merged_topic_ids": [duplicate_id]},
    )
    shortlist = [merged_id, topic_ids[ECONOMY.title], topic_ids[DEMOLITION.title]]
    for topic_id in shortlist:
        await steps.command("shortlist", topics, f"/topics/{topic_id}/shortlist", office)
    report(
        f"the office merged «{MOBILE_MEMBERS[1].title}» into «{MOBILE_MEMBERS[0].title}» and "
        f"shortlisted {len(shortlist)} topics"
    )

    # 5. Past the deadline the topics timer closes the call.
    clock.set(closes_at + dt.timedelta(minutes=1))
    await steps.until(
        "the topics timer closes the call at its deadline",
        topics,
        call_path,
        office,
        lambda c: c["state"] == "closed",
    )
    report(f"clock → {clock.now():%Y-%m-%d %H:%M}: the call closed by itself (topics timer)")

    # 6. The committee selects one topic and disposes of every other.
    await steps.command(
        "the committee selects the topic",
        topics,
        f"{call_path}/selection",
        committee,
        {
            "topic_id": merged_id,
            "dispositions": {
                topic_ids[ECONOMY.title]: {"kind": "defer"},
                topic_ids[DEMOLITION.title]: {"kind": "refer", "department": REFERRED_TO},
                topic_ids[DISPUTE.title]: {"kind": "decline", "reason": DECLINE_REASON},
            },
        },
    )
    report(
        f"the committee selected «{MOBILE_MEMBERS[0].title}»; deferred «{ECONOMY.title}» to the "
        f"next call, referred «{DEMOLITION.title}» to {REFERRED_TO}, declined "
        f"«{DISPUTE.title}» ({DECLINE_REASON})"
    )

    # 7. TopicSelected → meetings sets the forum's topic; the notice is not due yet.
    forum_path = f"/forums/{forum_id}"
    forum = await steps.until(
        "meetings sets the forum's topic on TopicSelected",
        meetings,
        forum_path,
        office,
        lambda f: f["topic"] is not None and f["topic"]["topic_id"] == merged_id,
    )
    notice_due_at = _shanghai(forum["notice_due_at"])
    report(
        f"meetings set the forum's topic (TopicSelected over the broker); status "
        f"{forum['status']}, notice due {notice_due_at:%Y-%m-%d %H:%M}"
    )

    # 8. The meetings timer issues the notice when the clock gets there.
    clock.set(notice_due_at)
    forum = await steps.until(
        "the meetings timer issues the notice",
        meetings,
        forum_path,
        office,
        lambda f: f["status"] == "noticed",
    )
    attendees: list[Json] = forum["notice"]["attendees"]
    report(
        f"clock → {clock.now():%Y-%m-%d %H:%M}: notice issued automatically to "
        f"{len(attendees)} attendees, each to prepare remarks"
    )

    # 9. The forum is held on its day.
    forum_date = dt.date.fromisoformat(forum["date"])
    clock.set(dt.datetime.combine(forum_date, dt.time(14, 30), tzinfo=SHANGHAI))
    attendance = [
        {"person_id": a["person_id"], "status": "absent", "reason": ABSENT[a["person_id"]]}
        if a["person_id"] in ABSENT
        else {
            "person_id": a["person_id"],
            "status": "late" if a["person_id"] in LATE else "present",
        }
        for a in attendees
    ]
    speakers = [
        LEADERSHIP[0].person_id,
        QIAN.secretary.person_id,
        XI.secretary.person_id,
        *(s.village.secretary.person_id for s in MOBILE_MEMBERS),
    ]
    await steps.command(
        "record the forum as held",
        meetings,
        f"{forum_path}/held",
        office,
        {"attendance": attendance, "speakers": speakers, "minutes": MINUTES},
    )
    absent = [a for a in attendees if a["person_id"] in ABSENT]
    late = [a for a in attendees if a["person_id"] in LATE]
    report(
        f"clock → {clock.now():%Y-%m-%d %H:%M}: forum held — "
        f"{len(attendees) - len(absent) - len(late)} present, {len(late)} late ({_names(late)}), "
        f"{len(absent)} absent ({_names(absent)}: {'；'.join(ABSENT.values())}); "
        f"{len(speakers)} spoke"
    )

    # 10. The committee adopts a resolution: a policy and tasks for villages.
    tasks = [
        {
            "task_id": f"{forum_id}-T{n}",
            "assignee_village_id": village_id(township_id, village),
            "description": description,
            "due_date": (forum_date + dt.timedelta(days=days)).isoformat(),
        }
        for n, (village, description, days) in enumerate(
            [
                (HOU, "建立流动党员台账，逐人明确联系人，恢复与失联党员的联系", 30),
                (NAN, "建立流动党员台账，逐人明确联系人，理顺“挂空”党员的组织关系", 30),
                (QIAN, "试点流动党员线上组织生活，每月一次，形成可推广的做法", 60),
            ],
            start=1,
        )
    ]
    resolution = {"title": "关于加强流动党员管理的决议", "policies": [POLICY], "tasks": tasks}
    await steps.command(
        "the committee adopts the resolution",
        meetings,
        f"{forum_path}/resolutions",
        committee,
        {"resolutions": [resolution]},
    )
    report(
        f"resolution adopted: {resolution['title']} — issues 《{POLICY['title']}》"
        f"({POLICY['document_number']}) and assigns {len(tasks)} tasks to "
        f"{'、'.join(v.name for v in (HOU, NAN, QIAN))}, due by {tasks[-1]['due_date']}"
    )

    # 11. ResolutionAdopted → rectification tracks the tasks; the villages complete them.
    clock.set(dt.datetime.combine(forum_date + dt.timedelta(days=25), dt.time(10), SHANGHAI))
    tracked = await _complete_tasks(steps, rectification, forum_id, tasks, office)
    names = {village_id(township_id, v): v.name for v in VILLAGES}
    report(
        f"clock → {clock.now():%Y-%m-%d}: rectification tracked the {len(tracked)} tasks "
        "(ResolutionAdopted over the broker); each village secretary reported 60% with evidence, "
        "then completed it — read back: "
        + "、".join(
            f"{names[t['village_id']]} {t['percent']}% {t['status']} {t['completed_on']}"
            for t in tracked
        )
    )
    forum = await steps.until(
        "meetings closes the forum once every task is done",
        meetings,
        forum_path,
        office,
        lambda f: f["status"] == "closed",
    )
    selected = await steps.until(
        "topics resolves the topic once every task is done",
        topics,
        f"/topics/{merged_id}",
        office,
        lambda t: t["state"] == "resolved",
    )
    report(f"forum closed on {forum['closed_on']} (ForumClosed); topic resolved (TopicResolved)")
    record = await steps.until(
        "the township record counts the solved problem",
        meetings,
        f"/townships/{township_id}/record",
        county,
        lambda r: r["problems_solved"] >= 1,
    )
    return CycleResult(
        township_id=township_id,
        forum_id=forum_id,
        topic_ids=topic_ids,
        selected_topic=selected,
        forum=forum,
        township_record=record,
        task_ids=tuple(t["task_id"] for t in tasks),
        tasks=tuple(tracked),
    )


PROGRESS_NOTE = "已逐人建立台账，联系人已明确，完成约六成"
COMPLETION = "台账和联系人制度已建立，失联党员已全部恢复联系"


async def _complete_tasks(
    steps: _Steps,
    rectification: httpx.AsyncClient,
    forum_id: str,
    tasks: Sequence[Json],
    office: Headers,
) -> list[Json]:
    """Each village secretary reports progress on, then completes, their village's task."""
    by_village = {village_id(steps.township_id, v): v for v in VILLAGES}
    await steps.until(
        "rectification tracks the resolution's tasks on ResolutionAdopted",
        rectification,
        f"/tasks?forum_id={forum_id}",
        office,
        lambda listed: listed["total"] == len(tasks),
    )
    for task in tasks:
        village = by_village[task["assignee_village_id"]]
        secretary = steps.as_(
            village.secretary.person_id,
            village.secretary.name,
            VILLAGE_SECRETARY,
            village=village,
        )
        path = f"/tasks/{task['task_id']}"
        evidence = {"kind": "file", "value": f"evidence://{task['task_id']}/ledger.pdf"}
        await steps.command(
            f"{village.name} reports progress",
            rectification,
            f"{path}/progress",
            secretary,
            {"percent": 60, "note": PROGRESS_NOTE, "evidence": [evidence]},
        )
        await steps.command(
            f"{village.name} completes its task",
            rectification,
            f"{path}/completion",
            secretary,
            {"summary": COMPLETION, "evidence": [{**evidence, "title": "流动党员台账"}]},
        )
    listed = await steps.until(
        "rectification shows every task completed",
        rectification,
        f"/tasks?forum_id={forum_id}",
        office,
        lambda listed: all(t["status"] == "completed" for t in listed["items"]),
    )
    items: list[Json] = listed["items"]
    return items


async def migrate_ledger(
    meetings: httpx.AsyncClient, issuer: TokenIssuer, township_id: str, report: Report
) -> Json:
    """Enter the township's paper ledger (``ledger.LEDGER``) through meetings' API and read
    its record back from the read model."""
    steps = _Steps(issuer, township_id)
    office = steps.as_(MIDDLE_CADRES[0].person_id, MIDDLE_CADRES[0].name, OFFICE)
    for number, forum in enumerate(LEDGER, start=1):
        await steps.command(
            f"enter ledger forum {number}",
            meetings,
            f"/townships/{township_id}/forums/history",
            office,
            ledger_entry(number, forum),
        )
    record = await steps.until(
        "the ledger in the township record",
        meetings,
        f"/townships/{township_id}/record",
        office,
        lambda r: r["forums_held"] == len(LEDGER),
    )
    report(
        f"paper ledger (历史台账) entered: {record['forums_held']} forums since April 2020, "
        f"{record['problems_solved']} problems solved, {record['experts_invited']} experts, "
        f"{record['experience_exchanges']} excellent secretaries sharing experience, "
        f"{record['field_visits']} field visits — read back from the township record"
    )
    return record
