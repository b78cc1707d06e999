"""Deliver what claimed tasks still miss: read each instance from Orthanc (pseudonymized on the way
when the task has a profile, and then handed at once to the files the sender opened for its chunk:
sender.open_files), hand it to the destination's sender, and say per task what was acknowledged.
Retry decisions are not made here (courier.engine.policy makes them).

What cannot be pseudonymized is quarantined (the original stays in Orthanc, listed in
GET /courier/quarantine) and never sent as is; retrying such an instance cannot help, so its
failure is permanent, as is an instance the destination refuses for good.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Optional, Sequence

from courier.deid.file_meta import write_file
from courier.deid.for_tasks import TaskPseudonymizers
from courier.deid.pixel_tail import Parts, joined, read_split
from courier.deid.pseudonymizer import PseudonymizationError
from courier.delivery import dcmtk_store
from courier.delivery.modify import Modifier, ModifyContext, ModifyError
from courier.delivery.sender import Check, Failed, Report, Sender, Started, failure, never, open_files
from courier.errors import DeliveryError
from courier.orthanc_rest import OrthancRest
from courier.store.records import ManifestItem, Task
from courier.store.store import Store

log = logging.getLogger("courier.delivery")

Todo = Mapping[str, tuple[ManifestItem, Task]]      # Orthanc instance ID -> (manifest item, its task)
Progress = Callable[[dict[int, list[str]]], None]   # task id -> Orthanc IDs just acknowledged


CHUNK_BYTES = 32 * 2**20    # Courier's bytes of one chunk: in memory, then in RAM (/dev/shm) while storescu sends them


def chunks(entries: list, one_task: bool, courier_bytes: bool = False, largest: int = 100) -> Iterator[list]:
    """What there is to send, in chunks of at most 100 instances (one association each; never every
    pseudonymized instance of a large study in memory at once):
    - a batch of routed tasks in as few chunks as that allows (BatchSize 50: one association);
    - one task (a job's study) sent by Orthanc: about five chunks of 10 or more, so that its
      progress shows;
    - one task of Courier's bytes: two chunks or more once it has 2 x SMALLEST instances, so that
      the next chunk is made while the last one is sent;
    - Courier's bytes: never more than CHUNK_BYTES in a chunk (by the manifest's sizes)."""
    count = len(entries)
    if not one_task:
        size = largest
    elif courier_bytes:
        parts = max(2 if count >= 2 * dcmtk_store.SMALLEST else 1, -(-count // largest))
        size = min(largest, -(-count // parts))
    else:
        size = max(10, min(largest, -(-count // 5)))
    chunk: list = []
    total = 0
    for entry in entries:
        weight = entry[1][0].size if courier_bytes else 0
        if chunk and (len(chunk) >= size or total + weight > CHUNK_BYTES):
            yield chunk
            chunk, total = [], 0
        chunk.append(entry)
        total += weight
    if chunk:
        yield chunk


@dataclass(frozen=True)
class Delivery:
    """What one attempt achieved for one task."""
    task: Task
    newly_delivered: Sequence[str]      # Orthanc IDs acknowledged in this attempt
    failed: int                         # instances of the manifest still not delivered
    expected: int                       # instances in the manifest
    delivered: int                      # instances acknowledged so far, this attempt included
    error: Optional[str] = None
    retriable: bool = True              # some failure may go away on a later attempt
    interrupted: bool = False           # cancelled or stopping before everything was tried


class Deliverer:
    def __init__(self, store: Store, rest: OrthancRest, senders: Mapping[str, Sender],
                 pseudonymizers: TaskPseudonymizers,
                 modifier_of: Callable[[Task], Optional[Modifier]] = lambda task: None) -> None:
        """`modifier_of(task)`: the Modify of the task's route or job, if it has one."""
        self.store, self.rest, self.senders, self.pseudonymizers = store, rest, senders, pseudonymizers
        self.modifier_of = modifier_of

    def deliver(self, tasks: Sequence[Task], manifests: Mapping[int, list[ManifestItem]],
                cancelled: Check = never, progress: Progress = lambda done: None) -> list[Delivery]:
        """Tasks of one destination; they are sent in groups of one profile, in chunks (one
        association each). `cancelled()` is asked between instances and while a chunk is in
        flight; `progress({task id: Orthanc IDs})` hears what each chunk delivered, so that
        progress is counted per instance as it is acknowledged, not at the end of the task (not
        the batch's last chunk: the caller records the outcome right after, in one transaction
        the store needs anyway)."""
        groups: dict[tuple, list[Task]] = {}
        modifiers: dict[tuple, Optional[Modifier]] = {}
        for task in tasks:
            modifier = self.modifier_of(task)
            key = (task.profile, None if modifier is None else (task.route, task.job_id))
            groups.setdefault(key, []).append(task)
            modifiers[key] = modifier
        last = list(groups)[-1] if groups else None
        return [d for key, group in groups.items()
                for d in self._deliver_group(group, manifests, key[0], modifiers[key], cancelled, progress,
                                             last=key == last)]

    def _deliver_group(self, tasks: Sequence[Task], manifests: Mapping[int, list[ManifestItem]],
                       profile: Optional[str], modifier: Optional[Modifier], cancelled: Check,
                       progress: Progress, last: bool = True) -> list[Delivery]:
        """`last`: the last group of the batch, whose last chunk's outcome is recorded next."""
        todo: dict[str, tuple[ManifestItem, Task]] = {}
        report: Report = {}
        for task in tasks:
            for item in manifests[task.id]:
                if item.delivered:
                    continue
                if item.never_arrived:
                    report[item.instance_id] = Failed(f"not received from {task.source} (C-MOVE)")
                else:
                    todo.setdefault(item.instance_id, (item, task))
        sender = self.senders[tasks[0].destination]
        if getattr(sender, "per_task", False):           # one archive per study, a NIfTI per series: not in chunks
            report.update(self._per_task(sender, tasks, todo, profile, modifier, cancelled))
        else:
            report.update(self._in_chunks(sender, list(todo.items()), len(tasks) == 1, profile, modifier, cancelled,
                                          progress, last))
        deliveries = []
        not_sent = Failed("not sent")
        for task in tasks:
            manifest = manifests[task.id]
            undelivered = [i for i in manifest if not i.delivered]
            newly = [i.instance_id for i in undelivered if i.instance_id in report and report[i.instance_id] is None]
            failures = [report.get(i.instance_id, not_sent) for i in undelivered
                        if report.get(i.instance_id, not_sent) is not None]
            error = f"{len(failures)} instance(s) not delivered: {failures[0].reason}" if failures else None
            deliveries.append(Delivery(task, newly, len(failures), len(manifest),
                                       len(manifest) - len(undelivered) + len(newly), error,
                                       retriable=any(not f.permanent for f in failures),
                                       interrupted=any(f.interrupted for f in failures)))
        return deliveries

    def _in_chunks(self, sender: Sender, entries: list, one_task: bool, profile: Optional[str],
                   modifier: Optional[Modifier], cancelled: Check, progress: Progress, last: bool = True) -> Report:
        """Send chunk after chunk; Courier's bytes of the next chunk are made while the last chunk is
        in flight. A destination down or a cancel ends the attempt: the rest is reported not sent."""
        report: Report = {}
        stop: Optional[Failed] = None
        in_flight: Optional[tuple[list, Started, Report]] = None    # a chunk, its send, its transform's failures

        def record(chunk: list, sent: Report) -> Optional[Failed]:
            """A chunk's outcome: reported, its progress counted; why to stop, if the rest should."""
            report.update(sent)
            done: dict[int, list[str]] = {}
            for instance_id, (_, task) in chunk:
                if instance_id in sent and sent[instance_id] is None:
                    done.setdefault(task.id, []).append(instance_id)
            if done and not (last and len(report) == len(entries)):  # the batch's last chunk: its outcome is next
                progress(done)
            return next((f for f in sent.values() if f is not None and (f.down or f.interrupted)), None)

        def finish(entry: tuple[list, Started, Report]) -> Optional[Failed]:
            chunk, started, failures = entry
            return record(chunk, {**failures, **started()})

        own = profile is None and modifier is None
        try:
            for chunk in chunks(entries, one_task, courier_bytes=not own):
                if stop is None and cancelled():
                    stop = Failed("not sent: cancelled", interrupted=True)
                if stop is not None:
                    report.update({instance_id: stop for instance_id, _ in chunk})
                    continue
                if own:
                    stop = record(chunk, sender.send([item for _, (item, _) in chunk], cancelled))
                    continue
                files = open_files(sender, [item for _, (item, _) in chunk], cancelled)
                try:
                    failures = self._transform(profile, modifier, dict(chunk), files.add)
                    if in_flight is not None:
                        entry, in_flight = in_flight, None     # finished once, even if finishing raises
                        stop = finish(entry)
                except BaseException:
                    files.discard()
                    raise
                if stop is not None:
                    made = files.items
                    files.discard()
                    report.update(failures)
                    report.update({item.instance_id: stop for item in made})
                    continue
                if not len(files):              # every one quarantined or unreadable: its folder goes back
                    files.discard()
                    in_flight = (chunk, lambda: {}, failures)
                    continue
                in_flight = (chunk, files.start(), failures)
        finally:                        # whatever happened, the chunk in flight ends and its scratch folder goes
            if in_flight is not None:
                entry, in_flight = in_flight, None
                finish(entry)
        return report

    def _per_task(self, sender: Sender, tasks: Sequence[Task], todo: Todo, profile: Optional[str],
                  modifier: Optional[Modifier], cancelled: Check) -> Report:
        """Archives and NIfTI conversions are made per task (a study, a series), an archive with
        the job's password when it gave one."""
        report: Report = {}
        for task in tasks:
            mine = {i: entry for i, entry in todo.items() if entry[1] is task}
            if profile is None and modifier is None:
                files = self._originals(mine)
                read = {item.instance_id for item, _ in files}
                failures = {i: Failed("could not be read from Orthanc") for i in mine if i not in read}
            else:
                files = []
                failures = self._transform(profile, modifier, mine,
                                           lambda item, parts, files=files: files.append((item, joined(parts))))
            report.update(failures)
            if files:
                password = self.store.jobs.archive_password(task.job_id) if task.job_id else None
                report.update(sender.send_files(files, cancelled, f"job-{task.job_id}" if task.job_id else task.route,
                                                password))
        return report

    def _originals(self, todo: Todo) -> list:
        files = []
        for instance_id, (item, _) in todo.items():
            try:
                files.append((item, self.rest.instance_file(instance_id, item.size)))
            except DeliveryError:
                pass
        return files

    def _transform(self, profile: Optional[str], modifier: Optional[Modifier], todo: Todo,
                   made: Callable[[ManifestItem, Parts], None]) -> Report:
        """Read each original from Orthanc, apply the Modify, then pseudonymize it and hand it to
        `made(item, parts)` at once (which writes it where it goes, or keeps it); what cannot be
        is quarantined with the reason, never sent half-done. The failures."""
        report: Report = {}
        patients, uids = set(), {}
        for instance_id, (item, task) in todo.items():
            try:
                data = self.rest.instance_file(instance_id, item.size)
            except DeliveryError as exc:
                report[instance_id] = failure(exc)
                continue
            before = None if modifier is None else (
                lambda ds, task=task: modifier.apply(ds, ModifyContext(task.route, task.destination, task.job_id)))
            try:
                if profile is None:
                    parts, result = modified_parts(data, before), None
                else:
                    parts, result = self.pseudonymizers.for_task(profile, task).pseudonymize_parts(data, before)
            except ModifyError as exc:
                report[instance_id] = Failed(f"modify-error: {exc}", permanent=True)
                self.store.quarantine.add(str(exc), "modify-error", profile, task.route, task.id, instance_id,
                                          item.sop_instance_uid)
                continue
            except PseudonymizationError as exc:
                retry = exc.disposition == "retry"          # a broker outage is retried, not quarantined
                report[instance_id] = Failed(f"{exc.disposition}: {exc.reason}", permanent=not retry)
                if not retry:
                    self.store.quarantine.add(exc.reason, exc.disposition, profile, task.route, task.id,
                                              instance_id, item.sop_instance_uid)
                continue
            made(item, parts)
            del data, parts             # only the Result still holds the original, until the next one's
            if result is None:
                continue
            if result.dates_removed:
                log.warning("task %s: %d malformed date(s) removed from instance %s", task.id,
                            result.dates_removed, instance_id)
            patients.add(result.patient_id)
            uids.update(result.uids)
        if patients or uids:
            self.store.crosswalk.record(profile, patients, uids)
        return report


def modified_parts(data: bytes, before: Callable) -> Parts:
    """A DICOM file changed by `before(ds)` (a Modify), its Pixel Data set aside and appended as it
    came (deid.pixel_tail.Parts)."""
    try:
        ds, pixels = read_split(data)
    except Exception as exc:                                  # noqa: BLE001 - any unreadable file
        raise ModifyError(f"not a readable DICOM file: {type(exc).__name__}") from None
    before(ds)
    try:
        out = write_file(ds)
    except Exception as exc:                                  # noqa: BLE001 - a value that does not fit its VR
        raise ModifyError(f"the modified instance cannot be written: {type(exc).__name__}: {exc}") from None
    return (out, pixels) if pixels else (out,)
