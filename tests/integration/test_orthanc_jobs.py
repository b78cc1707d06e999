"""Courier's wait for an Orthanc store job (orthanc_rest.run_job) against a real Orthanc, at its
edges: an unexpected error while waiting cancels the job in Orthanc (it would go on sending while
Courier retries the batch), and a job Orthanc has dropped from its history is an unknown outcome,
retried, never taken for a refused instance. Courier's own REST client from the test process,
with a JobEnds that no change callback feeds (so the job is asked only every CHECK_SECONDS)."""
import pytest

from courier.errors import DeliveryError, Refused
from courier.orthanc_rest import JobEnds, OrthancRest
from factory import write_instances
from harness import storescu, wait_until
from peers import RecordingScp


def test_an_unexpected_error_while_waiting_cancels_the_job_in_orthanc(cluster, tmp_path):
    slow = RecordingScp("SLOW", delay=0.3)                  # 20 instances: 6 s of sending
    try:
        node = cluster.orthanc("sender", extra={"DicomModalities": {"slow": slow.modality}})
        storescu(node.dicom_port, write_instances(tmp_path / "in", 20, size=16))
        rest = OrthancRest(node.url, job_ends=JobEnds())
        asked = []

        def cancelled():
            asked.append(1)
            if len(asked) > 3:
                raise RuntimeError("a defect while asking")
            return False
        with pytest.raises(RuntimeError):
            rest.run_job("/modalities/slow/store", {"Resources": node.instances()}, cancelled)
        (job_id,) = node.get("/jobs")
        state = wait_until(lambda: (s := node.get(f"/jobs/{job_id}"))["State"] not in ("Running", "Pending") and s,
                           20, 0.1, what="the job to leave Running")
        assert state["State"] == "Failure", state          # cancelled between instances, not left sending
        assert len(slow.received) < 20
    finally:
        slow.close()


def test_a_job_dropped_from_orthancs_history_is_retried_not_refused(cluster, tmp_path):
    dest = cluster.orthanc("dest")
    node = cluster.orthanc("sender", extra={"JobsHistorySize": 1, "DicomModalities": {"dest": dest.as_modality()}})
    storescu(node.dicom_port, write_instances(tmp_path / "in", 2, size=16))
    rest = OrthancRest(node.url, job_ends=JobEnds())
    ids = node.instances()

    def cancelled():            # once the job has ended, another one does, and pushes it out of the history of 1
        cancelled.asked += 1
        if cancelled.asked == 5:                  # 0.4 s on: two tiny instances are sent by then
            rest.post_json("/modalities/dest/store", {"Resources": ids[:1], "Synchronous": True})
        return False
    cancelled.asked = 0
    with pytest.raises(DeliveryError) as raised:
        rest.run_job("/modalities/dest/store", {"Resources": ids}, cancelled)
    assert not isinstance(raised.value, Refused) and raised.value.retriable
    assert "no longer knows job" in str(raised.value)
