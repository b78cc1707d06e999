"""Worker threads: claim tasks, build manifests, send, record the outcome.

A worker claims a batch of due tasks for one destination (so many small Instance tasks share one
association), sends every instance not yet acknowledged, and lets policy.decide() pick the next
state. A heartbeat thread keeps RUNNING tasks alive; tasks of a dead worker or a killed router
go back to PENDING (at start-up for this node, and whenever a heartbeat is older than the limit).
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import threading
import time
import uuid
from typing import Callable, Mapping, Optional, Sequence

from courier.config.parse import CourierConfig
from courier.errors import DeliveryError
from courier.orthanc_rest import OrthancRest
from courier.transfer import fetch
from courier.config import windows
from courier.store.records import CANCELED, FINAL_STATES, SUCCESS
from courier.engine.policy import decide
from courier.delivery.senders import ArchiveSender, Sender
from courier.deid.pseudonymizer import PseudonymizationError, Pseudonymizer
from courier.transfer.remote import search_of
from courier.store.records import Attempt, ManifestItem
from courier.store.store import Store

log = logging.getLogger("courier.engine")

LEVEL_PATHS = {"Instance": "instances", "Series": "series", "Study": "studies"}
MISSING = "missing:"          # manifest entry of an instance the source listed but never sent
DIRECT = "direct:"            # manifest entry of an instance moved straight from source to destination


def instance_manifest(rest: OrthancRest, level: str, resource_id: str) -> list[ManifestItem]:
    """The SOP Instance UIDs (and sizes) a task must deliver, from Orthanc's index."""
    if level == "Instance":
        info = rest.get_json(f"/instances/{resource_id}")
        return [ManifestItem(resource_id, info["MainDicomTags"].get("SOPInstanceUID", ""), info.get("FileSize", 0))]
    children = rest.get_json(f"/{LEVEL_PATHS[level]}/{resource_id}/instances")
    return [ManifestItem(c["ID"], c["MainDicomTags"].get("SOPInstanceUID", ""), c.get("FileSize", 0)) for c in children]


