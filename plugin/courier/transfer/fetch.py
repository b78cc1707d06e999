"""Bringing a study from a source PACS into Courier's Orthanc, for transfer jobs.

C-MOVE issued by Courier with pynetdicom (the sub-operations land in Orthanc's own C-STORE SCP):
measured on Orthanc 1.10.1, cancelling Orthanc's own move job does not stop a C-MOVE in
progress (the PACS went on sending), whereas pynetdicom can send a C-CANCEL, and abort the
association if the PACS ignores it. Then a count: the SOP Instance UIDs the source lists at
IMAGE level are compared with what arrived. A PACS that answers "success" with failed
sub-operations, or that silently loses images, shows up as missing UIDs, never as success.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

from courier import threads
from courier.config.nodes import Node
from courier.errors import DeliveryError
from courier.orthanc_rest import OrthancHttpError, OrthancRest
from courier.store.records import orthanc_id
from courier.transfer.remote import open_association

POLL_SECONDS = 0.3
MOVE_LOOK_SECONDS = 0.02    # how often pynetdicom's reader looks at a C-MOVE's association while idle (see c_move)


def orthanc_study_id(patient_id: str, study_uid: str) -> str:
    return orthanc_id(patient_id, study_uid)


def expected_uids(rest: OrthancRest, source: str, study_uid: str, search: Callable,
                  series_uid: Optional[str] = None, patient_id: Optional[str] = None) -> list[str]:
    keys = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid or "", "SOPInstanceUID": ""}
    if patient_id:
        keys["PatientID"] = patient_id              # Patient Root needs it above the study
    answers = search(rest, source, "IMAGE", keys)
    return sorted({a["SOPInstanceUID"] for a in answers if a.get("SOPInstanceUID")})


def present_instances(rest: OrthancRest, resource_id: str, level: str = "Study") -> dict[str, tuple[str, int]]:
    """SOP Instance UID -> (Orthanc ID, size) of what Courier's Orthanc holds of the study or series."""
    try:
        children = rest.get_json(f"/{'series' if level == 'Series' else 'studies'}/{resource_id}/instances")
    except OrthancHttpError as exc:
        if exc.status == 404:
            return {}
        raise
    return {c["MainDicomTags"].get("SOPInstanceUID", ""): (c["ID"], c.get("FileSize", 0)) for c in children}


def _identifier(study_uid: str, series_uid: Optional[str], patient_id: Optional[str] = None):
    from pydicom.dataset import Dataset

    identifier = Dataset()
    identifier.QueryRetrieveLevel = "SERIES" if series_uid else "STUDY"
    if patient_id is not None:
        identifier.PatientID = patient_id           # Patient Root: the unique key of the level above
    identifier.StudyInstanceUID = study_uid
    if series_uid:
        identifier.SeriesInstanceUID = series_uid
    return identifier


def _model(query_model: str, service: str):
    """The retrieve information model of a node's QueryModel (StudyRoot or PatientRoot)."""
    from pynetdicom import sop_class

    return getattr(sop_class, f"{'PatientRoot' if query_model == 'PatientRoot' else 'StudyRoot'}"
                              f"QueryRetrieveInformationModel{service}")


def c_move(node: Node, local_aet: str, study_uid: str, cancelled: Callable[[], bool],
           timeout: float = 3600.0, dimse_timeout: float = 600.0, move_aet: str = "",
           series_uid: Optional[str] = None, query_model: str = "StudyRoot", patient_id: Optional[str] = None,
           connect_timeout: float = 30.0) -> dict:
    """C-MOVE the study to `move_aet` (default: `local_aet`, Courier's Orthanc), in the node's
    information model (Patient Root asks with the PatientID too). Returns the final response's
    counts; DeliveryError if the association fails, the move is refused, cancelled or too slow."""
    move_model = _model(query_model, "Move")

    assoc = open_association(node, local_aet, [move_model], min(dimse_timeout, timeout), "C-MOVE", connect_timeout)
    identifier = _identifier(study_uid, series_uid, patient_id if query_model == "PatientRoot" else None)
    return _run_retrieve(assoc, lambda: assoc.send_c_move(identifier, move_aet or local_aet, move_model, msg_id=1), move_model,
                         node.id, "C-MOVE", cancelled, timeout, look_seconds=MOVE_LOOK_SECONDS)


def _look_every(assoc, seconds: float) -> Optional[float]:
    """Make pynetdicom's reader thread of `assoc` look for data every `seconds` while idle (its
    default: every millisecond, whatever the association carries); the previous value, or None
    when this pynetdicom has no such setting (nothing is changed then; a unit test says so).

    While a C-MOVE runs, Courier only reads its pending responses (and may send a C-CANCEL): the
    instances come on the PACS's own associations to Orthanc. Looking 1000 times a second cost
    the router more CPU than decoding the responses (measured: 1.6-2.2 ms of the client's CPU per
    moved instance, 1.05-1.45 ms looking every 20-50 ms, the same time taken). Not for a C-GET:
    there each received instance's C-STORE response waits for the reader's next look."""
    dul = getattr(assoc, "dul", None)
    previous = getattr(dul, "_run_loop_delay", None)
    if not isinstance(previous, (int, float)):
        return None
    dul._run_loop_delay = seconds
    return previous


