"""Campaign benchmark: rank a province, recompute its lights, beside raw limits of the same run.

    python3 -m uv run python benchmarks/bench_rectification.py [--villages N] [--targets N]

1. Ranking: ``villages`` assessed on the ten symptoms and ranked, candidates taken — the pure
   domain a ``POST /campaigns/{id}/ranking`` runs (aim < 1 s for the ranking itself); raw:
   Python's ``sorted`` of as many (score, id) pairs.
2. Lights in memory: the weighted roll-up of ``targets`` targets into their villages and the
   light rule for each village; raw: a plain loop multiplying and adding the same pairs.
3. Lights from PostgreSQL: the timer's own query (``light_inputs``) over the lights policy's
   tables holding those villages and targets (loaded with COPY), then the rule; raw: one
   ``GROUP BY`` of the same table summing weight × progress.

Infrastructure: embedded PostgreSQL by default, or CUNZHI_DATABASE_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import random
import tempfile
import time
from pathlib import Path

import asyncpg
from cunzhi_platform.consumer import create_tables, table_names
from cunzhi_platform.eventstore import init_connection
from cunzhi_platform.infra import infrastructure
from cunzhi_platform.logging import configure_logging
from cunzhi_platform.settings import Settings
from cunzhi_rectification.adapters.campaign.policies import LIGHTS, light_inputs
from cunzhi_rectification.domain.campaign import CampaignHeader
from cunzhi_rectification.domain.campaign_progress import (
    LightInputs,
    light_for,
    planned,
    roll_up,
)
from cunzhi_rectification.domain.campaign_settings import default_settings
from cunzhi_rectification.domain.ranking import assess, candidates, rank

SCHEMA = "bench_rectification"
START, END, TODAY = dt.date(2026, 9, 1), dt.date(2028, 8, 31), dt.date(2027, 6, 1)


def best_of(runs: int, fn):  # type: ignore[no-untyped-def]
    best, result = float("inf"), None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def province(villages: int, rng: random.Random) -> list[tuple[str, dict[str, int], float]]:
    codes = [s.code for s in default_settings().symptoms]
    return [
        (
            f"v{i:06d}",
            {c: rng.randint(1, 3) for c in codes if rng.random() < 0.3},
            round(rng.uniform(40, 100), 1),
        )
        for i in range(villages)
    ]


def targets_of(villages: int, targets: int, rng: random.Random) -> list[tuple[int, float, float]]:
    """(village index, weight, progress) — about ``targets / villages`` per village."""
    return [
        (rng.randrange(villages), float(rng.randint(1, 5)), float(rng.randint(0, 100)))
        for _ in range(targets)
    ]


def bench_ranking(data: list[tuple[str, dict[str, int], float]]) -> tuple[float, float, float]:
    rules = default_settings()

    def assess_all():  # type: ignore[no-untyped-def]
        return [assess(v, "t", s, last, rules) for v, s, last in data]

    t_assess, assessed = best_of(3, assess_all)
    t_rank, chosen = best_of(
        3, lambda: candidates(rank(assessed), rules.candidate_share, rules.candidate_rounding)
    )
    assert len(chosen) == round(len(data) * 0.15)
    pairs = [(a.score, a.village_id) for a in assessed]
    t_raw, _ = best_of(3, lambda: sorted(pairs))
    return t_assess, t_rank, t_raw


def bench_lights_memory(villages: int, rows: list[tuple[int, float, float]]) -> tuple[float, float]:
    rules = default_settings()
    plan = planned(START, END, TODAY)

    def lights():  # type: ignore[no-untyped-def]
        by_village: list[list[tuple[float | None, float]]] = [[] for _ in range(villages)]
        for v, w, p in rows:
            by_village[v].append((w, p))
        return [light_for(LightInputs(roll_up(ts), plan, 0, 0), rules) for ts in by_village]

    def raw():  # type: ignore[no-untyped-def]
        sums = [0.0] * villages
        weights = [0.0] * villages
        for v, w, p in rows:
            sums[v] += w * p
            weights[v] += w
        return sums, weights

    t_lights, _ = best_of(2, lights)
    t_raw, _ = best_of(2, raw)
    return t_lights, t_raw


async def bench_lights_db(
    url: str, villages: int, rows: list[tuple[int, float, float]]
) -> tuple[float, float, float]:
    conn = await asyncpg.connect(url)
    await init_connection(conn)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE; CREATE SCHEMA "{SCHEMA}"')
    await create_tables(conn, SCHEMA, LIGHTS)
    t = table_names(SCHEMA, LIGHTS)
    rng = random.Random(7)
    t0 = time.perf_counter()
    await conn.copy_records_to_table(
        "watch_villages",
        schema_name=SCHEMA,
        records=[("c", f"v{i:06d}", f"t{i % 300}", True, "green") for i in range(villages)],
    )
    await conn.copy_records_to_table(
        "watch_targets",
        schema_name=SCHEMA,
        records=[
            (
                f"g{n}",
                "c",
                f"v{v:06d}",
                w,
                START + dt.timedelta(days=rng.randrange(730)),
                p,
                False,
                None,
            )
            for n, (v, w, p) in enumerate(rows)
        ],
    )
    await conn.execute(f"ANALYZE {t['watch_villages']}; ANALYZE {t['watch_targets']}")
    t_copy = time.perf_counter() - t0
    header = CampaignHeader("c", "county", START, END, {}, default_settings())

    t0 = time.perf_counter()
    watched = await light_inputs(conn, t.__getitem__, header, TODAY)
    lights = [light_for(w.inputs, header.settings) for w in watched]
    t_db = time.perf_counter() - t0
    assert len(lights) == villages

    t0 = time.perf_counter()
    await conn.fetch(
        f"SELECT village_id, sum(weight * progress) / sum(weight) FROM {t['watch_targets']} "
        "GROUP BY village_id"
    )
    t_raw = time.perf_counter() - t0
    await conn.execute(f'DROP SCHEMA "{SCHEMA}" CASCADE')
    await conn.close()
    return t_db, t_raw, t_copy


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--villages", type=int, default=60_000)
    parser.add_argument("--targets", type=int, default=1_000_000)
    args = parser.parse_args()
    configure_logging("WARNING", json=False)
    rng = random.Random(2019)
    data = province(args.villages, rng)
    rows = targets_of(args.villages, args.targets, rng)
    t_assess, t_rank, t_sort = bench_ranking(data)
    t_lights, t_loop = bench_lights_memory(args.villages, rows)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        endpoints = stack.enter_context(infrastructure(Settings(data_dir=Path(tmp))))
        t_db, t_group, t_copy = await bench_lights_db(endpoints.database_url, args.villages, rows)
    v, n = f"{args.villages:,}", f"{args.targets:,}"
    lines = [
        (f"assess {v} villages (ten symptoms + last year)", t_assess, ""),
        (f"rank {v} and take the bottom 15 %", t_rank, "aim < 1 s"),
        (f"  raw: sorted() of {v} (score, id) pairs", t_sort, f"rank = {t_rank / t_sort:.1f}× raw"),
        (f"lights in memory: roll-up of {n} targets + rule", t_lights, ""),
        (f"  raw: loop of {n} weight × progress sums", t_loop, f"{t_lights / t_loop:.1f}× raw"),
        (f"lights from PostgreSQL (timer query + rule), {v}", t_db, ""),
        ("  raw: one GROUP BY over the same targets", t_group, f"{t_db / t_group:.1f}× raw"),
        (f"  (loading {n} targets with COPY)", t_copy, ""),
    ]
    print(f"machine: {os.cpu_count()} cores; PostgreSQL {endpoints.mode}")
    for label, seconds, note in lines:
        print(f"  {label:<56} {seconds * 1000:>9,.0f} ms  {note}")


if __name__ == "__main__":
    asyncio.run(main())
