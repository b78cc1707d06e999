"""Courier's C-MOVE client against pynetdicom peers on loopback (no Orthanc): how often it looks
at the association while the PACS is busy sending."""
from collections import Counter

import pydicom.uid
from pynetdicom import evt
from pynetdicom.transport import AssociationSocket

from courier.config.nodes import Node
from courier.transfer import fetch
from factory import make_instance
from peers import RecordingScp, SlowPacs


def test_a_c_move_client_looks_at_its_association_every_few_tens_of_ms_not_every_millisecond(monkeypatch):
    """pynetdicom's reader looks for data every millisecond by default: while a C-MOVE waits for the
    PACS, that cost the router more CPU than the responses themselves. The move still completes,
    with its counts, and the association is released (the look is restored before the release).
    Nor does pynetdicom format a log description of each message (nobody sees it in Orthanc)."""
    study = pydicom.uid.generate_uid()
    instances = [make_instance(patient_id="PF", study_uid=study, instance_number=n) for n in range(1, 9)]
    destination = RecordingScp(aet="FETCHDEST")
    pacs = SlowPacs(instances, destination.port, seconds_per_instance=0.15, aet="FETCHSRC")
    looks: Counter = Counter()
    ready = AssociationSocket.ready

    def counted(socket):
        looks[id(socket)] += 1
        return ready.fget(socket)
    monkeypatch.setattr(AssociationSocket, "ready", property(counted))
    opened = []
    open_association = fetch.open_association

    def recorded(*args, **kwargs):
        opened.append(open_association(*args, **kwargs))
        return opened[-1]
    monkeypatch.setattr(fetch, "open_association", recorded)
    node = Node(id="pacs", kind="dicom", aet="FETCHSRC", host="127.0.0.1", port=pacs.port)
    try:
        counts = fetch.c_move(node, "COURIER", study, lambda: False, move_aet="FETCHDEST", timeout=60)
    finally:
        pacs.server.shutdown()
        destination.close()
    assert counts["status"] == 0 and counts["NumberOfCompletedSuboperations"] == len(instances)
    assert destination.uids() == {str(ds.SOPInstanceUID) for ds in instances}
    (assoc,) = opened
    assert assoc.is_released and assoc.dul._run_loop_delay == 0.001      # pynetdicom's default, back
    assert assoc.get_handlers(evt.EVT_DIMSE_RECV) == [] and assoc.get_handlers(evt.EVT_PDU_RECV) == []   # no log formatting
    # 8 instances, one every 0.15 s: 1.2 s of waiting. Looking every millisecond would be 600 looks
    # or more even on a loaded machine; every 20 ms, about 60, plus a few for each response.
    client_looks = looks[id(assoc.dul.socket)]
    assert 0 < client_looks < 1.2 / fetch.MOVE_LOOK_SECONDS * 2 + 5 * (len(instances) + 4), client_looks


def test_the_setting_it_changes_is_one_this_pynetdicom_has():
    """If a pynetdicom upgrade renames the reader's delay, Courier changes nothing (and loses only
    the saving): this test is what says so."""
    study = pydicom.uid.generate_uid()
    pacs = SlowPacs([make_instance(study_uid=study)], 1, aet="FETCHSRC2")
    node = Node(id="pacs", kind="dicom", aet="FETCHSRC2", host="127.0.0.1", port=pacs.port)
    try:
        assoc = fetch.open_association(node, "COURIER", [fetch._model("StudyRoot", "Move")], 10, "C-MOVE", 10)
        try:
            assert fetch._look_every(assoc, 0.05) == 0.001 and assoc.dul._run_loop_delay == 0.05
            assert fetch._look_every(object(), 0.05) is None
        finally:
            assoc.release()
    finally:
        pacs.server.shutdown()
