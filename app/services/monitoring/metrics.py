"""Prometheus metrics. Counters and histograms are recorded where things
happen; gauges (sessions by status, pool size, live sessions' memory and
CPU as the sweeper last sampled them) are read from the store at scrape
time, so they are right however many processes share the store.

Under gunicorn, PROMETHEUS_MULTIPROC_DIR (set by gunicorn.conf.py before any
worker imports this) makes every process write its samples to files that a
scrape aggregates.
"""
from collections.abc import Callable, Iterator
import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from ...store import Store

SESSIONS_CREATED = Counter("cxs_sessions_created_total", "Sessions created", ["source"])
SESSIONS_ENDED = Counter("cxs_sessions_ended_total", "Sessions ended", ["reason"])
SPAWN_SECONDS = Histogram("cxs_spawn_seconds", "ChimeraX spawn to ready",
                          buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60))
COMMAND_SECONDS = Histogram("cxs_command_seconds", "ChimeraX command round trip",
                            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 30))
COMMANDS_DENIED = Counter("cxs_commands_denied_total", "Commands denied by the policy", ["verb"])
FETCHES = Counter("cxs_fetch_total", "Fetches for sessions by result (hit, downloaded, or why not)", ["result"])
FETCH_BYTES = Counter("cxs_fetch_bytes_total", "Bytes downloaded by the fetch broker")
WEBHOOK_DELIVERIES = Counter("cxs_webhook_deliveries_total", "Sends of lifecycle events to WEBHOOK_URLS by "
                             "result: delivered, failed (sent again later), dead, skipped (no URLs)", ["result"])
FETCH_SECONDS = Histogram("cxs_fetch_seconds", "A fetch answered, hit or download",
                          buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60))


class StoreCollector:
    """Gauges computed from the store on each scrape."""

    def __init__(self, new_store: Callable[[], Store]) -> None:
        self.new_store = new_store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        store = self.new_store()
        try:
            by_status = store.count_sessions_by_status()
            pool = store.count_pool_by_status()
            cached = store.fetch_cache_bytes()
            used = store.live_usage_totals()
        finally:
            store.close()
        sessions = GaugeMetricFamily("cxs_sessions", "Sessions by status", labels=["status"])
        for status, count in sorted(by_status.items()):
            sessions.add_metric([status], count)
        yield sessions
        pooled = GaugeMetricFamily("cxs_pool_processes", "Warm pool processes by state", labels=["state"])
        for state in ("starting", "ready"):
            pooled.add_metric([state], pool.get(state, 0))
        yield pooled
        yield GaugeMetricFamily("cxs_fetch_cache_bytes", "Bytes in the fetch cache", value=cached)
        yield GaugeMetricFamily("cxs_session_memory_bytes", "Resident memory of live sessions, summed "
                                "(as last sampled)", value=used["memory_bytes"])
        yield GaugeMetricFamily("cxs_session_cpu_seconds", "CPU seconds live sessions have used so far, "
                                "summed (as last sampled)", value=used["cpu_seconds"])


def render(new_store: Callable[[], Store]) -> bytes:
    """The exposition text: this process's metrics, or all workers' in multiprocess mode."""
    gauges = CollectorRegistry()
    gauges.register(StoreCollector(new_store))
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        samples = CollectorRegistry()
        multiprocess.MultiProcessCollector(samples)
    else:
        from prometheus_client import REGISTRY as samples
    return generate_latest(samples) + generate_latest(gauges)
