"""Prometheus metrics shared by every service (labelled by service)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_APPENDED = Counter("cunzhi_events_appended_total", "Events appended", ["service"])
CONCURRENCY_CONFLICTS = Counter(
    "cunzhi_concurrency_conflicts_total", "Appends refused by the version check", ["service"]
)
RELAY_PUBLISHED = Counter("cunzhi_relay_published_total", "Outbox rows published", ["service"])
RELAY_LAG = Gauge(
    "cunzhi_relay_lag_rows",
    "Outbox rows not yet published (counted up to 20000: that figure means at least as many)",
    ["service"],
)
RELAY_HISTORY_INCOMPLETE = Gauge(
    "cunzhi_relay_history_incomplete",
    "1 from the moment the relay finds the broker lost events it had acknowledged until the "
    "history queued again (or by cunzhi republish) is all published",
    ["service"],
)
RELAY_ERRORS = Counter("cunzhi_relay_errors_total", "Failed publish attempts", ["service"])
RELAY_SET_ASIDE = Counter(
    "cunzhi_relay_set_aside_total", "Outbox rows that can never be sent, set aside", ["service"]
)
RELAY_CRASHES = Counter("cunzhi_relay_crashes_total", "Relay restarts after a crash", ["service"])
CONSUMED = Counter(
    "cunzhi_consumer_events_total", "Events handled by a consumer", ["consumer", "outcome"]
)
CONSUMER_LAG = Gauge(
    "cunzhi_consumer_lag_seconds", "Age of the last event a consumer handled", ["consumer"]
)
DLQ = Counter("cunzhi_dlq_total", "Messages sent to a dead-letter topic", ["consumer", "reason"])
HANDLER_LATENCY = Histogram(
    "cunzhi_handler_seconds", "Time to handle one event or batch", ["consumer"]
)
CONSUMER_PAUSED = Gauge(
    "cunzhi_consumer_paused", "1 while a consumer waits for its tables to match it", ["consumer"]
)
CONSUMER_RETRIES = Counter(
    "cunzhi_consumer_retries_total", "Attempts a consumer repeated, by kind", ["consumer", "kind"]
)
DLQ_UNPUBLISHED = Counter(
    "cunzhi_dlq_unpublished_total",
    "Dead letters the broker refused for good, kept in <service>.dead_letters",
    ["consumer", "reason"],
)
