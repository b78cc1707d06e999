"""Pseudonymization on send, through real routes to every destination kind."""
import csv
import io

import pydicom
import requests
from pydicom.uid import ImplicitVRLittleEndian

from courier.config.profiles import PseudonymFormat
from courier.deid.keyed import make_pseudonym
from courier.deid.pseudonymizer import method_marker
from factory import encoded_against_its_header, file_bytes, make_instance, write_instances
from harness import storescu, wait_until
from peers import RecordingScp

SECRET = "integration-secret-0123456789"
DICOM = {"Content-Type": "application/dicom"}
CSV = {"Content-Type": "text/csv"}


def pseudonymizing_router(cluster, tmp_path, destinations, **extra):
    (tmp_path / "trial.key").write_text(SECRET + "\n")
    folder = tmp_path / "export"
    dicom, web, peer = destinations
    node = cluster.orthanc("router", dicomweb=True, courier={
        "AllowedCallers": "Any", "Retry": {"MaxAttempts": 2, "InitialDelaySeconds": 0.2},
        "Folders": {"folder": {"Path": str(folder), "Layout": "{PatientID}/{SOPInstanceUID}.dcm"}},
        "Pseudonymization": {"trial": {
            "SecretFile": str(tmp_path / "trial.key"), "Options": ["RetainLongitudinalModifiedDates"],
            "Pseudonym": {"Prefix": "TR-", "Length": 8}, "Trial": {"ProtocolID": "PROTO-7", "SiteName": "Site A"}}},
        "Routes": [{"Name": "to-trial", "Trigger": "StableStudy", "Pseudonymize": "trial",
                    "Destinations": ["dicomdest", "web", "peer", "folder"]}]},
        extra={"DicomModalities": {"dicomdest": dicom.as_modality()},
               "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Servers": {"web": [web.url + "/dicom-web/"]}},
               "OrthancPeers": {"peer": {"Url": peer.url + "/"}}, **extra})
    return node, folder


def test_pseudonymized_delivery_to_every_destination_kind(cluster, tmp_path):
    destinations = (cluster.orthanc("dicomdest"), cluster.orthanc("webdest", dicomweb=True), cluster.orthanc("peerdest"))
    node, folder = pseudonymizing_router(cluster, tmp_path, destinations)
    files = write_instances(tmp_path / "in", 2, patient_id="PAT-0042", patient_name="Doe^Jane",
                            StudyDescription="Jane Doe chest", InstitutionName="General Hospital")
    original = pydicom.dcmread(files[0])
    storescu(node.dicom_port, files)
    pseudonym = make_pseudonym(SECRET.encode(), "PAT-0042", PseudonymFormat("TR-", 8))
    for dest in destinations:
        wait_until(lambda dest=dest: len(dest.instances()) == 2, 40, what=f"2 instances at {dest.name}")
        for instance_id in dest.instances():
            data = requests.get(f"{dest.url}/instances/{instance_id}/file", timeout=10).content
            ds = pydicom.dcmread(io.BytesIO(data))
            assert (ds.PatientID, str(ds.PatientName)) == (pseudonym, pseudonym)
            for phi in (b"Doe", b"Jane", b"PAT-0042", b"General Hospital", original.StudyInstanceUID.encode()):
                assert phi not in data, (dest.name, phi)
            assert ds.StudyInstanceUID.startswith("2.25.") and ds.PatientIdentityRemoved == "YES"
            assert ds.ClinicalTrialProtocolID == "PROTO-7" and ds.ClinicalTrialSubjectID == pseudonym
            assert ds.LongitudinalTemporalInformationModified == "MODIFIED" and ds.StudyDate != original.StudyDate
    written = wait_until(lambda: sorted((folder / pseudonym).glob("*.dcm")) if len(list((folder / pseudonym).glob("*.dcm"))) == 2
                         else None, 20, what="2 pseudonymized files named by pseudonym")
    assert all(b"Doe" not in p.read_bytes() for p in written)
    assert len(node.instances()) == 2            # the originals stay in the router
    # the crosswalk, as an honest broker needs it
    patients = list(csv.reader(io.StringIO(requests.get(node.url + "/courier/crosswalk/trial/patid_mapping.csv",
                                                        timeout=10).text)))
    assert patients == [["old_patient_id", "new_patient_id"], ["PAT-0042", pseudonym]]
    uids = dict(csv.reader(io.StringIO(requests.get(node.url + "/courier/crosswalk/trial/uid_mapping.csv", timeout=10).text)))
    dest_study = destinations[0].get(f"/instances/{destinations[0].instances()[0]}/study")
    assert uids[original.StudyInstanceUID] == dest_study["MainDicomTags"]["StudyInstanceUID"]
    assert node.get("/courier/audit", action="crosswalk-exported")["total"] == 2


