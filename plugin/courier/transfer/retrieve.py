"""The fetch step of a job task: what the source lists (C-FIND at IMAGE level, or QIDO), fetched
into Courier's Orthanc by the node's RetrieveMethod when anything is missing, and recorded as the
task's manifest; what never arrived stays in the manifest as "missing:<UID>".

Or, for a job that modifies nothing and whose source can C-MOVE to the destination itself
(DirectMoveTo), the direct move, counted at the destination.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from courier.config.parse import CourierConfig
from courier.errors import DeliveryError
from courier.orthanc_rest import OrthancRest
from courier.store.records import CANCELED, DIRECT, MISSING, ManifestItem, Task
from courier.store.store import Store
from courier.transfer import fetch
from courier.transfer.remote import search_of


@dataclass(frozen=True)
class DirectMove:
    """What a direct C-MOVE achieved: the manifest entries that arrived, out of how many."""
    arrived: list[str]
    expected: int

    @property
    def missing(self) -> int:
        return self.expected - len(self.arrived)


class Retriever:
    def __init__(self, config: CourierConfig, store: Store, rest: OrthancRest, stopping: Callable[[], bool]) -> None:
        self.config, self.store, self.rest, self.stopping = config, store, rest, stopping

    def _cancelled(self, task: Task) -> Callable[[], bool]:
        return lambda: self.store.tasks.state_of(task.id) == CANCELED or self.stopping()

    def _patient_root(self, node_id: str) -> bool:
        settings = self.config.node_settings.get(node_id)
        return bool(settings and settings.query_model == "PatientRoot")

    def _expected(self, task: Task, node_id: str) -> list[str]:
        expected = fetch.expected_uids(self.rest, node_id, task.study_uid, search_of(self.config, node_id),
                                       task.series_uid, task.patient_id if self._patient_root(node_id) else None)
        if not expected:
            raise DeliveryError(f"{node_id} lists no instance of {task.level.lower()} {task.series_uid or task.study_uid}")
        return expected

    def fetch(self, task: Task) -> list[ManifestItem]:
        """The job task's manifest once whatever Courier's Orthanc lacks has been fetched: what the
        source lists, less what another task of the job delivered already (a study that grew is
        topped up with its new instances only); empty when there is nothing new."""
        node = self.config.nodes[task.source]
        before = self.store.tasks.delivered_by_job(task)
        expected = [uid for uid in self._expected(task, node.id) if uid not in before]
        if not expected:
            self.store.tasks.replace_manifest(task.id, [])
            return []
        present = fetch.present_instances(self.rest, task.resource_id, task.level)
        delivered = {i.sop_instance_uid for i in self.store.tasks.manifests([task.id])[task.id] if i.delivered}
        if any(uid not in present and uid not in delivered for uid in expected):
            cancelled = self._cancelled(task)
            settings = self.config.node_settings[node.id]
            timeout = settings.timeouts.for_availability(task.availability)
            model = {"query_model": settings.query_model, "patient_id": task.patient_id, "timeout": timeout,
                     "connect_timeout": settings.timeouts.connect}
            if settings.retrieve_method == "WADO":
                fetch.wado(self.rest, node.id, task.study_uid, cancelled, timeout, series_uid=task.series_uid)
            elif settings.retrieve_method == "C-GET":
                fetch.c_get(node, self.config.local_aet, task.study_uid, lambda data: self.rest.post_bytes("/instances", data),
                            cancelled, series_uid=task.series_uid, **model)
            else:
                fetch.c_move(node, self.config.local_aet, task.study_uid, cancelled, series_uid=task.series_uid, **model)
            present = fetch.present_instances(self.rest, task.resource_id, task.level)
        items = [ManifestItem(present[uid][0], uid, present[uid][1]) if uid in present
                 else ManifestItem(f"{MISSING}{uid}", uid) for uid in expected]
        self.store.tasks.replace_manifest(task.id, items)
        return self.store.tasks.manifests([task.id])[task.id]

    def is_direct(self, task: Task) -> bool:
        settings = self.config.node_settings.get(task.source)
        return bool(settings and not task.profile and task.destination in settings.direct_move_to)

    def direct_move(self, task: Task) -> DirectMove:
        """C-MOVE from the source straight to the destination; what arrived is counted at the
        destination with C-FIND when it offers it, else taken from the C-MOVE's sub-operation counts."""
        source, target = self.config.nodes[task.source], self.config.nodes[task.destination]
        expected = self._expected(task, source.id)
        manifest = [ManifestItem(f"{DIRECT}{uid}", uid) for uid in expected]
        self.store.tasks.replace_manifest(task.id, manifest)
        settings = self.config.node_settings[source.id]
        counts = fetch.c_move(source, self.config.local_aet, task.study_uid, self._cancelled(task),
                              settings.timeouts.for_availability(task.availability), move_aet=target.aet,
                              series_uid=task.series_uid, query_model=settings.query_model, patient_id=task.patient_id,
                              connect_timeout=settings.timeouts.connect)
        if "C-FIND" in self.config.node_settings[target.id].capabilities:
            arrived = set(fetch.expected_uids(self.rest, target.id, task.study_uid, search_of(self.config, target.id),
                                              task.series_uid))
        elif not counts.get("NumberOfFailedSuboperations") and counts.get("NumberOfCompletedSuboperations", 0) >= len(expected):
            arrived = set(expected)
        else:
            arrived = set()
        return DirectMove([i.instance_id for i in manifest if i.sop_instance_uid in arrived], len(expected))
