"""Publishes queue depths and per-destination counters into Orthanc's Prometheus output."""
from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from typing import Callable, Optional

from courier import threads
from courier.config.parse import CourierConfig
from courier.store.store import Store

log = logging.getLogger("courier.metrics")

ROLLUP_SECONDS = 30.0          # the dashboard's hourly series is recomputed this often


def metric_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def metric_values(store: Store, config: Optional[CourierConfig] = None) -> dict[str, float]:
    """Everything Courier publishes in Orthanc's /tools/metrics-prometheus (monitoring/ names these)."""
    values: dict[str, float] = {}
    for state, count in store.tasks.queue_depth().items():
        values[f"courier_tasks_{state.lower()}"] = count
    for destination, stats in store.tasks.destination_stats().items():
        name = metric_name(destination)
        values[f"courier_delivered_instances_{name}"] = stats["delivered_instances"]
        values[f"courier_failed_instances_{name}"] = stats["failed_instances"]
        values[f"courier_delivered_bytes_{name}"] = stats["delivered_bytes"]
    values["courier_queue_wait_seconds"] = round(store.tasks.queue_wait(), 3)
    hour = store.stats.hourly(1)[-1]
    values["courier_received_instances_this_hour"] = hour["received"]
    values["courier_failed_tasks_this_hour"] = hour["failed"]
    values["courier_latency_p50_seconds"] = hour["latency_p50"]
    values["courier_latency_p95_seconds"] = hour["latency_p95"]
    if config is not None:
        try:
            values["courier_storage_free_bytes"] = float(shutil.disk_usage(config.storage_directory).free)
        except OSError:
            pass
    for node, status in store.nodes.statuses().items():
        if config is None or node in config.nodes:
            values[f"courier_node_up_{metric_name(node)}"] = 1.0 if status["Ok"] else 0.0
    return values


class MetricsPublisher:
    """Every `interval` seconds: the hourly rollup (courier.store.stats), then the metrics."""

    def __init__(self, store: Store, set_metric: Callable[[str, float], None], config: Optional[CourierConfig] = None,
                 interval: float = 5.0) -> None:
        self.store, self.set_metric, self.config, self.interval = store, set_metric, config, interval
        self._rolled_at = -ROLLUP_SECONDS
        self._stop = threading.Event()
        self._thread = threads.Thread(target=self._loop, name="courier-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def publish(self) -> None:
        if time.monotonic() - self._rolled_at >= ROLLUP_SECONDS:
            self.store.stats.rollup()
            self._rolled_at = time.monotonic()
        for name, value in metric_values(self.store, self.config).items():
            self.set_metric(name, value)

    def _loop(self) -> None:
        while True:
            try:
                self.publish()
            except Exception:
                log.exception("publishing metrics failed")
            if self._stop.wait(self.interval):
                return