def test_pseudonymized_instances_go_on_one_association_and_a_refused_one_is_reported(cluster, tmp_path):
    """A chunk of pseudonymized bytes goes on one association (not one per instance, which costs
    the destination ~3 ms each); what the destination refuses is tried once more on its own
    (Orthanc's client) and reported exactly, the rest delivered."""
    scp = RecordingScp("TRIALPACS", refuse=lambda ds: 0xA700 if ds.InstanceNumber == 3 else None)
    try:
        (tmp_path / "trial.key").write_text(SECRET + "\n")
        node = cluster.orthanc("router", courier={
            "AllowedCallers": "Any", "Retry": {"MaxAttempts": 1},
            "Pseudonymization": {"trial": {"SecretFile": str(tmp_path / "trial.key")}},
            "Routes": [{"Name": "to-trial", "Trigger": "StableStudy", "StableAfterSeconds": 1, "Pseudonymize": "trial",
                        "Destinations": ["pacs"]}]},
            extra={"DicomModalities": {"pacs": scp.modality}})
        files = write_instances(tmp_path / "in", 40, size=32, patient_id="PAT-B", patient_name="Doe^Batch")
        storescu(node.dicom_port, files)
        task = wait_until(lambda: (t := node.get("/courier/tasks", route="to-trial")["tasks"])
                          and t[0]["state"] not in ("PENDING", "RUNNING") and t[0], 60, what="the task to end")
        task = node.get(f"/courier/tasks/{task['id']}")
        assert task["state"] == "WARNING" and task["delivered"] == 39 and task["expected"] == 40
        assert len(task["missing"]) == 1
        assert len(scp.uids()) == 39 and not set(scp.uids()) & {p.stem for p in files}     # pseudonymized UIDs
        assert scp.associations == 3                        # two chunks of 20, then the refused instance alone
        assert len(scp.offered) == 41
    finally:
        scp.close()


def test_burned_in_suspects_are_quarantined_not_sent(cluster, tmp_path):
    destinations = (cluster.orthanc("dicomdest"), cluster.orthanc("webdest", dicomweb=True), cluster.orthanc("peerdest"))
    node, _ = pseudonymizing_router(cluster, tmp_path, destinations)
    ct = write_instances(tmp_path / "ct", 1)
    us = write_instances(tmp_path / "us", 1, modality="US", study_uid=pydicom.dcmread(ct[0]).StudyInstanceUID)
    storescu(node.dicom_port, ct + us)
    entries = wait_until(lambda: (q := node.get("/courier/quarantine"))["total"] >= 4 and q["entries"], 40,
                         what="the US instance quarantined for each destination")
    assert {e["sop_instance_uid"] for e in entries} == {us[0].stem}
    assert all("modality US may carry burned-in text" in e["reason"] for e in entries)
    tasks = wait_until(lambda: (t := node.get("/courier/tasks")["tasks"]) and all(x["state"] == "WARNING" for x in t)
                       and len(t) == 4 and t, 30, what="4 WARNING tasks")
    assert all(node.get(f"/courier/tasks/{t['id']}")["missing"] == [us[0].stem] for t in tasks)
    assert all(t["attempts"] == 1 for t in tasks)          # quarantine is final: no useless retries
    assert len(destinations[0].instances()) == 1