def _run_retrieve(assoc, responses: Callable, model, node_id: str, name: str, cancelled: Callable[[], bool],
                  timeout: float, look_seconds: Optional[float] = None) -> dict:
    """Consume a C-MOVE/C-GET's responses in a thread; a cancel sends C-CANCEL, then aborts.
    `look_seconds`: how often the association's reader looks while the responses come (then as
    before again, so that the release is not slowed)."""
    outcome: dict = {}
    previous = _look_every(assoc, look_seconds) if look_seconds is not None else None

    def run() -> None:
        try:
            for status, _ in responses():
                if status is not None and "Status" in status:
                    outcome["status"] = int(status.Status)
                    for key in ("NumberOfCompletedSuboperations", "NumberOfFailedSuboperations",
                                "NumberOfWarningSuboperations"):
                        if key in status:
                            outcome[key] = int(status.get(key))
        except Exception as exc:  # noqa: BLE001 - reported below
            outcome["error"] = f"{type(exc).__name__}: {exc}"
    worker = threads.Thread(target=run, name=f"courier-{name}", daemon=True)
    worker.start()
    deadline = time.monotonic() + timeout
    try:
        while worker.is_alive():
            worker.join(POLL_SECONDS)
            if cancelled() or time.monotonic() > deadline:
                reason = f"{name} cancelled" if cancelled() else f"{name} from {node_id} timed out"
                try:
                    assoc.send_c_cancel(1, query_model=model)
                except Exception:  # noqa: BLE001 - abort below in any case
                    pass
                worker.join(3)
                assoc.abort()
                raise DeliveryError(reason, retriable=not cancelled())
    finally:
        if previous is not None:
            _look_every(assoc, previous)
        if assoc.is_established:
            assoc.release()
    if "error" in outcome or "status" not in outcome:
        raise DeliveryError(f"{name} from {node_id}: {outcome.get('error', 'no final response')}")
    if outcome["status"] not in (0x0000, 0xB000) and not outcome.get("NumberOfCompletedSuboperations"):
        raise DeliveryError(f"{name} from {node_id} refused: status {outcome['status']:#06x}")
    return outcome


def c_get(node: Node, local_aet: str, study_uid: str, store: Callable[[bytes], None],
          cancelled: Callable[[], bool], timeout: float = 3600.0, dimse_timeout: float = 600.0,
          series_uid: Optional[str] = None, query_model: str = "StudyRoot", patient_id: Optional[str] = None,
          connect_timeout: float = 30.0) -> dict:
    """C-GET the study with pynetdicom (Orthanc 1.10.1 has no C-GET client); each received
    instance is handed to `store` (an upload into Orthanc) before it is acknowledged."""
    from pynetdicom import StoragePresentationContexts, build_role, evt
    get_model = _model(query_model, "Get")

    storage = [context.abstract_syntax for context in StoragePresentationContexts[:127]]   # 128 at most
    roles = [build_role(syntax, scp_role=True) for syntax in storage]

    def on_store(event) -> int:
        try:
            store(event.encoded_dataset())
            return 0x0000
        except Exception:  # noqa: BLE001 - refuse this one instance, it will be missing
            return 0xA700
    assoc = open_association(node, local_aet, [get_model] + storage, min(dimse_timeout, timeout), "C-GET",
                             connect_timeout, ext_neg=roles,
                             evt_handlers=[(evt.EVT_C_STORE, on_store)])
    identifier = _identifier(study_uid, series_uid, patient_id if query_model == "PatientRoot" else None)
    return _run_retrieve(assoc, lambda: assoc.send_c_get(identifier, get_model, msg_id=1), get_model, node.id, "C-GET",
                         cancelled, timeout)


def wado(rest: OrthancRest, source: str, study_uid: str, cancelled: Callable[[], bool], timeout: float = 3600.0,
         series_uid: Optional[str] = None) -> None:
    """WADO-RS retrieve of the study (or series) into Courier's Orthanc (an orthanc-dicomweb job,
    cancelled with the task; it stops between instances)."""
    resource = {"Study": study_uid, **({"Series": series_uid} if series_uid else {})}
    job = rest.post_json(f"/dicom-web/servers/{source}/retrieve", {"Resources": [resource], "Asynchronous": True})
    deadline = time.monotonic() + timeout
    while True:
        state = rest.get_json(f"/jobs/{job['ID']}")
        if state["State"] == "Success":
            return
        if state["State"] == "Failure":
            raise DeliveryError(f"WADO-RS from {source} failed: {state.get('ErrorDetails') or state.get('ErrorDescription')}")
        if cancelled() or time.monotonic() > deadline:
            rest.post_json(f"/jobs/{job['ID']}/cancel", {})
            raise DeliveryError("WADO-RS cancelled" if cancelled() else f"WADO-RS from {source} timed out",
                                retriable=not cancelled())
        time.sleep(POLL_SECONDS)
