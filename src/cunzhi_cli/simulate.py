"""``cunzhi simulate``: a county the size of Bincheng through a year, on the injected clock.

The four services run in this process (``stack.county_stack``) on one ``ManualClock``; the
simulation drives them only through their HTTP APIs, as ``cunzhi demo`` does, and lets their
timers and consumers do the rest:

- every township plans its year of forums (one a month); each month, in every township at
  once, the call for topics opens by itself (D−10), villages submit (two of them the same
  problem, merged), the office shortlists, the call closes by itself, the committee selects
  one topic and disposes of the others, the notice goes out by itself, the forum is held and
  adopts tasks; villages complete them on time, late (overdue first, escalated) or never;
- on speak-up days (逢五说事, lunar 5th/15th/25th) some villages raise villagers' issues, party
  members claim most of them, and the session is recorded;
- the weak-village campaign round (``campaign_round.open_round``) is set up in the first days;
  its teams file weekly on-duty counts and monthly progress reports (some late, some never),
  report progress on their targets and complete most of those due within the year; the service
  marks late reports, lights villages and escalates overdue targets by itself;
- notifications tell everyone concerned, through the local fake providers.

Before and after each move of the clock the simulation waits for quiet (outboxes sent, every
consumer group at the end of its topics, no delivery the sender may take), so that consumers
and timers act at the moment they would have. Every decision is drawn from ``random.Random``
seeded with the seed and what is decided (``decide``), so a seed gives the same year whatever
order requests finish in.
The summary is read back from the read models, and every rebuildable read model is compared
with its rebuild from the event store (``rebuild_check``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import heapq
import itertools
import random
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from cunzhi_notifications.adapters.sender import GROUP_SPACING
from cunzhi_platform.auth import Principal
from cunzhi_platform.clock import SHANGHAI, ManualClock, is_speak_up_day
from cunzhi_platform.infra import infrastructure
from cunzhi_platform.kafka import KafkaAccess
from cunzhi_platform.runtime import connect_database
from cunzhi_platform.settings import Settings
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from . import rebuild_check
from .campaign_round import Round, Team, bincheng_round, open_round
from .cycle import (
    COMMITTEE,
    COUNTY,
    OFFICE,
    STEP_TIMEOUT_S,
    VILLAGE_SECRETARY,
    CycleError,
    Person,
    Village,
    _Steps,
)
from .services import RUNNABLE
from .stack import Stack, county_stack, demo_settings

START = dt.datetime(2026, 1, 1, 9, 0, tzinfo=SHANGHAI)
"""The simulated year: 2026, whose holidays ``chinese-calendar`` knows."""
CONCURRENCY = 16
"""Requests in flight at once: enough to keep two cores busy, few enough to keep latency low."""
QUIET_TIMEOUT_S = 120.0
SCHEDULER_INTERVAL_S = 0.05
SAMPLE_INTERVAL_S = 1.0
LATENESS = ((0.0, 0.03, 0.25), (0.6, 0.3, 0.1))
"""How often a team's report is not on time, and how many teams are so: most never late, a
few often (the service lights a village yellow on its first late report, red on its second)."""
LATE_WEEKLY = dt.timedelta(days=3, hours=6)
"""A late weekly count comes three days on, past its due time (a working day after the week)."""
LATE_MONTHLY = dt.timedelta(days=8, hours=7)
"""A late monthly report comes eight days on, past its due time (three working days)."""
PROBLEMS = (
    ("流动党员管理难", "member_management"),
    ("村集体经济薄弱、增收渠道单一", "collective_economy"),
    ("征地拆迁补偿标准不统一", "land_acquisition_demolition"),
    ("矛盾纠纷调处不及时", "disputes_petitions"),
    ("村内道路年久失修", "livelihood_works"),
    ("后备干部青黄不接", "member_recruitment"),
    ("村务公开不及时、不规范", "village_governance"),
    ("集体产权制度改革推进慢", "five_reforms"),
    ("人居环境整治反复", "rural_revitalisation"),
    ("村两委换届准备工作不足", "committee_elections"),
)
ISSUES = ("排水沟堵塞", "路灯不亮", "低保申请咨询", "宅基地纠纷", "自来水压力小", "垃圾清运不及时")
DISPOSITIONS = (
    {"kind": "defer"},
    {"kind": "refer", "department": "乡征地拆迁工作办公室"},
    {"kind": "decline", "reason": "属个案，由村调解委员会调处"},
)
EVIDENCE = [{"kind": "file", "value": "evidence://simulation/ledger.pdf", "title": "台账"}]

Json = dict[str, Any]
T = TypeVar("T")
Headers = dict[str, str]


def decide(seed: int, *key: object) -> random.Random:
    """The random source of one decision: the same seed and key, the same draws."""
    return random.Random(f"{seed}:" + ":".join(map(str, key)))


# --- the county and what it will do (pure) -------------------------------------------------


@dataclass(frozen=True)
class Township:
    number: int
    township_id: str
    name: str
    villages: tuple[Village, ...]
    office: Person
    leadership: tuple[Person, ...]
    stations: tuple[Person, ...]

    def roster(self) -> list[Json]:
        cadres = [
            *((p, "leadership") for p in self.leadership),
            *((p, "middle_cadre") for p in (self.office, *self.stations)),
        ]
        return [{"person_id": p.person_id, "name": p.name, "role": role} for p, role in cadres] + [
            {
                "person_id": v.secretary.person_id,
                "name": v.secretary.name,
                "role": "village_secretary",
                "village_id": village_id(v),
            }
            for v in self.villages
        ]

    def directory(self) -> list[tuple[Person, str, str, str]]:
        """(person, role, village id, phone) of everyone to tell; e-mail for the secretaries."""
        cadres = [(p, "middle_cadre", "") for p in (*self.leadership, self.office)]
        cadres += [(p, "station_head", "") for p in self.stations]
        cadres += [(v.secretary, "village_secretary", village_id(v)) for v in self.villages]
        # 139 TT 00 NNNN: one number a person, county-wide
        return [(p, r, v, f"139{self.number:02d}00{n:04d}") for n, (p, r, v) in enumerate(cadres)]

    def directory_csv(self) -> str:
        rows = ["person_id,name,roles,township_id,village_id,phone,email"]
        for p, role, vid, phone in self.directory():
            email = f"{p.person_id}@example.cn" if vid else ""
            rows.append(f"{p.person_id},{p.name},{role},{self.township_id},{vid},{phone},{email}")
        return "\n".join(rows) + "\n"


def village_id(village: Village) -> str:
    """Simulated villages carry their full id as their code (the campaign register's id)."""
    return village.code


def county(county_id: str, seed: int, townships: int, villages: int) -> list[Township]:
    """The campaign register's townships and villages (``bincheng_round``), with people."""
    data = bincheng_round(county_id, seed, townships, villages)
    result = []
    for number, (tid, name) in enumerate(data.townships, start=1):
        result.append(
            Township(
                number=number,
                township_id=tid,
                name=name,
                villages=tuple(
                    Village(vid, vname, Person(f"{vid}-shuji", f"{vname}书记", "支部书记"))
                    for vid, vname, of in data.villages
                    if of == tid
                ),
                office=Person(f"{tid}-djb", f"{name}党建办主任", "党建办主任"),
                leadership=(
                    Person(f"{tid}-shuji", f"{name}党委书记", "党委书记"),
                    Person(f"{tid}-zhang", f"{name}乡镇长", "乡镇长"),
                ),
                stations=(Person(f"{tid}-njz", f"{name}农经站站长", "农经站站长"),),
            )
        )
    return result


@dataclass(frozen=True)
class Submitted:
    village: int
    problem: int


@dataclass(frozen=True)
class ForumPlan:
    """One township's month: who submits what, which duplicate is merged, which tasks."""

    submissions: tuple[Submitted, ...]
    duplicate: Submitted | None
    """A second village reporting the first submission's problem; merged into it."""
    absent: tuple[int, ...]
    """Village secretaries (by index) absent from the forum."""
    tasks: tuple[tuple[int, int, str], ...]
    """(village index, days until due, fate: on_time, late or never)."""


def forum_plan(seed: int, township: str, month: int, villages: int) -> ForumPlan:
    rng = decide(seed, "forum", township, month)
    problems = rng.sample(range(len(PROBLEMS)), rng.randint(3, 5))
    chosen = rng.sample(range(villages), min(villages, len(problems) + 1))
    submissions = tuple(Submitted(v, p) for v, p in zip(chosen, problems, strict=False))
    duplicate = (
        Submitted(chosen[-1], problems[0])
        if len(chosen) > len(submissions) and rng.random() < 0.8
        else None
    )
    absent = tuple(sorted(rng.sample(range(villages), min(villages, rng.randint(0, 2)))))
    tasks = tuple(
        (
            rng.randrange(villages),
            rng.randint(20, 40),
            rng.choices(("on_time", "late", "never"), (0.65, 0.25, 0.10))[0],
        )
        for _ in range(rng.randint(1, 3))
    )
    return ForumPlan(submissions, duplicate, absent, tasks)


# --- time: the agenda of dated actions -----------------------------------------------------


@dataclass(order=True)
class _Item:
    moment: dt.datetime
    seq: int
    what: str = field(compare=False)
    action: Callable[[], Awaitable[None]] = field(compare=False)


class Agenda:
    """Dated actions (a report, a speak-up day, a task completed); ``advance`` runs those due
    in order, each at its moment, waiting for quiet before and after each move of the clock.
    ``spent`` adds up the wall time of each kind of action (``what``) and of the waiting."""

    def __init__(self, clock: ManualClock, quiet: Callable[[bool], Awaitable[None]]) -> None:
        self.clock = clock
        self.quiet = quiet
        self.spent: defaultdict[str, float] = defaultdict(float)
        self._items: list[_Item] = []
        self._seq = itertools.count()

    @contextlib.asynccontextmanager
    async def timed(self, what: str) -> AsyncIterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.spent[what] += time.monotonic() - started

    def at(self, moment: dt.datetime, what: str, action: Callable[[], Awaitable[None]]) -> None:
        heapq.heappush(self._items, _Item(moment, next(self._seq), what, action))

    async def advance(self, to: dt.datetime) -> None:
        while self._items and self._items[0].moment <= to:
            moment = self._items[0].moment
            due = []
            while self._items and self._items[0].moment == moment:
                due.append(heapq.heappop(self._items))
            await self._move(moment)
            for item in due:
                async with self.timed(item.what):
                    await item.action()
        await self._move(to)

    async def _move(self, to: dt.datetime) -> None:
        async with self.timed("waiting for quiet"):
            # What was done settles at its own time (a submission reaches notifications
            # before the reminder of those who submitted nothing), then timers see the new time.
            await self.quiet(False)
            if to > self.clock.now():
                self.clock.set(to)
                await self.quiet(True)


# --- measuring: events, outbox and consumer lag ---------------------------------------------


@dataclass
class Gauges:
    events_at_start: int = 0
    peak_outbox: int = 0
    peak_consumer_lag: int = 0
    pending_deliveries: int = 0


class Probe:
    """Outbox rows unsent, consumer groups' lag (messages behind the end of their topics) and
    deliveries due; ``quiet`` waits until all three are zero."""

    def __init__(
        self, pool: asyncpg.Pool, kafka: KafkaAccess, clock: ManualClock, townships: Sequence[str]
    ) -> None:
        self.pool = pool
        self.townships = list(townships)
        self.clock = clock
        self.gauges = Gauges()
        self.groups: dict[str, list[str]] = {}
        for name, build in sorted(RUNNABLE.items()):
            for c in build().consumers:
                self.groups[f"cunzhi.{name}.{c.name}"] = list(c.topics)
        self._ends = AIOKafkaConsumer(**kafka.client_options(), enable_auto_commit=False)
        self._admin = AIOKafkaAdminClient(**kafka.client_options())
        self._coordinators: dict[str, int] = {}
        self.behind: dict[str, int] = {}
        """The consumer groups behind at the last look, by how many messages."""

    async def __aenter__(self) -> Probe:
        await self._ends.start()
        await self._admin.start()
        for group in self.groups:
            self._coordinators[group] = await self._admin.find_coordinator(group)
        self.gauges.events_at_start = await self.events()
        self._sampler = asyncio.create_task(self._sample(), name="simulation-probe")
        return self

    async def __aexit__(self, *_: object) -> None:
        self._sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sampler
        await self._admin.close()
        await self._ends.stop()

    async def events(self) -> int:
        return sum([await self.pool.fetchval(f"SELECT count(*) FROM {s}.events") for s in RUNNABLE])

    async def outbox(self) -> int:
        return sum(
            [
                await self.pool.fetchval(f"SELECT count(*) FROM {s}.outbox WHERE sent_at IS NULL")
                for s in RUNNABLE
            ]
        )

    async def consumer_lag(self) -> int:
        """Messages the consumer groups have yet to commit, summed: one request for the ends
        of every topic, one per group for its committed offsets."""
        topics = sorted({t for ts in self.groups.values() for t in ts})
        partitions = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(self._ends.partitions_for_topic(t) or ())
        ]
        if len(partitions) < len(topics):
            await self._ends.topics()  # refresh the metadata: a topic was created meanwhile
        ends = await self._ends.end_offsets(partitions)

        async def behind(group: str) -> int:
            own = [tp for tp in partitions if tp.topic in self.groups[group]]
            committed = await self._admin.list_consumer_group_offsets(
                group, self._coordinators[group], own
            )
            # -1: nothing committed yet; past the end: a broker that lost its data
            return sum(
                max(0, ends[tp] - max(0, committed[tp].offset if tp in committed else 0))
                for tp in own
            )

        lags = await asyncio.gather(*(behind(g) for g in self.groups))
        self.behind = {g: n for g, n in zip(self.groups, lags, strict=True) if n}
        return sum(lags)

    async def _sample(self) -> None:
        """The peaks, sampled every second whatever the simulation is doing."""
        while True:
            outbox, lag = await self.outbox(), await self.consumer_lag()
            self.gauges.peak_outbox = max(self.gauges.peak_outbox, outbox)
            self.gauges.peak_consumer_lag = max(self.gauges.peak_consumer_lag, lag)
            await asyncio.sleep(SAMPLE_INTERVAL_S)

    async def deliveries_due(self, spaced: bool = True) -> int:
        """Deliveries of the simulated townships the sender would take now; ``spaced=False``
        counts also those a group robot's pacing (``GROUP_SPACING``) holds back."""
        due: int = await self.pool.fetchval(
            "SELECT count(*) FROM notifications.deliveries d "
            "WHERE status IN ('pending', 'sending') AND not_before <= $1 "
            "AND township_id = ANY($2::text[]) AND NOT ($3 AND EXISTS ("
            "    SELECT 1 FROM notifications.groups g WHERE d.recipient_id = 'group:' || g.group_id"
            "    AND g.last_sent_at > $1::timestamptz - $4::interval))",
            self.clock.now(),
            self.townships,
            spaced,
            GROUP_SPACING,
        )
        return due

    async def quiet(self, clock_moved: bool) -> None:
        deadline = time.monotonic() + QUIET_TIMEOUT_S
        if clock_moved:
            await asyncio.sleep(3 * SCHEDULER_INTERVAL_S)  # every timer ticks at the new time
        while True:
            outbox = await self.outbox()
            lag = await self.consumer_lag() if outbox == 0 else 0
            if outbox == 0 and lag == 0:
                due = await self.deliveries_due()
                if due == 0:
                    await asyncio.sleep(2 * SCHEDULER_INTERVAL_S)
                    if await self.outbox() == 0:  # nothing a timer or delivery set off since
                        return
            if time.monotonic() > deadline:
                raise CycleError(
                    f"no quiet within {QUIET_TIMEOUT_S:.0f}s at {self.clock.now():%Y-%m-%d %H:%M}:"
                    f" {outbox} outbox rows unsent, consumers {lag} messages behind "
                    f"({', '.join(f'{g} {n}' for g, n in self.behind.items())})"
                )
            await asyncio.sleep(0.05)