def test_try_a_profile_through_the_api(cluster, tmp_path):
    destinations = (cluster.orthanc("dicomdest"), cluster.orthanc("webdest", dicomweb=True), cluster.orthanc("peerdest"))
    node, _ = pseudonymizing_router(cluster, tmp_path, destinations)
    path = write_instances(tmp_path / "in", 1, patient_id="PAT-9", patient_name="Roe^Richard")[0]
    answer = requests.post(node.url + "/courier/pseudonymize/trial", data=path.read_bytes(), timeout=10, headers=DICOM)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/dicom"
    assert answer.headers["X-Courier-Dates-Removed"] == "0" and answer.headers["X-Courier-Dates-Shifted"] == "1"  # StudyDate
    assert node.get("/courier/routes")[0]["Pseudonymize"] == "trial"
    ds = pydicom.dcmread(io.BytesIO(answer.content))
    assert ds.PatientID == make_pseudonym(SECRET.encode(), "PAT-9", PseudonymFormat("TR-", 8))
    assert b"Roe" not in answer.content
    missing = requests.post(node.url + "/courier/pseudonymize/nope", data=b"x", timeout=10, headers=DICOM)
    assert missing.status_code == 404 and "no pseudonymization profile 'nope'" in missing.json()["error"]
    garbage = requests.post(node.url + "/courier/pseudonymize/trial", data=b"not dicom", timeout=10, headers=DICOM)
    assert garbage.status_code == 422 and "not a readable DICOM file" in garbage.json()["error"]
    for secret_text in (SECRET, "trial.key"):
        for path_ in ("/courier/status", "/courier/routes", "/courier/audit", "/courier/openapi.json"):
            assert secret_text not in requests.get(node.url + path_, timeout=10).text
    assert SECRET not in (node.log_path.read_text())


def test_pseudonymize_on_ingest_never_stores_an_original(cluster, tmp_path):
    dest = cluster.orthanc("dest")
    (tmp_path / "trial.key").write_text(SECRET)
    quarantine = tmp_path / "quarantine"
    node = cluster.orthanc("router", courier={
        "AllowedCallers": "Any", "QuarantineDirectory": str(quarantine),
        "Pseudonymization": {"trial": {"SecretFile": str(tmp_path / "trial.key")}},
        "Routes": [{"Name": "ct-ingest", "Match": {"Modality": ["CT", "US"]}, "Pseudonymize": "trial",
                    "PseudonymizeOn": "Ingest", "Destinations": ["dest"]}]},
        extra={"DicomModalities": {"dest": dest.as_modality()}})
    ct = write_instances(tmp_path / "ct", 2, patient_id="PAT-1", patient_name="Doe^Jane")
    mr = write_instances(tmp_path / "mr", 1, modality="MR", patient_id="PAT-2", patient_name="Roe^Rita")
    us = write_instances(tmp_path / "us", 1, modality="US", patient_id="PAT-3", patient_name="Poe^Paula")
    storescu(node.dicom_port, ct + mr + us)        # DISCARD answers success: the sender sees no error
    pseudonym = make_pseudonym(SECRET.encode(), "PAT-1", PseudonymFormat())
    wait_until(lambda: len(dest.instances()) == 2, 30, what="the pseudonymized CT at the destination")
    stored = {i: requests.get(f"{node.url}/instances/{i}/file", timeout=10).content for i in node.instances()}
    assert len(stored) == 3                          # 2 pseudonymized CT + the MR no ingest route matched
    assert sum(b"Doe" in data for data in stored.values()) == 0
    assert sum(pseudonym.encode() in data for data in stored.values()) == 2
    assert sum(b"Roe^Rita" in data for data in stored.values()) == 1
    assert not any(b"Poe" in data for data in stored.values())
    entry = wait_until(lambda: node.get("/courier/quarantine")["entries"], 10, what="the US in quarantine")[0]
    assert entry["sop_instance_uid"] == us[0].stem and "burned-in" in entry["reason"]
    kept = pydicom.dcmread(entry["file"])              # the original, as Orthanc received it
    assert (kept.SOPInstanceUID, str(kept.PatientName)) == (us[0].stem, "Poe^Paula")
    assert all(pydicom.dcmread(io.BytesIO(requests.get(f"{dest.url}/instances/{i}/file", timeout=10).content)).PatientID
               == pseudonym for i in dest.instances())
    assert {t["profile"] for t in node.get("/courier/tasks")["tasks"]} == {None}


