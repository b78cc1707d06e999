"""Which pseudonymizer a task uses: its profile's, the same with the burned-in check waived for an
instance an admin released from quarantine, or, for a transfer job, one that writes the job's
trial attributes and takes each patient's pseudonym from the job's batch file."""
from __future__ import annotations

import dataclasses
from typing import Mapping

from courier.deid.pseudonymizer import PseudonymizationError, Pseudonymizer
from courier.store.records import Task
from courier.store.store import Store


class TaskPseudonymizers:
    def __init__(self, store: Store, pseudonymizers: Mapping[str, Pseudonymizer]) -> None:
        self.store, self.pseudonymizers = store, pseudonymizers
        self._of_jobs: dict[tuple[str, int], Pseudonymizer] = {}

    def for_task(self, profile: str, task: Task) -> Pseudonymizer:
        if task.reviewed:
            return self.pseudonymizers[profile].reviewed()
        if not task.job_id:
            return self.pseudonymizers[profile]
        key = (profile, task.job_id)
        if key not in self._of_jobs:
            self._of_jobs[key] = self._of_job(self.pseudonymizers[profile], task.job_id)
        return self._of_jobs[key]

    def _of_job(self, base: Pseudonymizer, job_id: int) -> Pseudonymizer:
        given = self.store.jobs.pseudonyms(job_id)
        job = self.store.jobs.get(job_id)
        trial = dict(job.trial) if job else {}
        if not given and not trial:
            return base

        def from_file(patient_id: str) -> str:
            if patient_id not in given:
                raise PseudonymizationError("PatientID has no pseudonym in the batch file", "quarantine")
            return given[patient_id]
        profile = dataclasses.replace(base.profile, trial={**base.profile.trial, **trial})
        return Pseudonymizer(profile, from_file if given else base.patient_pseudonym, base.source_ae)