# --- the simulation ------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    seed: int = 2026
    townships: int = 10
    villages: int = 602
    months: int = 12
    run: str = "sim"
    """Prefix of the county id: runs on one database keep apart."""

    @property
    def county_id(self) -> str:
        return f"{self.run}-{self.seed}"


@dataclass
class Tally:
    """What the simulation asked for, to compare with what the read models say."""

    forums: int = 0
    submissions: int = 0
    merged: int = 0
    tasks: Counter[str] = field(default_factory=Counter)
    issues_raised: int = 0
    issues_claimed: int = 0
    sessions: int = 0
    reports: Counter[str] = field(default_factory=Counter)
    target_progress: int = 0
    targets_completed: int = 0


@dataclass(frozen=True)
class Result:
    summary: Json
    differences: list[str]
    wall_s: float
    events: int
    gauges: Gauges
    tally: Tally
    spent: dict[str, float]
    """Wall time by what the simulation was doing (``Agenda.spent``)."""


class Simulation:
    def __init__(
        self,
        stack: Stack,
        clock: ManualClock,
        options: Options,
        townships: list[Township],
        progress: Progress,
        probe: Probe,
    ) -> None:
        self.s = stack
        self.clock = clock
        self.agenda = Agenda(clock, probe.quiet)
        self.probe = probe
        self.o = options
        self.progress = progress
        self.county_id = options.county_id
        self.townships = townships
        self.tally = Tally()
        self.limit = asyncio.Semaphore(CONCURRENCY)
        self.forums: dict[str, list[Json]] = {}
        self.round: Round | None = None

    # helpers

    def local(self, some_id: str) -> str:
        """An id without the run's county prefix: what decisions are keyed by, so that a seed
        decides the same in every run."""
        return some_id.replace(f"{self.county_id}-", "")

    def decide(self, what: str, some_id: str, *more: object) -> random.Random:
        return decide(self.o.seed, what, self.local(some_id), *more)

    def steps(self, t: Township) -> _Steps:
        return _Steps(self.s.issuer, t.township_id)

    def headers(self, principal: Principal) -> Headers:
        return {"Authorization": f"Bearer {self.s.issuer.issue(principal)}"}

    async def each(self, items: Iterable[T], act: Callable[[T], Awaitable[None]]) -> None:
        """``act`` on every item at once, ``CONCURRENCY`` requests at a time."""

        async def limited(item: T) -> None:
            async with self.limit:
                await act(item)

        await asyncio.gather(*(limited(i) for i in items))

    def office(self, t: Township) -> Headers:
        return self.steps(t).as_(t.office.person_id, t.office.name, OFFICE)

    def secretary(self, t: Township, v: Village) -> Headers:
        s = v.secretary
        return self.headers(
            Principal(
                sub=s.person_id,
                name=s.name,
                roles=frozenset({VILLAGE_SECRETARY}),
                township_ids=frozenset({t.township_id}),
                village_ids=frozenset({village_id(v)}),
            )
        )

    # set-up

    async def set_up(self) -> None:
        admin = self.headers(Principal(sub="county-it", roles=frozenset({"notifications_admin"})))
        task = self.progress.add_task("set-up: directory, rosters, year plans", total=None)

        async def township(t: Township) -> None:
            r = await self.s.notifications.post(
                "/people/import",
                content=t.directory_csv().encode(),
                headers={**admin, "content-type": "text/csv"},
            )
            if r.is_error:
                raise CycleError(f"directory of {t.township_id}: {r.status_code} {r.text}")
            secret = self.s.channels.robot_secret
            group = {
                "name": f"{t.name}党建工作群",
                "township_id": t.township_id,
                "channel": "dingtalk",
                # each township's group its own robot: a robot takes 20 messages a minute
                "webhook_url": self.s.channels.fakes.dingtalk.add_robot(t.township_id, secret),
                "secret": secret,
            }
            r = await self.s.notifications.put(
                f"/groups/{t.township_id}-dangjian", json=group, headers=admin
            )
            if r.is_error:
                raise CycleError(f"group of {t.township_id}: {r.status_code} {r.text}")
            steps, office = self.steps(t), self.office(t)
            await steps.command(
                "import the roster",
                self.s.meetings,
                f"/townships/{t.township_id}/roster",
                office,
                t.roster(),
            )
            planned = await steps.command(
                "plan the year",
                self.s.meetings,
                f"/townships/{t.township_id}/forums/year",
                office,
                {"year": START.year, "place": f"{t.name}政府会议室"},
            )
            self.forums[t.township_id] = planned["planned"]

        async with self.agenda.timed("set-up"):
            await self.each(self.townships, township)
        self.progress.update(task, description="set-up: the weak-village campaign round")
        data = bincheng_round(self.county_id, self.o.seed, self.o.townships, self.o.villages)
        async with self.agenda.timed("set-up"):
            self.round = await open_round(
                self.s.rectification, self.clock, self.s.issuer, data, lambda _: None
            )
        self.progress.update(task, total=1, completed=1)
        self.schedule_campaign()
        self.schedule_speak_up_days()

    # forums

    async def forum_month(self, month: int, task: TaskID) -> None:
        ts = self.townships
        forums = {t.township_id: self.forums[t.township_id][month - 1] for t in ts}
        plans = {
            t.township_id: forum_plan(
                self.o.seed, self.local(t.township_id), month, len(t.villages)
            )
            for t in ts
        }
        calls: dict[str, Json] = {}

        async def call(t: Township) -> None:
            fid = forums[t.township_id]["forum_id"]
            calls[t.township_id] = await self.steps(t).until(
                "topics knows the call",
                self.s.topics,
                f"/townships/{t.township_id}/calls/{fid}",
                self.office(t),
                lambda c: c["state"] in ("scheduled", "open"),
            )

        async with self.agenda.timed("forums"):
            await self.each(ts, call)
        opens = max(dt.datetime.fromisoformat(c["opens_at"]) for c in calls.values())
        await self.agenda.advance(max(opens, self.clock.now()) + dt.timedelta(minutes=1))
        self.progress.advance(task)
        topic_ids: dict[str, list[str]] = {}

        async def submit(t: Township) -> None:
            fid, plan, steps = (
                forums[t.township_id]["forum_id"],
                plans[t.township_id],
                self.steps(t),
            )
            path = f"/townships/{t.township_id}/calls/{fid}"
            await steps.until("the call opens", self.s.topics, path, self.office(t), _open)
            ids = []
            for s in (*plan.submissions, *([plan.duplicate] if plan.duplicate else [])):
                v, (title, category) = t.villages[s.village], PROBLEMS[s.problem]
                answer = await steps.command(
                    "submit a topic",
                    self.s.topics,
                    f"{path}/topics",
                    self.secretary(t, v),
                    {
                        "title": title,
                        "description": f"{v.name}：{title}，请论坛研究解决。",
                        "category": category,
                        "village_ids": [village_id(v)],
                    },
                )
                ids.append(answer["topic_id"])
            self.tally.submissions += len(ids)
            if plan.duplicate:
                await steps.command(
                    "merge",
                    self.s.topics,
                    "/topics/merge",
                    self.office(t),
                    {"survivor_id": ids[0], "merged_topic_ids": [ids[-1]]},
                )
                ids.pop()
                self.tally.merged += 1
            for tid in ids[:3]:
                await steps.command(
                    "shortlist", self.s.topics, f"/topics/{tid}/shortlist", self.office(t)
                )
            topic_ids[t.township_id] = ids

        async with self.agenda.timed("forums"):
            await self.each(ts, submit)
        closes = max(dt.datetime.fromisoformat(c["closes_at"]) for c in calls.values())
        await self.agenda.advance(closes + dt.timedelta(minutes=1))
        self.progress.advance(task)

        async def select(t: Township) -> None:
            fid, steps = forums[t.township_id]["forum_id"], self.steps(t)
            path = f"/townships/{t.township_id}/calls/{fid}"
            await steps.until("the call closes", self.s.topics, path, self.office(t), _closed)
            first, *others = topic_ids[t.township_id]
            dispositions = {o: DISPOSITIONS[n % 3] for n, o in enumerate(others)}
            for topic in await self.carried(t, fid, {first, *others}):
                dispositions[topic] = DISPOSITIONS[2]  # deferred once already
            committee = steps.as_(t.leadership[0].person_id, t.leadership[0].name, COMMITTEE)
            await steps.command(
                "select",
                self.s.topics,
                f"{path}/selection",
                committee,
                {"topic_id": first, "dispositions": dispositions},
            )
            await steps.until(
                "meetings sets the topic",
                self.s.meetings,
                f"/forums/{fid}",
                self.office(t),
                lambda f: f["topic"] is not None and f["topic"]["topic_id"] == first,
            )

        async with self.agenda.timed("forums"):
            await self.each(ts, select)
        first_forum = await self.steps(ts[0]).until(
            "the forum",
            self.s.meetings,
            f"/forums/{forums[ts[0].township_id]['forum_id']}",
            self.office(ts[0]),
            lambda f: True,
        )
        await self.agenda.advance(dt.datetime.fromisoformat(first_forum["notice_due_at"]))
        self.progress.advance(task)
        date = dt.date.fromisoformat(first_forum["date"])
        await self.agenda.advance(dt.datetime.combine(date, dt.time(14, 30), SHANGHAI))

        async def hold(t: Township) -> None:
            fid, plan, steps = (
                forums[t.township_id]["forum_id"],
                plans[t.township_id],
                self.steps(t),
            )
            forum = await steps.until(
                "the notice went out",
                self.s.meetings,
                f"/forums/{fid}",
                self.office(t),
                lambda f: f["status"] == "noticed",
            )
            absent = {t.villages[i].secretary.person_id for i in plan.absent}
            await steps.command(
                "hold the forum",
                self.s.meetings,
                f"/forums/{fid}/held",
                self.office(t),
                {
                    "attendance": [
                        {"person_id": a["person_id"], "status": "absent", "reason": "外出培训"}
                        if a["person_id"] in absent
                        else {"person_id": a["person_id"], "status": "present"}
                        for a in forum["notice"]["attendees"]
                    ],
                    "speakers": [t.leadership[0].person_id],
                    "minutes": "围绕选定议题专题研究，议定解决办法并分解任务。",
                },
            )
            tasks = [
                {
                    "task_id": f"{fid}-T{n}",
                    "assignee_village_id": village_id(t.villages[v]),
                    "description": "落实论坛决议",
                    "due_date": (date + dt.timedelta(days=days)).isoformat(),
                }
                for n, (v, days, _) in enumerate(plan.tasks, start=1)
            ]
            committee = steps.as_(t.leadership[0].person_id, t.leadership[0].name, COMMITTEE)
            await steps.command(
                "adopt the resolution",
                self.s.meetings,
                f"/forums/{fid}/resolutions",
                committee,
                {"resolutions": [{"title": "论坛决议", "policies": [], "tasks": tasks}]},
            )
            self.tally.forums += 1
            for spec, (v, days, fate) in zip(tasks, plan.tasks, strict=True):
                self.tally.tasks[fate] += 1
                self.schedule_task(t, t.villages[v], spec, date, days, fate)

        async with self.agenda.timed("forums"):
            await self.each(ts, hold)
        self.progress.advance(task)

    async def carried(self, t: Township, forum_id: str, ours: set[str]) -> list[str]:
        """Undecided topics of the call that earlier calls deferred to it."""
        found = []
        for state in ("submitted", "shortlisted"):
            r = await self.s.topics.get(
                "/topics",
                params={"forum_id": forum_id, "state": state, "limit": 200},
                headers=self.office(t),
            )
            r.raise_for_status()
            found += [i["topic_id"] for i in r.json()["items"] if i["topic_id"] not in ours]
        return found

    def schedule_task(
        self,
        t: Township,
        v: Village,
        spec: Json,
        held: dt.date,
        days: int,
        fate: str,
    ) -> None:
        if fate == "never":
            return
        # On the township's weekly round (with the campaign's counts): the last one at least a
        # day before the due date, or the first one at least five days after it (overdue,
        # escalated to the township three working days after it).
        due = held + dt.timedelta(days=days)
        weeks = (due - START.date()).days // 7
        when = self._at(START.date() + dt.timedelta(days=7 * weeks), 10)
        while fate == "on_time" and when.date() >= due:
            when -= dt.timedelta(days=7)
        while fate == "late" and when.date() < due + dt.timedelta(days=5):
            when += dt.timedelta(days=7)

        async def complete() -> None:
            path = f"/tasks/{spec['task_id']}"
            steps, me = self.steps(t), self.secretary(t, v)
            await steps.until("the task is tracked", self.s.rectification, path, me, _exists)
            await steps.command(
                "complete a task",
                self.s.rectification,
                f"{path}/completion",
                me,
                {"summary": "已按决议完成", "evidence": EVIDENCE},
            )

        self.agenda.at(when, "forum tasks completed", complete)

    # speak-up days

    def schedule_speak_up_days(self) -> None:
        day = START.date()
        end = self.end().date()
        while day <= end:
            if is_speak_up_day(day):
                self.agenda.at(
                    dt.datetime.combine(day, dt.time(10), SHANGHAI),
                    "speak-up day",
                    self._speak_up(day),
                )
            day += dt.timedelta(days=1)

    def _speak_up(self, day: dt.date) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            await self.each(self.townships, lambda t: self.speak_up(t, day))

        return run

    async def speak_up(self, t: Township, day: dt.date) -> None:
        rng = self.decide("speak-up", t.township_id, day)
        for v in rng.sample(t.villages, min(len(t.villages), 2)):
            me, steps = self.secretary(t, v), self.steps(t)
            raised = []
            for n in range(rng.randint(1, 2)):
                issue = rng.choice(ISSUES)
                answer = await steps.command(
                    "raise an issue",
                    self.s.topics,
                    f"/villages/{village_id(v)}/issues",
                    me,
                    {
                        "issue_id": f"{village_id(v)}-{day:%Y%m%d}-{n}",
                        "township_id": t.township_id,
                        "title": issue,
                        "description": f"村民反映{issue}，请尽快解决。",
                        "raised_on": day.isoformat(),
                    },
                )
                raised.append(answer["issue_id"])
            self.tally.issues_raised += len(raised)
            member = self.headers(
                Principal(
                    sub=f"{village_id(v)}-dangyuan",
                    roles=frozenset({"party_member"}),
                    township_ids=frozenset({t.township_id}),
                    village_ids=frozenset({village_id(v)}),
                )
            )
            for issue_id in raised:
                if rng.random() < 0.75:
                    await steps.command("claim", self.s.topics, f"/issues/{issue_id}/claim", member)
                    self.tally.issues_claimed += 1
            await self._accepted(
                "record the speak-up session",
                self.s.meetings,
                f"/villages/{village_id(v)}/speak-up-sessions",
                me,
                {
                    "township_id": t.township_id,
                    "date": day.isoformat(),
                    "attendance_count": rng.randint(15, 60),
                    "issue_ids": raised,
                    "hosted_by": v.secretary.name,
                },
            )
            self.tally.sessions += 1

    async def _accepted(
        self, step: str, client: httpx.AsyncClient, path: str, headers: Headers, body: Json
    ) -> None:
        """POST until meetings knows the issues it names (it learns them over the broker)."""
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while True:
            r = await client.post(path, json=body, headers=headers)
            if not r.is_error:
                return
            if r.status_code != 422 or "issue_ids" not in r.text or time.monotonic() > deadline:
                raise CycleError(f"{step}: POST {path} was answered {r.status_code}: {r.text}")
            await asyncio.sleep(0.1)

    # the campaign

    def schedule_campaign(self) -> None:
        assert self.round is not None
        end = self.end()
        start = START.date()
        week = 1
        while (day := start + dt.timedelta(days=7 * week)) <= end.date():
            reports = self._reports("weekly_on_duty", week, LATE_WEEKLY)
            self.agenda.at(self._at(day, 10), "weekly on-duty counts", reports)
            week += 1
        for month in range(1, self.o.months + 1):
            first = _month_start(month + 1)
            reports = self._reports("monthly_progress", month, LATE_MONTHLY)
            self.agenda.at(self._at(first, 9), "monthly progress reports", reports)
            for kind, months in (("quarterly_visit", 3), ("half_year_review", 6)):
                if month % months == 0:
                    visits = self._county_reports(kind, month // months)
                    self.agenda.at(self._at(first, 9), "the county's visits and reviews", visits)
            self.agenda.at(
                self._at(_month_start(month) + dt.timedelta(days=14), 11),
                "target progress",
                self._progress(month),
            )

    def _at(self, day: dt.date, hour: int) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(hour), SHANGHAI)

    def member(self, person_id: str) -> Headers:
        return self.headers(Principal(sub=person_id, roles=frozenset({"work_team_member"})))

    def _reports(
        self, kind: str, period: int, late_after: dt.timedelta
    ) -> Callable[[], Awaitable[None]]:
        """Each team files its report of the period just ended: most at once, some later, past
        the due time (late), a few never (the service marks them late by itself)."""
        file = self._on_duty if kind == "weekly_on_duty" else self._report

        async def run() -> None:
            assert self.round is not None
            late: list[Team] = []

            async def at_once(team: Team) -> None:
                lateness = self.decide("diligence", team.team_id).choices(*LATENESS)[0]
                fate = _fate(self.decide(kind, team.team_id, period), lateness)
                if fate == "late":
                    late.append(team)
                elif fate == "on_time":
                    await file(team, period)

            await self.each(self.round.teams, at_once)
            if late:

                async def later() -> None:
                    await self.each(late, lambda team: file(team, period))

                self.agenda.at(self.clock.now() + late_after, f"late {kind}", later)

        return run

    def _county_reports(self, kind: str, period: int) -> Callable[[], Awaitable[None]]:
        """The county's quarterly field visit (四不两直) or half-year joint review of every
        village of the round, filed on time."""

        async def run() -> None:
            assert self.round is not None
            base, county = self.round.base, self.round.county

            async def report(team: Team) -> None:
                await _Steps(self.s.issuer, "").command(
                    kind,
                    self.s.rectification,
                    f"{base}/villages/{team.village_id}/reports",
                    county,
                    {"kind": kind, "period": period, "summary": "实地查看，整顿工作有序推进"},
                )
                self.tally.reports[kind] += 1

            await self.each(self.round.teams, report)

        return run

    async def _on_duty(self, team: Team, week: int) -> None:
        assert self.round is not None
        await _Steps(self.s.issuer, "").command(
            "on-duty count",
            self.s.rectification,
            f"{self.round.base}/teams/{team.team_id}/on-duty",
            self.member(team.reporter),
            {"period": week, "on_duty_days": {team.reporter: 5}, "summary": "驻村5天"},
        )
        self.tally.reports["weekly_on_duty"] += 1

    async def _report(self, team: Team, month: int) -> None:
        assert self.round is not None
        await _Steps(self.s.issuer, "").command(
            "monthly progress",
            self.s.rectification,
            f"{self.round.base}/villages/{team.village_id}/reports",
            self.member(team.reporter),
            {
                "kind": "monthly_progress",
                "period": month,
                "summary": "本月整顿进展顺利",
                "team_id": team.team_id,
            },
        )
        self.tally.reports["monthly_progress"] += 1

    def _progress(self, month: int) -> Callable[[], Awaitable[None]]:
        """Each team reports progress on its targets in step with the year. A target is
        stalled (no progress, overdue when due, then escalated), completed in the month before
        it is due, or, by the same draw each month, never completed."""

        async def run() -> None:
            assert self.round is not None
            base = self.round.base
            steps = _Steps(self.s.issuer, "")
            today = self.clock.now().date()

            async def team_work(team: Team) -> None:
                path = f"{base}/teams/{team.team_id}/targets"
                for target_id in team.target_ids:
                    rng = self.decide("target", target_id)
                    if rng.random() < 0.05:
                        continue  # a stalled target: no progress, overdue when due
                    r = await self.s.rectification.get(
                        f"/tasks/{target_id}", headers=self.round_county()
                    )
                    r.raise_for_status()
                    card = r.json()
                    if card["status"] == "completed":
                        continue
                    due = dt.date.fromisoformat(card["due_on"])
                    if due <= today + dt.timedelta(days=30) and rng.random() < 0.8:
                        await steps.command(
                            "complete a target",
                            self.s.rectification,
                            f"{path}/{target_id}/completion",
                            self.member(team.reporter),
                            {"summary": "目标完成", "evidence": EVIDENCE},
                        )
                        self.tally.targets_completed += 1
                        continue
                    percent = min(95, max(card["percent"], round(100 * month / 12) - 5))
                    await steps.command(
                        "target progress",
                        self.s.rectification,
                        f"{path}/{target_id}/progress",
                        self.member(team.reporter),
                        {"percent": percent, "note": "按计划推进", "evidence": EVIDENCE},
                    )
                    self.tally.target_progress += 1

            await self.each(self.round.teams, team_work)

        return run

    def round_county(self) -> Headers:
        assert self.round is not None
        return self.round.county

    def end(self) -> dt.datetime:
        """The last moment simulated: the day after the last month's forum."""
        return self._at(_month_start(self.o.months + 1), 9)

    # the whole year

    async def run(self) -> None:
        await self.set_up()
        task = self.progress.add_task("forums", total=4 * self.o.months)
        for month in range(1, self.o.months + 1):
            self.progress.update(task, description=f"forums, month {month}/{self.o.months}")
            await self.forum_month(month, task)
        self.progress.update(task, description="the year's last days")
        await self.agenda.advance(self.end())
        # Group robots take a message a minute: the clock waits for the last ones.
        while await self.probe.deliveries_due(spaced=False):
            await self.agenda.advance(self.clock.now() + GROUP_SPACING)

    # the summary

    async def summary(self, pool: asyncpg.Pool) -> Json:
        county = self.headers(
            Principal(sub="county-org", roles=frozenset({COUNTY}), county_id=self.county_id)
        )
        record: Counter[str] = Counter()
        tasks: Counter[str] = Counter()

        async def count(**filters: str) -> int:
            r = await self.s.rectification.get(
                "/tasks", params={**filters, "limit": 1}, headers=county
            )
            r.raise_for_status()
            total: int = r.json()["total"]
            return total

        for t in self.townships:
            r = await self.s.meetings.get(f"/townships/{t.township_id}/record", headers=county)
            r.raise_for_status()
            record.update({k: v for k, v in r.json().items() if isinstance(v, int)})
            of_forums = {"township_id": t.township_id, "source": "forum_resolution"}
            for status in ("completed", "overdue", "open"):
                tasks[status] += await count(**of_forums, status=status)
            for level in ("township", "county"):
                tasks[f"escalated to {level}"] += await count(**of_forums, escalation_level=level)
        assert self.round is not None
        campaign_id = self.round.base.rsplit("/", 1)[1]
        r = await self.s.rectification.get(f"{self.round.base}/dashboard", headers=county)
        r.raise_for_status()
        d = r.json()
        escalated = {
            f"escalated to {level}": await count(campaign_id=campaign_id, escalation_level=level)
            for level in ("township", "county")
        }
        townships = [t.township_id for t in self.townships]
        # Sent or with the provider's report of delivery: which of the two depends on when
        # the status reports were asked for, not on the year.
        deliveries = {
            f"{r['channel']} {r['status']}": r["n"]
            for r in await pool.fetch(
                "SELECT channel, CASE WHEN status IN ('sent', 'delivered') THEN 'delivered' "
                "ELSE status END AS status, count(*) AS n FROM notifications.deliveries "
                "WHERE township_id = ANY($1::text[]) GROUP BY 1, 2 ORDER BY 1, 2",
                townships,
            )
        }
        fakes = self.s.channels.fakes
        phones = {phone for t in self.townships for *_, phone in t.directory()}
        emails = {f"{p.person_id}@example.cn" for t in self.townships for p, *_ in t.directory()}
        return {
            "forums held": record["forums_held"],
            "problems solved": record["problems_solved"],
            "forum tasks": dict(sorted(tasks.items())),
            "lights": {c: d[c] for c in ("green", "yellow", "red")},
            "campaign": {
                "targets": d["targets"],
                "overdue targets": d["overdue_targets"],
                "late reports": d["late_reports"],
                **escalated,
            },
            "deliveries": deliveries,
            "at the fake providers": {
                "sms": sum(1 for m in fakes.aliyun.sent if m.phone[-11:] in phones),
                "email": sum(1 for m in fakes.smtp.messages if m["To"] in emails),
                "dingtalk": sum(len(fakes.dingtalk.messages[t]) for t in townships),
            },
        }