def test_lookup_table_upload_quarantine_then_retry(cluster, tmp_path):
    dest = cluster.orthanc("dest")
    (tmp_path / "trial.key").write_text(SECRET)
    node = cluster.orthanc("router", courier={
        "AllowedCallers": "Any", "Retry": {"MaxAttempts": 3, "InitialDelaySeconds": 0.2},
        "Pseudonymization": {"lk": {"SecretFile": str(tmp_path / "trial.key"), "Pseudonym": {"Source": "Lookup"}}},
        "Routes": [{"Name": "r", "Trigger": "StableSeries", "Pseudonymize": "lk", "Destinations": ["dest"]}]},
        extra={"DicomModalities": {"dest": dest.as_modality()}})
    bad = requests.post(node.url + "/courier/crosswalk/lk/lookup", data="PatientID;Pseudonym\nP-A;SUBJ-A\nP-B;\n",
                        timeout=10, headers=CSV)
    assert bad.status_code == 400 and bad.json()["error"] == "uploaded file: line 3, column Pseudonym: empty"
    good = requests.post(node.url + "/courier/crosswalk/lk/lookup", data="PatientID,Pseudonym\nP-A,SUBJ-A\n",
                         timeout=10, headers=CSV)
    assert good.json() == {"profile": "lk", "rows": 1}
    storescu(node.dicom_port, write_instances(tmp_path / "a", 1, patient_id="P-A") +
             write_instances(tmp_path / "b", 1, patient_id="P-B"))
    wait_until(lambda: len(dest.instances()) == 1, 30, what="the known patient delivered")
    assert dest.get(f"/instances/{dest.instances()[0]}/simplified-tags")["PatientID"] == "SUBJ-A"
    failed = wait_until(lambda: node.get("/courier/tasks", state="FAILURE")["tasks"], 30, what="the unknown patient's task")
    assert "not in the lookup table" in failed[0]["last_error"] and failed[0]["attempts"] == 1
    assert node.get("/courier/quarantine")["total"] == 1
    requests.post(node.url + "/courier/crosswalk/lk/lookup", data="PatientID,Pseudonym\nP-B,SUBJ-B\n", timeout=10, headers=CSV)
    assert node.post(f"/courier/tasks/{failed[0]['id']}/retry").status_code == 200
    wait_until(lambda: len(dest.instances()) == 2, 30, what="delivery after the table was completed")
    assert {dest.get(f"/instances/{i}/simplified-tags")["PatientID"] for i in dest.instances()} == {"SUBJ-A", "SUBJ-B"}


def test_release_from_quarantine_on_ingest_and_on_send(cluster, tmp_path):
    dest = cluster.orthanc("dest")
    (tmp_path / "trial.key").write_text(SECRET)
    node = cluster.orthanc("router", courier={
        "AllowedCallers": "Any", "QuarantineDirectory": str(tmp_path / "q"),
        "Retry": {"MaxAttempts": 2, "InitialDelaySeconds": 0.2},
        "Pseudonymization": {"trial": {"SecretFile": str(tmp_path / "trial.key")}},
        "Routes": [{"Name": "us-ingest", "Match": {"Modality": "US"}, "Pseudonymize": "trial",
                    "PseudonymizeOn": "Ingest", "Destinations": ["dest"]},
                   {"Name": "xc-send", "Match": {"Modality": "XC"}, "Pseudonymize": "trial", "Destinations": ["dest"]}]},
        extra={"DicomModalities": {"dest": dest.as_modality()}})
    us = write_instances(tmp_path / "us", 1, modality="US", patient_id="PU", patient_name="Doe^Una")
    xc = write_instances(tmp_path / "xc", 1, modality="XC", patient_id="PX", patient_name="Doe^Xia")
    storescu(node.dicom_port, us + xc)
    entries = wait_until(lambda: (q := node.get("/courier/quarantine"))["total"] == 2 and q["entries"], 30,
                         what="both quarantined")
    on_ingest = next(e for e in entries if e["file"])
    on_send = next(e for e in entries if not e["file"])
    assert node.post(f"/courier/quarantine/{on_ingest['id']}/release").json() == {"released": on_ingest["id"], "stored": True}
    released_task = node.post(f"/courier/quarantine/{on_send['id']}/release").json()["task"]
    wait_until(lambda: len(dest.instances()) == 2, 30, what="both released instances delivered")
    tags = [dest.get(f"/instances/{i}/simplified-tags") for i in dest.instances()]
    assert {t["Modality"] for t in tags} == {"US", "XC"}
    assert all(t["PatientIdentityRemoved"] == "YES" and "Doe" not in t["PatientName"] for t in tags)
    assert node.get("/courier/quarantine")["total"] == 0 and not list((tmp_path / "q").glob("*.dcm"))
    assert node.get(f"/courier/tasks/{released_task}")["reviewed"] == 1
    stored = [requests.get(f"{node.url}/instances/{i}/file", timeout=10).content for i in node.instances()]
    assert not any(b"Doe^Una" in data for data in stored)        # the ingest original was never stored
    assert node.get("/courier/audit", action="quarantine-released")["total"] == 2


