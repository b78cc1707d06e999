"""The scheduler thread: runs the subscriptions that are due and resolves the items of jobs made in
the background (phase QUERYING), one at a time, each under a lease in the store, so that several
routers share the work and a router killed in the middle of a run leaves nothing held for long
(another router takes its leases over once its heartbeat is older than HeartbeatTimeoutSeconds;
at its next start it frees its own at once)."""
from __future__ import annotations

import logging
import threading
from typing import Callable

from courier import threads
from courier.config.parse import CourierConfig
from courier.errors import ApiError, DeliveryError
from courier.orthanc_rest import OrthancRest
from courier.store.store import Store
from courier.transfer.jobs import resolve
from courier.transfer.subscriptions import Runner

log = logging.getLogger("courier.scheduler")

TICK_SECONDS = 1.0
LEASE_SECONDS = 300.0
RETRY_SECONDS = 30.0


class Scheduler:
    def __init__(self, config: CourierConfig, store: Store, rest: OrthancRest, incarnation: str,
                 on_tasks: Callable[[], None] = lambda: None) -> None:
        self.config, self.store, self.rest = config, store, rest
        self.owner, self.on_tasks = f"{incarnation}:scheduler", on_tasks
        self.runner = Runner(config, store, rest)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = None
        self.running = False

    def reconfigure(self, config: CourierConfig) -> None:
        """New nodes and their settings, from the next tick."""
        self.runner = Runner(config, self.store, self.rest)
        self.config = config

    def start(self) -> None:
        self.store.subscriptions.release_leases(f"{self.config.router_name}:")
        self.store.jobs.release_leases(f"{self.config.router_name}:")
        self._thread = threads.Thread(target=self._loop, name="courier-scheduler", daemon=True)
        self._thread.start()
        self.running = True

    def stop(self) -> None:
        self.running = False
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(TICK_SECONDS)
            self._wake.clear()
            try:
                self.run_due()
            except Exception:
                log.exception("scheduler: unexpected error; continuing")

    def run_due(self) -> None:
        for job_id in self.store.jobs.querying(self.config.heartbeat_timeout):
            if self._stop.is_set():
                return
            self._resolve(job_id)
        for subscription_id in self.store.subscriptions.due(self.config.heartbeat_timeout):
            if self._stop.is_set():
                return
            subscription = self.store.subscriptions.take(subscription_id, self.owner, LEASE_SECONDS,
                                                          self.config.heartbeat_timeout, if_due=True)
            if subscription is None:
                continue
            try:
                if self.runner.run(subscription, self.owner):
                    self.on_tasks()
            except (DeliveryError, ApiError) as exc:
                log.warning("subscription %s: query on %s failed, retried in %.0f s: %s", subscription_id,
                            subscription.spec["Source"], RETRY_SECONDS, exc)
                self.store.subscriptions.failed_run(subscription, self.owner,
                                                    f"query on {subscription.spec['Source']}: {exc}", RETRY_SECONDS)
            except Exception as exc:
                log.exception("subscription %s: run failed", subscription_id)
                self.store.subscriptions.failed_run(subscription, self.owner, f"internal error ({type(exc).__name__})",
                                                    RETRY_SECONDS)

    def _resolve(self, job_id: int) -> None:
        """The next unresolved items of a QUERYING job, a few at a time: each becomes its tasks (held
        until the job starts), or its error; the job is READY, or starts, once all are resolved."""
        taken = self.store.jobs.take_items(job_id, self.owner, LEASE_SECONDS, limit=10,
                                           stale_after=self.config.heartbeat_timeout)
        if taken is None:
            return
        source, items = taken
        outcomes = {}
        for index, item in items:
            try:
                outcomes[index] = resolve(self.rest, self.config, source, [item])
            except ApiError as exc:
                if exc.status == 502:           # the source did not answer: not the item's fault, try later
                    log.warning("job %s: resolving items waits %.0f s: %s", job_id, RETRY_SECONDS, exc.message)
                    break
                outcomes[index] = exc.message   # the item itself: found nothing, or asks what cannot be done
        if self.store.jobs.resolved_items(job_id, self.owner, outcomes,
                                          retry_at=None if len(outcomes) == len(items) else
                                          self.store.clock() + RETRY_SECONDS):
            self.on_tasks()
