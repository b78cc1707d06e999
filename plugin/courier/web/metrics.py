"""Publishes queue depths and per-destination counters into Orthanc's Prometheus output."""
from __future__ import annotations

import logging
import re
import threading
from typing import Callable

from courier.store.store import Store

log = logging.getLogger("courier.metrics")


def metric_values(store: Store) -> dict[str, float]:
    values: dict[str, float] = {}
    for state, count in store.tasks.queue_depth().items():
        values[f"courier_tasks_{state.lower()}"] = count
    for destination, stats in store.tasks.destination_stats().items():
        name = re.sub(r"[^A-Za-z0-9_]", "_", destination)
        values[f"courier_delivered_instances_{name}"] = stats["delivered_instances"]
        values[f"courier_failed_instances_{name}"] = stats["failed_instances"]
        values[f"courier_delivered_bytes_{name}"] = stats["delivered_bytes"]
    return values


class MetricsPublisher:
    def __init__(self, store: Store, set_metric: Callable[[str, float], None], interval: float = 5.0) -> None:
        self.store, self.set_metric, self.interval = store, set_metric, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="courier-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def publish(self) -> None:
        for name, value in metric_values(self.store).items():
            self.set_metric(name, value)

    def _loop(self) -> None:
        while True:
            try:
                self.publish()
            except Exception:
                log.exception("publishing metrics failed")
            if self._stop.wait(self.interval):
                return