PHI_PREAMBLE = b"Doe^Jane MRN-PREAMBLE-77 born 19700101".ljust(128, b"\x00")


def phi_in_header(**tags) -> bytes:
    """A file whose preamble and File Meta Information carry PHI (a name, an MRN, AE titles)."""
    ds = make_instance(patient_id="PAT-HDR", patient_name="Doe^Jane", **tags)
    ds.file_meta.SourceApplicationEntityTitle, ds.file_meta.SendingApplicationEntityTitle = "WARD_DOE", "MRN_HDR_AE"
    ds.file_meta.PrivateInformationCreatorUID = "1.2.3.4.99"
    ds.file_meta.PrivateInformation = b"MRN-PRIVATE-INFO-55 Doe^Jane"
    return file_bytes(ds, preamble=PHI_PREAMBLE)


def assert_courier_header(data: bytes, source_ae: str) -> None:
    assert data[:128] == bytes(128) and data[128:132] == b"DICM"
    meta = pydicom.dcmread(io.BytesIO(data)).file_meta
    assert meta.SourceApplicationEntityTitle == source_ae and meta.ImplementationVersionName.startswith("COURIER_")
    assert "PrivateInformation" not in meta and "SendingApplicationEntityTitle" not in meta
    for phi in (b"MRN-PREAMBLE-77", b"MRN-PRIVATE-INFO-55", b"WARD_DOE", b"MRN_HDR_AE", b"Doe", b"PAT-HDR"):
        assert phi not in data, phi


def test_preamble_and_file_meta_information_are_replaced_in_answers_and_destinations(cluster, tmp_path):
    (tmp_path / "trial.key").write_text(SECRET)
    folder = tmp_path / "export"
    node = cluster.orthanc("router", courier={
        "AllowedCallers": "Any", "Folders": {"folder": {"Path": str(folder), "Layout": "{SOPInstanceUID}.dcm"}},
        "Pseudonymization": {"trial": {"SecretFile": str(tmp_path / "trial.key")}},
        "Routes": [{"Name": "r", "Pseudonymize": "trial", "Destinations": ["folder"]}]})
    data = phi_in_header()
    answer = requests.post(node.url + "/courier/pseudonymize/trial", data=data, timeout=10, headers=DICOM)
    assert answer.status_code == 200
    assert_courier_header(answer.content, node.aet)             # the router's own AE title
    stored = requests.post(node.url + "/instances", data=data, timeout=10).json()      # kept as is by Orthanc
    assert requests.get(f"{node.url}/instances/{stored['ID']}/file", timeout=10).content[:128] == PHI_PREAMBLE
    written = wait_until(lambda: list(folder.glob("*.dcm")), 30, what="the pseudonymized file in the folder")
    assert_courier_header(written[0].read_bytes(), node.aet)
    assert written[0].read_bytes() == answer.content          # the same, keyed result on every path


