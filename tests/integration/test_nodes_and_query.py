"""Nodes, echo and C-FIND through a real Courier, against a real Orthanc PACS and a sloppy one."""
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification

from factory import write_instances
from harness import free_port, storescu, wait_until

STUDIES = [("1.2.3.%d" % n, "P%d" % (n % 4), "202401%02d" % (n + 1), "CT" if n % 2 else "MR") for n in range(24)]


def sloppy_pacs(port, cap):
    """A C-FIND SCP that honours StudyDate only, ignores every other key and silently stops at `cap`."""
    def on_find(event):
        wanted = event.identifier.get("StudyDate", "") or ""
        first, _, last = wanted.partition("-") if "-" in wanted else (wanted, "", wanted)
        sent = 0
        for uid, patient, date, modality in STUDIES:
            if (first and date < first) or (last and date > last) or sent >= cap:
                continue
            answer = Dataset()
            answer.QueryRetrieveLevel = "STUDY"
            answer.StudyInstanceUID, answer.PatientID, answer.StudyDate = uid, patient, date
            answer.ModalitiesInStudy, answer.PatientName = modality, f"Name^{patient}"
            sent += 1
            yield 0xFF00, answer
    ae = AE(ae_title="SLOPPY")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_supported_context(Verification)
    return ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_FIND, on_find)])


def test_query_refilters_and_splits_a_capped_pacs(cluster):
    port = free_port()
    server = sloppy_pacs(port, cap=5)
    try:
        node = cluster.orthanc("router", courier={"AllowedCallers": "Any", "Nodes": {"sloppy": {"MaxResults": 5}}},
                               extra={"DicomModalities": {"sloppy": {"AET": "SLOPPY", "Host": "127.0.0.1", "Port": port}}})
        answer = node.post("/courier/query", {"Node": "sloppy", "Level": "STUDY",
                                              "Filters": {"StudyDate": "20240101-20240124", "ModalitiesInStudy": "CT",
                                                          "PatientID": "P1"}}).json()
        expected = sorted(uid for uid, patient, _, modality in STUDIES if modality == "CT" and patient == "P1")
        assert sorted(a["StudyInstanceUID"] for a in answer["Answers"]) == expected and answer["Count"] == 6
        assert answer["Splits"] >= 3 and answer["Refiltered"] > 0
        assert node.post("/courier/nodes/sloppy/echo").json() == {"Id": "sloppy", "Ok": True, "Message": "ok"}
    finally:
        server.shutdown()
    echo = node.post("/courier/nodes/sloppy/echo").json()
    assert echo["Ok"] is False and "echo" in echo["Message"]      # the PACS is gone: recorded as down
    listed = {n["Id"]: n for n in node.get("/courier/nodes")}
    assert listed["sloppy"]["LastEcho"]["Ok"] is False and listed["sloppy"]["MaxResults"] == 5
    assert listed["sloppy"]["Capabilities"] == ["C-ECHO", "C-FIND", "C-MOVE", "C-STORE"]


def test_query_a_real_orthanc_pacs_by_name_and_date(cluster, tmp_path):
    pacs = cluster.orthanc("pacs", start=False)
    node = cluster.orthanc("router", start=False, courier={"AllowedCallers": "Any"})
    pacs.config["DicomModalities"] = {"router": node.as_modality()}
    node.config["DicomModalities"] = {"pacs": pacs.as_modality()}
    pacs.start()
    node.start()
    storescu(pacs.dicom_port, write_instances(tmp_path / "a", 2, patient_id="P1", patient_name="Doe^Jane", StudyDate="20240105")
             + write_instances(tmp_path / "b", 1, patient_id="P2", patient_name="Roe^Rick", StudyDate="20240301", modality="MR"))
    answer = node.post("/courier/query", {"Node": "pacs", "Level": "STUDY",
                                          "Filters": {"PatientName": "doe*", "StudyDate": "20240101-20240131"}}).json()
    assert [(a["PatientID"], a["NumberOfStudyRelatedInstances"], a["ModalitiesInStudy"])
            for a in answer["Answers"]] == [("P1", "2", "CT")]
    series = node.post("/courier/query", {"Node": "pacs", "Level": "SERIES", "Filters": {"Modality": "MR"}}).json()
    assert [a["PatientID"] for a in series["Answers"]] == ["P2"]
    assert "InstanceAvailability" in answer["Answers"][0] and answer["Answers"][0]["Node"] == "pacs"
    bad = node.post("/courier/query", {"Node": "nowhere", "Level": "STUDY"})
    assert bad.status_code == 404 and "no node 'nowhere'" in bad.json()["error"]
    assert node.get("/courier/audit", action="query")["total"] == 2