class Engine:
    def __init__(self, config: CourierConfig, store: Store, rest: OrthancRest, senders: Mapping[str, Sender],
                 pseudonymizers: Mapping[str, Pseudonymizer] = {}, clock: Callable[[], float] = time.time) -> None:
        self.config, self.store, self.rest, self.senders, self.clock = config, store, rest, senders, clock
        self.pseudonymizers = pseudonymizers
        self._job_pseudonymizers: dict[tuple[str, int], Pseudonymizer] = {}
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
            if busy:
                self.wake()                  # a destination slot is free again: let idle workers look
                continue
            # Idle. Tasks may be due but held by MaxWorkersPerDestination: wait to be woken (new
            # tasks, a finished batch) rather than poll, or until the next retry falls due.
            due_in = self.store.next_due_in()
            with self._wake:
                if not self._stop.is_set():
                    self._wake.wait(timeout=due_in if due_in and due_in < 1.0 else 1.0)

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

    def closed_sources(self) -> list[str]:
        """Nodes outside all their time windows right now: their transfers wait."""
        now = datetime.datetime.fromtimestamp(self.clock())
        return [node for node, settings in self.config.node_settings.items()
                if settings.windows and not windows.is_open(settings.windows, now)]

    # -- one batch --------------------------------------------------------------------------
    def run_once(self, owner: str) -> bool:
        """Claim a batch, send what its tasks still miss, record every outcome. False if idle."""
        tasks = self.store.claim(owner, self.config.batch_size, self.config.max_workers_per_destination,
                                 self.closed_sources(),
                                 {n: s.max_parallel_tasks for n, s in self.config.node_settings.items()})
        if not tasks:
            return False
        attempts: list[Attempt] = []
        manifests = self.store.manifests([t["id"] for t in tasks])
        fresh: dict[int, list[ManifestItem]] = {}
        for task in tasks:
            if task["source"] and self._direct(task):   # the source sends to the destination itself
                try:
                    attempts.append(self._direct_move(task))
                except DeliveryError as exc:
                    attempts.append(self._attempt(task, [], 0, task.get("expected") or 0, 0,
                                                  f"direct C-MOVE from {task['source']}: {exc}", exc.retriable))
                continue
            if task["source"]:                       # a transfer job: fetch from the source first
                try:
                    manifests[task["id"]] = self._fetch(task)
                except DeliveryError as exc:
                    attempts.append(self._attempt(task, [], 0, task.get("expected") or 0,
                                                  sum(i.delivered for i in manifests[task["id"]]),
                                                  f"fetch from {task['source']}: {exc}", exc.retriable))
                continue
            if manifests[task["id"]]:
                continue
            try:
                fresh[task["id"]] = manifests[task["id"]] = instance_manifest(self.rest, task["level"], task["resource_id"])
            except DeliveryError as exc:
                attempts.append(self._attempt(task, [], 0, 0, 0, f"cannot list the resource: {exc}", exc.retriable))
                continue
            if not manifests[task["id"]]:
                attempts.append(self._attempt(task, [], 0, 0, 0, "the resource has no instances", False))
            task["expected"] = len(manifests[task["id"]])
        if fresh:
            self.store.save_manifests(fresh)
        ended = {attempt.task["id"] for attempt in attempts}
        ready = [t for t in tasks if t["id"] not in ended and manifests[t["id"]]]
        attempts += self._deliver(ready, manifests)
        recorded = self.store.finish_attempts(owner, attempts)
        for attempt in attempts:
            task = attempt.task
            if task["source"] and task["delete_after"] and (attempt.state in FINAL_STATES or task["id"] not in recorded):
                self._delete_fetched(task)          # fetched only for this transfer: do not keep it
            elif attempt.state == SUCCESS and task["delete_after"] and task["id"] in recorded:
                self._delete_if_done(task)
        return True

    def _fetch(self, task: dict) -> list[ManifestItem]:
        """The job task's manifest: what the source lists (C-FIND IMAGE), fetched by C-MOVE if
        Courier's Orthanc lacks any of it; what never arrived stays as "missing:<UID>"."""
        node = self.config.nodes[task["source"]]
        series = task["series_uid"]
        expected = fetch.expected_uids(self.rest, task["source"], task["study_uid"], search_of(self.config, node.id), series)
        if not expected:
            raise DeliveryError(f"{task['source']} lists no instance of {task['level'].lower()} {series or task['study_uid']}")
        present = fetch.present_instances(self.rest, task["resource_id"], task["level"])
        delivered = {i.sop_instance_uid for i in self.store.manifests([task["id"]])[task["id"]] if i.delivered}
        if any(uid not in present and uid not in delivered for uid in expected):
            cancelled = lambda: self.store.task_state(task["id"]) == CANCELED or self._stop.is_set()  # noqa: E731
            method = self.config.node_settings[node.id].retrieve_method
            if method == "WADO":
                fetch.wado(self.rest, node.id, task["study_uid"], cancelled, series_uid=series)
            elif method == "C-GET":
                fetch.c_get(node, self.config.local_aet, task["study_uid"],
                            lambda data: self.rest.post_bytes("/instances", data), cancelled, series_uid=series)
            else:
                fetch.c_move(node, self.config.local_aet, task["study_uid"], cancelled, series_uid=series)
            present = fetch.present_instances(self.rest, task["resource_id"], task["level"])
        items = [ManifestItem(present[uid][0], uid, present[uid][1]) if uid in present
                 else ManifestItem(f"{MISSING}{uid}", uid) for uid in expected]
        self.store.replace_manifest(task["id"], items)
        task["expected"] = len(expected)
        return self.store.manifests([task["id"]])[task["id"]]

    def _direct(self, task: dict) -> bool:
        settings = self.config.node_settings.get(task["source"])
        return bool(settings and not task["profile"] and task["destination"] in settings.direct_move_to)

    def _direct_move(self, task: dict) -> Attempt:
        """C-MOVE from the source straight to the destination; what arrived is counted at the
        destination with C-FIND when it offers it, else taken from the C-MOVE's sub-operation counts."""
        source, target = self.config.nodes[task["source"]], self.config.nodes[task["destination"]]
        series = task["series_uid"]
        expected = fetch.expected_uids(self.rest, source.id, task["study_uid"], search_of(self.config, source.id), series)
        if not expected:
            raise DeliveryError(f"{source.id} lists no instance of {task['level'].lower()} {series or task['study_uid']}")
        manifest = [ManifestItem(f"{DIRECT}{uid}", uid) for uid in expected]
        self.store.replace_manifest(task["id"], manifest)
        task["expected"] = len(expected)
        counts = fetch.c_move(source, self.config.local_aet, task["study_uid"],
                              lambda: self.store.task_state(task["id"]) == CANCELED or self._stop.is_set(),
                              move_aet=target.aet, series_uid=series)
        if "C-FIND" in self.config.node_settings[target.id].capabilities:
            arrived = set(fetch.expected_uids(self.rest, target.id, task["study_uid"], search_of(self.config, target.id), series))
        elif not counts.get("NumberOfFailedSuboperations") and counts.get("NumberOfCompletedSuboperations", 0) >= len(expected):
            arrived = set(expected)
        else:
            arrived = set()
        newly = [i.instance_id for i in manifest if i.sop_instance_uid in arrived]
        missing = len(expected) - len(newly)
        return self._attempt(task, newly, missing, len(expected), len(newly),
                             f"{missing} instance(s) not found at {target.id} after the C-MOVE" if missing else None)

    def _delete_fetched(self, task: dict) -> None:
        if self.store.active_tasks_for_resource(task["resource_id"]):
            return
        try:
            self.rest.delete(f"/{LEVEL_PATHS[task['level']]}/{task['resource_id']}")
        except DeliveryError as exc:
            if getattr(exc, "status", None) != 404:
                log.warning("job task %s: fetched %s %s could not be deleted: %s", task["id"], task["level"].lower(),
                            task["resource_id"], exc)

    def _deliver(self, tasks: Sequence[dict], manifests: Mapping[int, list[ManifestItem]]) -> list[Attempt]:
        groups: dict[Optional[str], list[dict]] = {}
        for task in tasks:
            groups.setdefault(task["profile"], []).append(task)
        return [attempt for profile, group in groups.items() for attempt in self._deliver_group(group, manifests, profile)]

    def _deliver_group(self, tasks: Sequence[dict], manifests: Mapping[int, list[ManifestItem]],
                       profile: Optional[str]) -> list[Attempt]:
        """Send what the tasks (one destination, one profile) still miss; one Attempt per task."""
        todo: dict[str, tuple[ManifestItem, dict]] = {}
        never_arrived: dict[str, str] = {}
        for task in tasks:
            for item in manifests[task["id"]]:
                if item.delivered:
                    continue
                if item.instance_id.startswith(MISSING):
                    never_arrived[item.instance_id] = f"not received from {task['source']} (C-MOVE)"
                else:
                    todo.setdefault(item.instance_id, (item, task))
        sender = self.senders[tasks[0]["destination"]]
        settled: set[str] = set()          # failed for good: quarantined or refused, retrying cannot help
        if not todo:
            report = {}
        elif isinstance(sender, ArchiveSender):
            report, settled = self._archive(sender, tasks, todo, profile)
        elif profile is None:
            report = sender.send([item for item, _ in todo.values()])
        else:
            files, report, settled = self._pseudonymize(profile, todo)
            if files:
                report.update(sender.send_files(files))
        report.update(never_arrived)
        attempts = []
        for task in tasks:
            manifest = manifests[task["id"]]
            undelivered = [i for i in manifest if not i.delivered]
            newly = [i.instance_id for i in undelivered if report.get(i.instance_id, "not sent") is None]
            failed = [i.instance_id for i in undelivered if report.get(i.instance_id, "not sent")]
            error = f"{len(failed)} instance(s) not delivered: {report.get(failed[0], 'not sent')}" if failed else None
            attempts.append(self._attempt(task, newly, len(failed), len(manifest),
                                          len(manifest) - len(undelivered) + len(newly), error,
                                          retriable=any(i not in settled for i in failed)))
        return attempts

    def _archive(self, sender: ArchiveSender, tasks: Sequence[dict], todo: Mapping[str, tuple[ManifestItem, dict]],
                 profile: Optional[str]):
        """Archives are written per task (study), with the job's password when it gave one."""
        report, settled = {}, set()
        for task in tasks:
            mine = {i: entry for i, entry in todo.items() if entry[1] is task}
            if profile is None:
                files = self._originals(mine)
                read = {item.instance_id for item, _ in files}
                failures, done = {i: "could not be read from Orthanc" for i in mine if i not in read}, set()
            else:
                files, failures, done = self._pseudonymize(profile, mine)
            report.update(failures)
            settled |= done
            if files:
                password = self.store.job_archive_password(task["job_id"]) if task["job_id"] else None
                report.update(sender.send_files(files, f"job-{task['job_id']}" if task["job_id"] else task["route"],
                                                password))
        return report, settled

    def _pseudonymizer(self, profile: str, task: dict) -> Pseudonymizer:
        """The profile's pseudonymizer, or, for a batch job with a Pseudonym column, one that
        takes each patient's pseudonym from the file (a patient missing there is quarantined)."""
        if task.get("reviewed"):               # released by an admin: the burned-in check is waived
            return self.pseudonymizers[profile].reviewed()
        if not task.get("job_id"):
            return self.pseudonymizers[profile]
        key = (profile, task["job_id"])
        if key not in self._job_pseudonymizers:
            base = self.pseudonymizers[profile]
            given = self.store.job_pseudonyms(task["job_id"])
            trial = (self.store.job(task["job_id"]) or {}).get("trial") or {}
            if not given and not trial:
                self._job_pseudonymizers[key] = base
            else:
                def from_file(patient_id: str, given=given) -> str:
                    if patient_id not in given:
                        raise PseudonymizationError("PatientID has no pseudonym in the batch file", "quarantine")
                    return given[patient_id]
                profile_of_job = dataclasses.replace(base.profile, trial={**base.profile.trial, **trial})
                self._job_pseudonymizers[key] = Pseudonymizer(profile_of_job, from_file if given else base.patient_pseudonym)
        return self._job_pseudonymizers[key]

    def _originals(self, todo: Mapping[str, tuple[ManifestItem, dict]]) -> list:
        files = []
        for instance_id, (item, _) in todo.items():
            try:
                files.append((item, self.rest.get_bytes(f"/instances/{instance_id}/file")))
            except DeliveryError:
                pass
        return files

    def _pseudonymize(self, profile: str, todo: Mapping[str, tuple[ManifestItem, dict]]):
        """Read each original from Orthanc and pseudonymize it; what cannot be is quarantined
        (the original stays in Orthanc, listed in GET /courier/quarantine), never sent as is."""
        files, report, settled = [], {}, set()
        patients, uids = set(), {}
        for instance_id, (item, task) in todo.items():
            try:
                data = self.rest.get_bytes(f"/instances/{instance_id}/file")
            except DeliveryError as exc:
                report[instance_id] = str(exc)
                continue
            try:
                out, result = self._pseudonymizer(profile, task).pseudonymize_bytes(data)
            except PseudonymizationError as exc:
                report[instance_id] = f"{exc.disposition}: {exc.reason}"
                if exc.disposition != "retry":          # a broker outage is retried, not quarantined
                    self.store.quarantine(exc.reason, exc.disposition, profile, task["route"], task["id"],
                                          instance_id, item.sop_instance_uid)
                    settled.add(instance_id)
                continue
            if result.dates_removed:
                log.warning("task %s: %d malformed date(s) removed from instance %s", task["id"],
                            result.dates_removed, instance_id)
            files.append((item, out))
            patients.add(result.patient_id)
            uids.update(result.uids)
        if patients or uids:
            self.store.record_crosswalk(profile, patients, uids)
        return files, report, settled

    def _attempt(self, task: dict, newly: Sequence[str], failed: int, expected: int, delivered: int,
                 error: Optional[str], retriable: bool = True) -> Attempt:
        outcome = decide(expected, delivered, task["attempts"] + 1, self.config.retry, retriable)
        return Attempt(task, newly, failed, outcome.state, outcome.retry_in,
                       None if outcome.state == SUCCESS else error)

    def _delete_if_done(self, task: dict) -> None:
        if self.store.unfinished_for_resource(task["resource_id"]):
            return
        try:
            self.rest.delete(f"/{LEVEL_PATHS[task['level']]}/{task['resource_id']}")
        except DeliveryError as exc:
            log.warning("task %s delivered but %s %s could not be deleted: %s",
                        task["id"], task["level"], task["resource_id"], exc)