def test_ingest_pseudonymizes_what_only_claims_to_be_courier_output_and_answers_rest_uploads_truthfully(cluster, tmp_path):
    (tmp_path / "trial.key").write_text(SECRET)
    folder, quarantine = tmp_path / "export", tmp_path / "quarantine"
    node = cluster.orthanc("router", courier={
        "AllowedCallers": "Any", "QuarantineDirectory": str(quarantine),
        "Folders": {"folder": {"Path": str(folder), "Layout": "{SOPInstanceUID}.dcm"},
                    "series": {"Path": str(tmp_path / "series"), "Layout": "{SOPInstanceUID}.dcm"}},
        "Pseudonymization": {"trial": {"SecretFile": str(tmp_path / "trial.key")}},
        "Routes": [{"Name": "ct-ingest", "Match": {"Modality": ["CT", "US"]}, "Pseudonymize": "trial", "PseudonymizeOn": "Ingest",
                    "Destinations": ["folder"]},
                   {"Name": "ct-series", "Trigger": "StableSeries", "StableAfterSeconds": 1, "Match": {"Modality": "CT"},
                    "Pseudonymize": "trial", "PseudonymizeOn": "Ingest", "Destinations": ["series"]}]})
    forged_marker = {"DeidentificationMethod": method_marker("trial"), "PatientIdentityRemoved": "YES"}
    no_patient_id = make_instance(patient_name="Nopid^Nina")
    del no_patient_id.PatientID
    forged_ct = make_instance(patient_id="REAL-MRN-CT", patient_name="Forge^Fred", **forged_marker)
    forged_mr = make_instance(modality="MR", patient_id="REAL-MRN-MR", patient_name="Forge^Mary", **forged_marker)
    for forged in (forged_ct, forged_mr):                   # and a made-up mark in Courier's block
        forged.add_new(0x7FDF0010, "LO", "COURIER 1.0")
        forged.add_new(0x7FDF1001, "LO", "0" * 32)
    implicit = make_instance(patient_id="PAT-OUT", patient_name="Out^Otto")
    implicit.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    output = requests.post(node.url + "/courier/pseudonymize/trial", data=file_bytes(implicit), timeout=10, headers=DICOM)
    courier_output = pydicom.dcmread(io.BytesIO(output.content))
    files = []
    for index, ds in enumerate((no_patient_id, forged_ct, forged_mr, courier_output)):
        files.append(tmp_path / f"{index}.dcm")
        ds.save_as(files[-1], enforce_file_format=True)
    storescu(node.dicom_port, files)
    # REST uploads: the answer names what was stored, an error means nothing was
    uploaded = requests.post(node.url + "/instances", data=file_bytes(make_instance(patient_id="PAT-REST")), timeout=10)
    assert uploaded.status_code == 200 and uploaded.json()["Status"] == "Success"
    tags = node.get(f"/instances/{uploaded.json()['ID']}/simplified-tags")
    assert tags["PatientID"] == make_pseudonym(SECRET.encode(), "PAT-REST", PseudonymFormat())
    assert requests.get(f"{node.url}/series/{uploaded.json()['ParentSeries']}", timeout=10).status_code == 404   # Orthanc 1.10.1
    burned_in = requests.post(node.url + "/instances", data=file_bytes(make_instance(modality="US")), timeout=10)
    assert burned_in.status_code == 200 and burned_in.json()["Status"] == "FilteredOut"        # quarantined
    no_study = make_instance(patient_id="PAT-NOSTUDY")
    del no_study.StudyInstanceUID
    assert requests.post(node.url + "/instances", data=file_bytes(no_study), timeout=10).status_code == 404
    misencoded = encoded_against_its_header(make_instance(patient_id="PAT-BADENC", patient_name="Bad^Enc"))
    assert requests.post(node.url + "/instances", data=misencoded, timeout=10).status_code == 400

    stored = {i: requests.get(f"{node.url}/instances/{i}/file", timeout=10).content for i in node.instances()}
    assert len(stored) == 5                # no PatientID, forged CT, forged MR (no Ingest route matches), output, REST
    for phi in (b"Nopid", b"REAL-MRN-CT", b"Forge^Fred", b"PAT-REST", b"PAT-NOSTUDY", b"PAT-BADENC", b"Out^Otto"):
        assert not any(phi in data for data in stored.values()), phi
    assert sum(b"REAL-MRN-MR" in data for data in stored.values()) == 1
    again = [pydicom.dcmread(io.BytesIO(d)) for d in stored.values() if courier_output.SOPInstanceUID.encode() in d]
    assert [(d.PatientID, d.file_meta.TransferSyntaxUID) for d in again] == [(courier_output.PatientID,
                                                                                ImplicitVRLittleEndian)]   # not twice
    sent = wait_until(lambda: len(list(folder.glob("*.dcm"))) == 4 and list(folder.glob("*.dcm")), 30,
                      what="4 instances delivered by the Ingest route")
    series = wait_until(lambda: {p.stem for p in (tmp_path / "series").glob("*.dcm")} if len(list(
        (tmp_path / "series").glob("*.dcm"))) == 4 else None, 30, what="4 series completed by the StableSeries Ingest route")
    assert series == {p.stem for p in sent}
    tasks = wait_until(lambda: (t := node.get("/courier/tasks")["tasks"]) and all(x["state"] == "SUCCESS" for x in t)
                       and t, 20, what="the Ingest routes' tasks done")
    assert len(tasks) == 8                                        # 4 per route, never the forged MR
    assert not any(b"REAL-MRN" in path.read_bytes() for path in sent)
    assert courier_output.SOPInstanceUID in {p.stem for p in sent}
    reasons = sorted(e["reason"] for e in node.get("/courier/quarantine")["entries"])
    assert len(reasons) == 3 and "burned-in" in reasons[0]
    assert any("no StudyInstanceUID: Orthanc indexes instances by Study" in r for r in reasons)
    assert any("encoded Implicit VR while its transfer syntax" in r for r in reasons)
