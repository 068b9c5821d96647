"""The alert rules and the dashboard in deploy/monitoring name only what cunzhi exports.

Every expression is parsed by ``promql-parser`` (the Rust PromQL parser of GreptimeDB, the
grammar of Prometheus); each metric it names must be registered by the platform or a service
once all their modules are imported, with the labels the expression matches or groups by.
Prometheus' own ``up``, kube-state-metrics' readiness and the Kafka Exporter's consumer-group
lag are the only outside names.
What no offline check covers: the alert templates' Go syntax, and whether a threshold is wise.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import pkgutil
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import promql_parser
import pytest
import yaml
from cunzhi_platform.clock import SHANGHAI, ManualClock
from cunzhi_platform.consumer import create_tables
from cunzhi_platform.envelope import CommandContext
from cunzhi_platform.eventstore import PLATFORM_MIGRATIONS, EventStore
from cunzhi_platform.migrations import migrate
from cunzhi_platform.rebuild import rebuild
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

MONITORING = Path(__file__).parents[1] / "deploy" / "monitoring"
PACKAGES = (
    "cunzhi_platform",
    "cunzhi_topics",
    "cunzhi_meetings",
    "cunzhi_rectification",
    "cunzhi_notifications",
)
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count", ""),
    "gauge": ("",),
}
OUTSIDE = {
    "up": {"namespace", "pod"},  # Prometheus, per target, labels from the scrape config
    "kube_pod_container_status_ready": {"namespace", "pod", "container"},  # kube-state-metrics
    "kafka_consumergroup_lag": {"consumergroup", "topic", "partition"},  # Strimzi Kafka Exporter
}
SEVERITIES = {"critical", "warning", "info"}


def exported() -> dict[str, set[str]]:
    """Every series name the platform and services export, with its label names."""
    metrics: list[MetricWrapperBase] = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        modules = [root]
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            modules.append(importlib.import_module(info.name))
        for module in modules:
            metrics += [v for v in vars(module).values() if isinstance(v, MetricWrapperBase)]
    registered = {m.name for m in REGISTRY.collect()}
    names: dict[str, set[str]] = dict(OUTSIDE)
    for metric in metrics:
        (family,) = metric.describe()
        # A module-level metric not in the default registry would never reach /metrics.
        assert family.name in registered, family.name
        for suffix in SUFFIXES[family.type]:
            names[family.name + suffix] = set(metric._labelnames) | (
                {"le"} if suffix == "_bucket" else set()
            )
    return names


@dataclass
class Named:
    metric: str
    labels: set[str]


def named_in(expr: str) -> tuple[list[Named], set[str]]:
    """The selectors of an expression with the labels they match, and every label it groups by."""
    selectors: list[Named] = []
    grouping: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            selectors.append(Named(node.name, {m.name for m in node.matchers.matchers}))
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            grouping.update(node.modifier.labels)
        elif (
            isinstance(node, promql_parser.BinaryExpr) and node.modifier and node.modifier.matching
        ):
            grouping.update(node.modifier.matching.labels)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return selectors, grouping


def check_expr(expr: str, names: dict[str, set[str]]) -> set[str]:
    """Problems of one expression; returns the labels its result may carry."""
    selectors, grouping = named_in(expr)
    assert selectors, f"names no metric: {expr}"
    for s in selectors:
        assert s.metric in names, f"{s.metric} is exported by nothing ({expr})"
        unknown = s.labels - names[s.metric]
        assert not unknown, f"{s.metric} has no label {sorted(unknown)} ({expr})"
    known = set().union(*(names[s.metric] for s in selectors))
    assert grouping <= known | {"le"}, f"groups by unknown labels {grouping - known} ({expr})"
    return known


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((MONITORING / "alerts.yaml").read_text())["groups"]
    assert len({g["name"] for g in groups}) == len(groups)
    return [rule for g in groups for rule in g["rules"]]


def test_every_alert_rule_parses_and_names_exported_metrics() -> None:
    names = exported()
    seen: set[str] = set()
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
        assert rule["alert"] not in seen, f"two rules named {rule['alert']}"
        seen.add(rule["alert"])
        if "for" in rule:
            promql_parser.parse_duration(rule["for"])
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        labels = check_expr(rule["expr"], names)
        for text in rule["annotations"].values():
            used = set(re.findall(r"\$labels\.(\w+)", text))
            assert used <= labels, f"{rule['alert']}: no label {used - labels} in the result"


def test_rules_on_rare_events_see_a_counters_first_increment() -> None:
    """``increase(x[w]) > 0`` alone misses a labelled counter's first step (no series before).

    Every rule that alerts on any increase of a counter must also alert on its new series
    (a rule where such an increase only silences, after ``unless``, needs no such branch).
    """
    checked = 0
    for rule in rules():
        alerting_on = r"sum (?:by \([^)]*\) )?\(increase\((\w+)[^\[]*\[(\w+)\]\)\) > 0(?![.\d])"
        for metric, window in re.findall("^" + alerting_on, rule["expr"]):
            checked += 1
            assert re.search(
                rf"{metric}\b.* unless {metric}\b.* offset {window}\b", rule["expr"]
            ), f"{rule['alert']}: the first {metric} of a new series would not alert"
    assert checked >= 4


def test_the_rules_cover_what_county_it_must_be_told() -> None:
    named = {s.metric for rule in rules() for s in named_in(rule["expr"])[0]}
    must = {
        "cunzhi_relay_lag_rows",
        "cunzhi_relay_set_aside_total",
        "cunzhi_relay_crashes_total",
        "cunzhi_consumer_lag_seconds",
        "cunzhi_consumer_paused",
        "cunzhi_dlq_total",
        "cunzhi_dlq_unpublished_total",
        "cunzhi_notifications_sends_total",
        "cunzhi_rectification_deadline_steps_total",
        "kube_pod_container_status_ready",
        "kafka_consumergroup_lag",
    }
    assert must <= named, must - named


def test_every_dashboard_query_parses_and_names_exported_metrics() -> None:
    names = exported()
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    queries = [t["expr"] for p in panels for t in p.get("targets", [])]
    assert len(queries) >= 15
    for expr in queries:
        check_expr(expr, names)
    shown = {s.metric for expr in queries for s in named_in(expr)[0]}
    series_of: dict[str, set[str]] = {}
    for name in names:
        if name.startswith("cunzhi_"):
            family = re.sub(r"_(total|bucket|sum|count)$", "", name)
            series_of.setdefault(family, set()).add(name)
    missing = sorted(f for f, series in series_of.items() if not series & shown)
    assert not missing, f"not on the dashboard: {missing}"


def test_the_checker_refuses_what_prometheus_would_not_find() -> None:
    names = exported()
    with pytest.raises(AssertionError, match="exported by nothing"):
        check_expr("rate(cunzhi_relay_lag_rows_total[5m])", names)
    with pytest.raises(AssertionError, match="no label"):
        check_expr('cunzhi_consumer_events_total{outcom="applied"}', names)
    with pytest.raises(AssertionError, match="unknown labels"):
        check_expr("sum by (consumer) (cunzhi_relay_lag_rows)", names)
    with pytest.raises(ValueError):
        check_expr("sum by (service (cunzhi_relay_lag_rows)", names)


@pytest.mark.slow
async def test_the_deadline_timer_counts_overdue_and_escalated_tasks(
    pool: asyncpg.Pool, schema: str
) -> None:
    from cunzhi_rectification.adapters.tasks.projection import TasksProjection
    from cunzhi_rectification.adapters.tasks.timer import fire_due_deadlines
    from cunzhi_rectification.application.tasks import assign_tasks
    from cunzhi_rectification.domain.tasks import EscalationPolicy, TaskDraft, deadline
    from cunzhi_rectification.events import Assignee, registry

    start, due = dt.date(2026, 3, 2), dt.date(2026, 3, 31)
    clock = ManualClock(dt.datetime.combine(start, dt.time(9), tzinfo=SHANGHAI))
    store = EventStore(pool, schema, registry, clock)
    projection = TasksProjection()
    async with pool.acquire() as conn:
        await migrate(conn, schema, PLATFORM_MIGRATIONS)
        await create_tables(conn, schema, projection)
    drafts = [
        TaskDraft(
            task_id=f"t{n}",
            source="campaign_target",
            township_id="town",
            village_id=f"v{n}",
            assignee=Assignee(kind="village", id=f"v{n}"),
            title="目标",
            starts_on=start,
            due_on=due,
            campaign_id="c",
        )
        for n in range(3)
    ]
    await assign_tasks(store, drafts, CommandContext())
    await rebuild(projection, store)
    policy = EscalationPolicy(township_after=2, county_after=4)

    def counted() -> dict[str, float]:
        return {
            level: REGISTRY.get_sample_value(
                "cunzhi_rectification_deadline_steps_total", {"level": level}
            )
            or 0.0
            for level in ("village", "township", "county")
        }

    before = counted()
    clock.set(deadline(due))
    await fire_due_deadlines(store, clock, policy)
    await rebuild(projection, store)
    clock.set(deadline(due) + dt.timedelta(days=20))
    await fire_due_deadlines(store, clock, policy)
    after = counted()
    assert {k: after[k] - before[k] for k in after} == {"village": 3, "township": 3, "county": 3}
