"""DICOM TLS on the associations Courier opens itself (pynetdicom C-FIND, C-MOVE, C-GET), with
certificates made by openssl here: against an Orthanc with DicomTlsEnabled, against a pynetdicom
TLS SCP that requires Courier's certificate, and a node whose certificate is not trusted."""
import ssl
import subprocess

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind

from factory import write_instances
from harness import free_port, storescu, wait_until


def certificate(folder, name):
    key, crt = folder / f"{name}.key", folder / f"{name}.crt"
    subprocess.run(["openssl", "req", "-x509", "-nodes", "-days", "2", "-newkey", "rsa:2048", "-keyout", str(key),
                    "-out", str(crt), "-subj", f"/CN={name}"], check=True, capture_output=True)
    return key, crt


def bundle(folder, name, *certificates):
    path = folder / name
    path.write_text("".join(c.read_text() for c in certificates))
    return path


def tls_settings(key, crt, trusted, enabled=True):
    return {"DicomTlsEnabled": enabled, "DicomTlsCertificate": str(crt), "DicomTlsPrivateKey": str(key),
            "DicomTlsTrustedCertificates": str(trusted), "DicomTlsRemoteCertificateRequired": True}


def test_c_move_and_c_get_jobs_with_an_orthanc_over_dicom_tls(cluster, tmp_path):
    pacs_key, pacs_crt = certificate(tmp_path, "pacs")
    router_key, router_crt = certificate(tmp_path, "router")
    trusted = bundle(tmp_path, "trusted.crt", pacs_crt, router_crt)
    pacs = cluster.orthanc("pacs", start=False, extra=tls_settings(pacs_key, pacs_crt, trusted))
    dest = cluster.orthanc("dest")
    node = cluster.orthanc("router", start=False, courier={
        "Routes": [], "Nodes": {"pacs": {"Capabilities": ["C-ECHO", "C-FIND", "C-MOVE", "C-GET"]},
                                "pacsget": {"Capabilities": ["C-ECHO", "C-FIND", "C-GET"], "RetrieveMethod": "C-GET"}}},
        extra=tls_settings(router_key, router_crt, trusted))
    pacs.config["DicomModalities"] = {"router": {**node.as_modality(), "UseDicomTls": True}}
    pacs.start()
    node.config["DicomModalities"] = {"pacs": {**pacs.as_modality(), "UseDicomTls": True},
                                      "pacsget": {**pacs.as_modality(), "UseDicomTls": True},
                                      "dest": dest.as_modality()}
    node.start()
    plain = storescu(pacs.dicom_port, write_instances(tmp_path / "plain", 1), check=False)
    assert plain.returncode != 0                                   # the PACS speaks TLS only
    moved = write_instances(tmp_path / "moved", 2, patient_id="TLS-MOVE")
    got = write_instances(tmp_path / "got", 2, patient_id="TLS-GET")
    for files in (moved, got):
        subprocess.run(["storescu", "+tls", str(router_key), str(router_crt), "+cf", str(trusted), "-aet", node.aet,
                        "127.0.0.1", str(pacs.dicom_port), *map(str, files)], check=True, capture_output=True)
    for source, patient in (("pacs", "TLS-MOVE"), ("pacsget", "TLS-GET")):
        job = node.post("/courier/jobs", {"Source": source, "Destination": "dest", "Items": [{"PatientID": patient}]})
        assert job.status_code == 200, job.text
        job_id = job.json()["Id"]
        done = wait_until(lambda j=job_id: (s := node.get(f"/courier/jobs/{j}"))["Status"] not in (
            "PENDING", "RUNNING", "QUERYING", "READY") and s, 60, what=f"the {source} job")
        assert done["Status"] == "SUCCESS", done
    assert dest.sop_uids() == {f.stem for f in moved + got}     # fetched over TLS, sent on


def scp(certificate_pair, client_trusted, answers):
    """A pynetdicom Patient Root C-FIND SCP over TLS that requires a client certificate."""
    key, crt = certificate_pair
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(crt), str(key))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(str(client_trusted))
    seen = []

    def on_find(event):
        seen.append(event.assoc.requestor.ae_title)
        for patient_id in answers:
            found = Dataset()
            found.QueryRetrieveLevel, found.PatientID, found.StudyInstanceUID = "STUDY", patient_id, "1.2.3." + patient_id
            yield 0xFF00, found
    ae = AE(ae_title="TLSSCP")
    ae.add_supported_context(PatientRootQueryRetrieveInformationModelFind)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, ssl_context=context,
                             evt_handlers=[(evt.EVT_C_FIND, on_find)])
    return server, port, seen


def test_a_pynetdicom_tls_scp_answers_and_an_untrusted_certificate_is_refused_with_the_reason(cluster, tmp_path):
    router_key, router_crt = certificate(tmp_path, "router")
    scp_pair = certificate(tmp_path, "scp")
    rogue_pair = certificate(tmp_path, "rogue")
    trusted = bundle(tmp_path, "trusted.crt", scp_pair[1], router_crt)
    good, good_port, seen = scp(scp_pair, router_crt, ["11", "12"])
    rogue, rogue_port, rogue_seen = scp(rogue_pair, router_crt, ["99"])
    try:
        node = cluster.orthanc("router", courier={"Routes": [], "Nodes": {
            "good": {"QueryModel": "PatientRoot"}, "rogue": {"QueryModel": "PatientRoot"}}},
            extra={**tls_settings(router_key, router_crt, trusted, enabled=False), "DicomModalities": {
                "good": {"AET": "TLSSCP", "Host": "127.0.0.1", "Port": good_port, "UseDicomTls": True},
                "rogue": {"AET": "TLSSCP", "Host": "127.0.0.1", "Port": rogue_port, "UseDicomTls": True}}})
        answer = node.post("/courier/query", {"Node": "good", "Level": "STUDY", "Filters": {"PatientID": "1*"}})
        assert answer.status_code == 200, answer.text
        assert sorted(a["PatientID"] for a in answer.json()["Answers"]) == ["11", "12"]
        assert seen == [node.aet]                                   # it presented Orthanc's certificate
        refused = node.post("/courier/query", {"Node": "rogue", "Level": "STUDY", "Filters": {"PatientID": "9*"}})
        assert refused.status_code == 502, refused.text
        assert "DICOM TLS with TLSSCP@127.0.0.1" in refused.json()["error"]
        assert "CERTIFICATE_VERIFY_FAILED" in refused.json()["error"].upper().replace(" ", "_")
        assert rogue_seen == []
    finally:
        good.shutdown()
        rogue.shutdown()


def test_use_dicom_tls_without_orthancs_tls_files_stops_with_the_path(cluster, tmp_path):
    node = cluster.orthanc("router", start=False, courier={"Routes": []},
                           extra={"DicomModalities": {"x": {"AET": "X", "Host": "127.0.0.1", "Port": 1, "UseDicomTls": True}}})
    node.start(wait=False)
    node.process.wait(30)
    assert "DicomModalities.x.UseDicomTls: DICOM TLS needs orthanc.json's DicomTlsCertificate" in node.log_tail(200)
