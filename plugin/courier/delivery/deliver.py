"""Deliver what claimed tasks still miss: read each instance from Orthanc (pseudonymized on the way
when the task has a profile), hand it to the destination's sender, and say per task what was
acknowledged. Retry decisions are not made here (courier.engine.policy makes them).

What cannot be pseudonymized is quarantined (the original stays in Orthanc, listed in
GET /courier/quarantine) and never sent as is; retrying such an instance cannot help, so it is
reported as settled.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from courier.deid.for_tasks import TaskPseudonymizers
from courier.deid.pseudonymizer import PseudonymizationError
from courier.delivery.archive import ArchiveSender
from courier.delivery.sender import Report, Sender
from courier.errors import DeliveryError
from courier.orthanc_rest import OrthancRest
from courier.store.records import ManifestItem, Task
from courier.store.store import Store

log = logging.getLogger("courier.delivery")

Todo = Mapping[str, tuple[ManifestItem, Task]]      # Orthanc instance ID -> (manifest item, its task)


@dataclass(frozen=True)
class Delivery:
    """What one attempt achieved for one task."""
    task: Task
    newly_delivered: Sequence[str]      # Orthanc IDs acknowledged in this attempt
    failed: int                         # instances of the manifest still not delivered
    expected: int                       # instances in the manifest
    delivered: int                      # instances acknowledged so far, this attempt included
    error: Optional[str] = None
    retriable: bool = True


class Deliverer:
    def __init__(self, store: Store, rest: OrthancRest, senders: Mapping[str, Sender],
                 pseudonymizers: TaskPseudonymizers) -> None:
        self.store, self.rest, self.senders, self.pseudonymizers = store, rest, senders, pseudonymizers

    def deliver(self, tasks: Sequence[Task], manifests: Mapping[int, list[ManifestItem]]) -> list[Delivery]:
        """Tasks of one destination; they are sent in groups of one profile (one association each)."""
        groups: dict[Optional[str], list[Task]] = {}
        for task in tasks:
            groups.setdefault(task.profile, []).append(task)
        return [d for profile, group in groups.items() for d in self._deliver_group(group, manifests, profile)]

    def _deliver_group(self, tasks: Sequence[Task], manifests: Mapping[int, list[ManifestItem]],
                       profile: Optional[str]) -> list[Delivery]:
        todo: dict[str, tuple[ManifestItem, Task]] = {}
        never_arrived: dict[str, str] = {}
        for task in tasks:
            for item in manifests[task.id]:
                if item.delivered:
                    continue
                if item.never_arrived:
                    never_arrived[item.instance_id] = f"not received from {task.source} (C-MOVE)"
                else:
                    todo.setdefault(item.instance_id, (item, task))
        sender = self.senders[tasks[0].destination]
        settled: set[str] = set()          # failed for good: quarantined or refused, retrying cannot help
        report: Report
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
        deliveries = []
        for task in tasks:
            manifest = manifests[task.id]
            undelivered = [i for i in manifest if not i.delivered]
            newly = [i.instance_id for i in undelivered if report.get(i.instance_id, "not sent") is None]
            failed = [i.instance_id for i in undelivered if report.get(i.instance_id, "not sent")]
            error = f"{len(failed)} instance(s) not delivered: {report.get(failed[0], 'not sent')}" if failed else None
            deliveries.append(Delivery(task, newly, len(failed), len(manifest),
                                       len(manifest) - len(undelivered) + len(newly), error,
                                       retriable=any(i not in settled for i in failed)))
        return deliveries

    def _archive(self, sender: ArchiveSender, tasks: Sequence[Task], todo: Todo, profile: Optional[str]):
        """Archives are written per task (study), with the job's password when it gave one."""
        report: Report = {}
        settled: set[str] = set()
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
                password = self.store.jobs.archive_password(task.job_id) if task.job_id else None
                report.update(sender.send_files(files, f"job-{task.job_id}" if task.job_id else task.route, password))
        return report, settled

    def _originals(self, todo: Todo) -> list:
        files = []
        for instance_id, (item, _) in todo.items():
            try:
                files.append((item, self.rest.get_bytes(f"/instances/{instance_id}/file")))
            except DeliveryError:
                pass
        return files

    def _pseudonymize(self, profile: str, todo: Todo):
        """Read each original from Orthanc and pseudonymize it; what cannot be is quarantined."""
        files, report, settled = [], {}, set()
        patients, uids = set(), {}
        for instance_id, (item, task) in todo.items():
            try:
                data = self.rest.get_bytes(f"/instances/{instance_id}/file")
            except DeliveryError as exc:
                report[instance_id] = str(exc)
                continue
            try:
                out, result = self.pseudonymizers.for_task(profile, task).pseudonymize_bytes(data)
            except PseudonymizationError as exc:
                report[instance_id] = f"{exc.disposition}: {exc.reason}"
                if exc.disposition != "retry":          # a broker outage is retried, not quarantined
                    self.store.quarantine.add(exc.reason, exc.disposition, profile, task.route, task.id,
                                              instance_id, item.sop_instance_uid)
                    settled.add(instance_id)
                continue
            if result.dates_removed:
                log.warning("task %s: %d malformed date(s) removed from instance %s", task.id,
                            result.dates_removed, instance_id)
            files.append((item, out))
            patients.add(result.patient_id)
            uids.update(result.uids)
        if patients or uids:
            self.store.crosswalk.record(profile, patients, uids)
        return files, report, settled