def test_several_nodes_are_queried_at_once_and_a_dead_one_is_reported(cluster, tmp_path):
    pacs, other = cluster.orthanc("pacs", start=False), cluster.orthanc("other", start=False)
    node = cluster.orthanc("router", start=False, courier={"AllowedCallers": "Any"})
    for each in (pacs, other):
        each.config["DicomModalities"] = {"router": node.as_modality()}
        each.start()
    node.config["DicomModalities"] = {"pacs": pacs.as_modality(), "other": other.as_modality(),
                                      "dead": ["DEAD", "127.0.0.1", free_port()]}
    node.start()
    storescu(pacs.dicom_port, write_instances(tmp_path / "a", 1, patient_id="P1", StudyDate="20240105"))
    storescu(other.dicom_port, write_instances(tmp_path / "b", 1, patient_id="P1", StudyDate="20240301")
             + write_instances(tmp_path / "c", 1, patient_id="P2", StudyDate="20240302"))
    answer = node.post("/courier/query", {"Nodes": ["pacs", "other", "dead"], "Filters": {"PatientID": "P1"}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [(a["Node"], a["StudyDate"]) for a in body["Answers"]] == [("pacs", "20240105"), ("other", "20240301")]
    assert body["Count"] == 2 and list(body["Errors"]) == ["dead"] and "C-FIND on dead" in body["Errors"]["dead"]
    assert {n: p["Count"] for n, p in body["PerNode"].items()} == {"pacs": 1, "other": 1}
    all_dead = node.post("/courier/query", {"Nodes": ["dead"]})
    assert all_dead.status_code == 502 and "C-FIND on dead" in all_dead.json()["error"]


def test_query_model_patient_root_for_a_pacs_without_study_root(cluster):
    from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind

    port = free_port()

    def on_find(event):
        if event.identifier.QueryRetrieveLevel != "STUDY":
            return
        for uid, patient, date, _modality in STUDIES[:3]:
            answer = Dataset()
            answer.QueryRetrieveLevel = "STUDY"
            answer.StudyInstanceUID, answer.PatientID, answer.StudyDate = uid, patient, date
            yield 0xFF00, answer
    ae = AE(ae_title="OLDPACS")
    ae.add_supported_context(PatientRootQueryRetrieveInformationModelFind)
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_FIND, on_find)])
    try:
        modality = {"AET": "OLDPACS", "Host": "127.0.0.1", "Port": port}
        node = cluster.orthanc("router", courier={"AllowedCallers": "Any",
                                                  "Nodes": {"old": {"QueryModel": "PatientRoot"}}},
                               extra={"DicomModalities": {"old": modality, "same": modality}})
        answer = node.post("/courier/query", {"Node": "old", "Level": "STUDY", "Filters": {"PatientID": "P1"}}).json()
        assert [a["PatientID"] for a in answer["Answers"]] == ["P1"]        # re-filtered locally too
        study_root = node.post("/courier/query", {"Node": "same", "Level": "STUDY", "Filters": {"PatientID": "P1"}})
        assert study_root.status_code == 502 and "C-FIND on same" in study_root.json()["error"]
    finally:
        server.shutdown()