def _open(call: Json) -> bool:
    return bool(call["state"] == "open")


def _closed(call: Json) -> bool:
    return bool(call["state"] == "closed")


def _exists(_: Json) -> bool:
    return True


def _fate(rng: random.Random, lateness: float) -> str:
    """A report filed on time, late, or never (a quarter of those not on time)."""
    return rng.choices(("on_time", "late", "never"), (1 - lateness, lateness * 0.75, lateness / 4))[
        0
    ]


def _month_start(month: int) -> dt.date:
    """The first day of simulated month ``month`` (1 = January of the year)."""
    year, index = divmod(START.month - 1 + month - 1, 12)
    return dt.date(START.year + year, index + 1, 1)


@contextlib.asynccontextmanager
async def _progress(console: Console | None) -> AsyncIterator[Progress]:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        yield progress


async def simulate(settings: Settings, options: Options, console: Console | None = None) -> Result:
    """Run the simulation on the infrastructure ``settings`` name (or the embedded one)."""
    if not 1 <= options.months <= 12:
        raise ValueError("--months: between 1 and 12 (one simulated year)")
    with infrastructure(settings) as endpoints:
        config = demo_settings(settings, endpoints).model_copy(
            update={
                "scheduler_interval_s": SCHEDULER_INTERVAL_S,
                "relay_poll_interval_s": SCHEDULER_INTERVAL_S,
            }
        )
        clock = ManualClock(START)
        o = options
        townships = county(o.county_id, o.seed, o.townships, o.villages)
        ids = [t.township_id for t in townships]
        pool = await connect_database(endpoints.database_url)
        try:
            async with county_stack(config, clock) as stack, _progress(console) as progress:
                kafka = KafkaAccess.from_settings(config)
                async with Probe(pool, kafka, clock, ids) as probe:
                    sim = Simulation(stack, clock, options, townships, progress, probe)
                    started = time.monotonic()
                    await sim.run()
                    wall = time.monotonic() - started
                    events = await probe.events() - probe.gauges.events_at_start
                summary = await sim.summary(pool)
            async with sim.agenda.timed("rebuild check"):
                differences = await _rebuild_check(pool, ids)
        finally:
            await pool.close()
    return Result(summary, differences, wall, events, probe.gauges, sim.tally, sim.agenda.spent)


