"""Worker threads: claim tasks, build manifests, send, record the outcome.

A worker claims a batch of due tasks for one destination (so many small Instance tasks share one
association), sends every instance not yet acknowledged, and lets policy.decide() pick the next
state. A heartbeat thread keeps RUNNING tasks alive; tasks of a dead worker or a killed router
go back to PENDING (at start-up for this node, and whenever a heartbeat is older than the limit).
"""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from typing import Callable, Mapping, Optional, Sequence

from .config import CourierConfig
from .errors import DeliveryError
from .orthanc_rest import OrthancRest
from .policy import SUCCESS, decide
from .senders import Sender
from .store import ManifestItem, Store

log = logging.getLogger("courier.engine")

LEVEL_PATHS = {"Instance": "instances", "Series": "series", "Study": "studies"}


def instance_manifest(rest: OrthancRest, level: str, resource_id: str) -> list[ManifestItem]:
    """The SOP Instance UIDs (and sizes) a task must deliver, from Orthanc's index."""
    if level == "Instance":
        info = rest.get_json(f"/instances/{resource_id}")
        return [ManifestItem(resource_id, info["MainDicomTags"].get("SOPInstanceUID", ""), info.get("FileSize", 0))]
    children = rest.get_json(f"/{LEVEL_PATHS[level]}/{resource_id}/instances")
    return [ManifestItem(c["ID"], c["MainDicomTags"].get("SOPInstanceUID", ""), c.get("FileSize", 0)) for c in children]


class Engine:
    def __init__(self, config: CourierConfig, store: Store, rest: OrthancRest, senders: Mapping[str, Sender],
                 clock: Callable[[], float] = time.time) -> None:
        self.config, self.store, self.rest, self.senders, self.clock = config, store, rest, senders, clock
        self.node = f"{config.router_name}:"
        self.incarnation = f"{self.node}{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._threads: list[threading.Thread] = []
        self.running = False

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        requeued = self.store.requeue_abandoned(self.node, self.config.heartbeat_timeout)
        if requeued:
            log.warning("requeued %d task(s) left RUNNING by a previous run", requeued)
        for index in range(self.config.workers):
            self._spawn(f"courier-worker-{index}", self._work_loop, f"{self.incarnation}:w{index}")
        self._spawn("courier-heartbeat", self._heartbeat_loop)
        self.running = True

    def _spawn(self, name: str, target: Callable, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self.running = False
        self._stop.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    # -- loops ------------------------------------------------------------------------------
    def _work_loop(self, owner: str) -> None:
        while not self._stop.is_set():
            try:
                busy = self.run_once(owner)
            except Exception:
                log.exception("worker %s: unexpected error; continuing", owner)
                busy = False
            if not busy:
                due_in = self.store.next_due_in()
                with self._wake:
                    if not self._stop.is_set():
                        self._wake.wait(timeout=min(1.0, due_in) if due_in is not None else 1.0)

    def _heartbeat_loop(self) -> None:
        interval = max(1.0, self.config.heartbeat_timeout / 4)
        while not self._stop.wait(interval):
            try:
                for thread_index in range(self.config.workers):
                    self.store.heartbeat(f"{self.incarnation}:w{thread_index}")
                # another router's (or a hung) worker whose heartbeat stopped
                self.store.requeue_abandoned("\x00never", self.config.heartbeat_timeout)
            except Exception:
                log.exception("heartbeat failed")

    # -- one batch --------------------------------------------------------------------------
    def run_once(self, owner: str) -> bool:
        tasks = self.store.claim(owner, self.config.batch_size)
        if not tasks:
            return False
        ready: list[tuple[dict, list[ManifestItem]]] = []
        for task in tasks:
            manifest = self._manifest(task, owner)
            if manifest is not None:
                ready.append((task, manifest))
        if ready:
            self._deliver(ready, owner)
        return True

    def _manifest(self, task: dict, owner: str) -> Optional[list[ManifestItem]]:
        manifest = self.store.manifest(task["id"])
        if manifest:
            return manifest
        try:
            manifest = instance_manifest(self.rest, task["level"], task["resource_id"])
        except DeliveryError as exc:
            self._finish(task, owner, [], 0, expected=0, error=f"cannot list the resource: {exc}",
                         retriable=exc.retriable)
            return None
        if not manifest:
            self._finish(task, owner, [], 0, expected=0, error="the resource has no instances", retriable=False)
            return None
        self.store.save_manifest(task["id"], manifest)
        task["expected"] = len(manifest)
        return manifest

    def _deliver(self, ready: Sequence[tuple[dict, list[ManifestItem]]], owner: str) -> None:
        destination = ready[0][0]["destination"]
        todo: dict[str, ManifestItem] = {}
        for _, manifest in ready:
            for item in manifest:
                if not item.delivered:
                    todo.setdefault(item.instance_id, item)
        report = self.senders[destination].send(list(todo.values())) if todo else {}
        for task, manifest in ready:
            newly = [i.instance_id for i in manifest if not i.delivered and report.get(i.instance_id, "x") is None]
            failed = [report[i.instance_id] for i in manifest if not i.delivered and report.get(i.instance_id)]
            already = sum(1 for i in manifest if i.delivered)
            error = f"{len(failed)} instance(s) not delivered: {failed[0]}" if failed else None
            self._finish(task, owner, newly, len(failed), expected=len(manifest),
                         delivered=already + len(newly), error=error)

    def _finish(self, task: dict, owner: str, newly: Sequence[str], failed: int, expected: int,
                delivered: int = 0, error: Optional[str] = None, retriable: bool = True) -> None:
        outcome = decide(expected, delivered, task["attempts"] + 1, self.config.retry, retriable)
        recorded = self.store.finish_attempt(task, owner, newly, failed, outcome.state, outcome.retry_in,
                                             None if outcome.state == SUCCESS else error)
        if recorded and outcome.state == SUCCESS and task["delete_after"]:
            self._delete_if_done(task)

    def _delete_if_done(self, task: dict) -> None:
        if self.store.unfinished_for_resource(task["resource_id"]):
            return
        try:
            self.rest.delete(f"/{LEVEL_PATHS[task['level']]}/{task['resource_id']}")
        except DeliveryError as exc:
            log.warning("task %s delivered but %s %s could not be deleted: %s",
                        task["id"], task["level"], task["resource_id"], exc)