def test_a_real_dcmqrscp_pacs_that_ignores_modalities_in_study(cluster, tmp_path):
    """dcmqrscp answers STUDY queries without ModalitiesInStudy and SERIES queries without
    SeriesDescription: the re-filter must not drop what it cannot refute, and the README's job
    example (a PatientID with a modality) must work."""
    import pydicom

    from peers import DcmQrScp
    study = pydicom.uid.generate_uid()
    mr = write_instances(tmp_path / "mr", 2, modality="MR", patient_id="QR1", study_uid=study)
    ct = write_instances(tmp_path / "ct", 1, modality="CT", patient_id="QR1")
    dest = cluster.orthanc("dest")
    node = cluster.orthanc("router", start=False, courier={"AllowedCallers": "Any"},
                           extra={"DicomModalities": {"dest": dest.as_modality()}})
    pacs = DcmQrScp(tmp_path, mr + ct, {node.aet: node.dicom_port})
    try:
        node.config["DicomModalities"]["pacs"] = pacs.modality
        node.start()
        answer = node.post("/courier/query", {"Node": "pacs", "Level": "STUDY",
                                              "Filters": {"PatientID": "QR1", "ModalitiesInStudy": "MR"}}).json()
        assert [(a["StudyInstanceUID"], a["ModalitiesInStudy"]) for a in answer["Answers"]] == [(study, "MR")]
        assert answer["NarrowedBySeries"] == ["ModalitiesInStudy"] and answer["Refiltered"] == 1
        series = node.post("/courier/query", {"Node": "pacs", "Level": "SERIES",
                                              "Filters": {"StudyInstanceUID": study, "SeriesDescription": "MR*"}}).json()
        assert series["Count"] == 1 and series["NotAppliedByNode"] == ["SeriesDescription"]
        job = node.post("/courier/jobs", {"Source": "pacs", "Destination": "dest",
                                          "Items": [{"PatientID": "QR1", "ModalitiesInStudy": "MR"}]})
        assert job.status_code == 200, job.text
        done = wait_until(lambda: (j := node.get(f"/courier/jobs/{job.json()['Id']}"))["Status"] not in
                          ("PENDING", "RUNNING") and j, 60, 0.3, what="the job to end")
        assert done["Status"] == "SUCCESS" and dest.sop_uids() == {p.stem for p in mr}
        refused = node.post("/courier/jobs", {"Source": "pacs", "Destination": "dest",
                                              "Items": [{"StudyInstanceUID": study, "SeriesDescription": "MR*"}]})
        assert refused.status_code == 409 and "SeriesDescription" in refused.json()["error"]
    finally:
        pacs.close()


def test_patient_root_pacs_retrieves_in_patient_root_too(cluster):
    import pydicom

    from factory import make_instance
    from peers import SlowPacs
    study = pydicom.uid.generate_uid()
    instances = [make_instance(patient_id="PR7", study_uid=study, instance_number=n) for n in range(1, 4)]
    dest = cluster.orthanc("dest")
    node = cluster.orthanc("router", start=False, courier={"AllowedCallers": "Any",
                                                           "Nodes": {"old": {"QueryModel": "PatientRoot"}}},
                           extra={"DicomModalities": {"dest": dest.as_modality()}})
    pacs = SlowPacs(instances, node.dicom_port, 0.01, aet="OLDPACS", patient_root=True)
    try:
        node.config["DicomModalities"]["old"] = pacs.modality
        node.start()
        job = node.post("/courier/jobs", {"Source": "old", "Destination": "dest", "Items": [{"StudyInstanceUID": study}]})
        assert job.status_code == 200, job.text
        done = wait_until(lambda: (j := node.get(f"/courier/jobs/{job.json()['Id']}"))["Status"] not in
                          ("PENDING", "RUNNING") and j, 40, 0.3, what="the job to end")
        assert done["Status"] == "SUCCESS" and dest.sop_uids() == {str(ds.SOPInstanceUID) for ds in instances}
        assert pacs.move_identifiers and all(str(i.PatientID) == "PR7" for i in pacs.move_identifiers)
    finally:
        pacs.close()


def test_echo_a_dicomweb_server(cluster):
    web = cluster.orthanc("web", dicomweb=True)
    node = cluster.orthanc("router", dicomweb=True, courier={"AllowedCallers": "Any"},
                           extra={"DicomWeb": {"Enable": True, "Root": "/dicom-web/",
                                               "Servers": {"web": [web.url + "/dicom-web/"]}}})
    assert node.post("/courier/nodes/web/echo").json() == {"Id": "web", "Ok": True, "Message": "ok"}