async def _rebuild_check(pool: asyncpg.Pool, townships: Sequence[str]) -> list[str]:
    found = []
    for service, consumer in rebuild_check.projections():
        compared, everything = await rebuild_check.scope(pool, service, consumer, ())
        missing = set(townships) - set(compared)
        if missing:
            found.append(f"{service}.{consumer.name}: not caught up on {sorted(missing)}")
        ours = [t for t in compared if t in townships]
        found += await rebuild_check.differences(pool, service, consumer, (ours, everything))
    return found


def report(result: Result) -> list[str]:
    """The summary as lines to print: what the read models say, then the measurements."""
    s, g = result.summary, result.gauges
    lines = [f"{k}: {v}" for k, v in s.items()]
    rate = result.events / result.wall_s if result.wall_s else 0.0
    lines.append(
        f"{result.events} events in {result.wall_s:.0f}s ({rate:.0f} events/s); peak outbox "
        f"{g.peak_outbox} rows unsent, peak consumer lag {g.peak_consumer_lag} messages"
    )
    lines.append(
        "where the time went: "
        + ", ".join(
            f"{what} {s:.0f}s" for what, s in sorted(result.spent.items(), key=lambda i: -i[1])
        )
    )
    if result.differences:
        lines += ["read models that differ from their rebuild:", *result.differences]
    else:
        lines.append("every read model equals its rebuild from the event store")
    return lines
