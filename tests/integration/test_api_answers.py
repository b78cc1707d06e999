"""What a client gets from a real Orthanc 1.10.1 for requests Courier must refuse (issue #11, items
8-11): always an answer, never a crash of Orthanc, and never a success for what was not done."""
import base64
import http.client
import io
import json
import struct

import pydicom
import pytest
import requests
from pydicom.uid import generate_uid

from factory import write_instances
from harness import Orthanc

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    """One router for the tests that leave it as they found it (a crash would fail them all)."""
    work = tmp_path_factory.mktemp("answers")
    (work / "key").write_text("answers-secret-0123456789")
    dest = Orthanc(work, "dest").start()
    node = Orthanc(work, "router", courier={
        "AllowedCallers": "Any",
        "Pseudonymization": {"lk": {"SecretFile": str(work / "key"), "Pseudonym": {"Source": "Lookup"}}},
        "Routes": [{"Name": "r", "Destinations": ["dest"]}]},
        extra={"DicomModalities": {"dest": dest.as_modality()}})
    try:
        node.start()
        yield node
    finally:
        for orthanc in (node, dest):
            orthanc.signal()
        for orthanc in (node, dest):
            orthanc.stop()


def alive(node):
    return (requests.get(node.url + "/system", timeout=5).status_code,
            requests.get(node.url + "/courier/health", timeout=5).status_code) == (200, 200)


def nested_sequences(depth: int) -> bytes:
    """A small DICOM file whose ContentSequence nests `depth` levels (undefined lengths, written by hand:
    building it with pydicom objects takes gigabytes)."""
    dataset = pydicom.Dataset()
    dataset.SOPClassUID, dataset.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.4", generate_uid()
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = generate_uid(), generate_uid()
    dataset.file_meta = pydicom.dataset.FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    opened = struct.pack("<HH", 0x0040, 0xA730) + b"SQ\0\0" + struct.pack("<I", 0xFFFFFFFF) + \
        struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    closed = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return out.getvalue() + opened * depth + struct.pack("<HH", 0x0008, 0x0100) + b"SH\2\0x " + closed * depth


def test_deeply_nested_bodies_are_refused_and_orthanc_keeps_answering(cluster, tmp_path):
    # Before: a JSON body of 600 nested arrays made Orthanc segfault (Python's json recursing in C on an
    # HTTP thread of 100 KiB), and so did a 7 KB DICOM file with sequences nested 200 deep (pydicom).
    (tmp_path / "key").write_text("answers-secret-0123456789")
    node = cluster.orthanc("router", courier={"AllowedCallers": "Any",
                                              "Pseudonymization": {"h": {"SecretFile": str(tmp_path / "key")}}})
    for path in ("/courier/jobs", "/courier/query", "/courier/jobs/batch", "/courier/send", "/courier/tasks/1/cancel"):
        for depth in (600, 100000):
            answer = requests.post(node.url + path, data="[" * depth + "]" * depth, headers=JSON, timeout=30)
            assert answer.status_code == 400, (path, depth, answer.text)
            assert answer.json() == {"error": "the body is nested deeper than 32 levels of arrays and objects",
                                     "status": 400}
            assert alive(node)
    for path in ("/courier/routes/test", "/courier/pseudonymize/h"):
        answer = requests.post(node.url + path, data=nested_sequences(1000), timeout=30,
                               headers={"Content-Type": "application/dicom"})
        assert answer.status_code in (400, 422) and "RecursionError" in answer.json()["error"], (path, answer.text)
        assert alive(node)
    big = requests.post(node.url + "/courier/jobs", data=b" " * (1024 * 1024 + 1), headers=JSON, timeout=30)
    assert big.status_code == 413 and big.json()["error"].endswith("takes at most 1 MiB")
    assert alive(node) and node.process.poll() is None


@pytest.mark.parametrize("path, body, message", [
    ("/courier/jobs", {"Source": ["dest"], "Destination": "dest", "Items": [{"PatientID": "P"}]},
     "Source: expected a string, got an array"),
    ("/courier/jobs", {"Source": "dest", "Destination": {"x": 1}, "Items": [{"PatientID": "P"}]},
     "Destination: expected a string, got an object"),
    ("/courier/jobs", {"Source": "dest", "Destination": "dest", "Pseudonymize": ["lk"], "Items": [{"PatientID": "P"}]},
     "Pseudonymize: expected a string, got an array"),
    ("/courier/jobs", {"Source": "dest", "Destination": "dest", "Items": [{"PatientID": "P"}, {}, {"StudyInstanceUID": 7}]},
     "Items[2].StudyInstanceUID: expected a string, got an integer"),
    ("/courier/jobs/batch", {"File": "eA==", "Source": ["dest"]}, "Source: expected a string, got an array"),
    ("/courier/jobs/batch", {"File": "eA==", "Source": "dest", "Destination": {}},
     "Destination: expected a string, got an object"),
    ("/courier/jobs/batch", {"File": "eA==", "Source": "dest", "Pseudonymize": []},
     "Pseudonymize: expected a string, got an array"),
    ("/courier/send", [], "the body: expected an object, got an array"),
    ("/courier/routes/test", ["Tags"], "the body: expected an object, got an array"),
    ("/courier/jobs/1/priority", "urgent", "the body: expected an object, got a string"),
])
def test_wrong_json_types_are_a_400_naming_the_field(router, path, body, message):
    answer = requests.post(router.url + path, json=body, timeout=30)
    assert answer.status_code == 400 and answer.json() == {"error": message, "status": 400}, answer.text


def test_a_lone_surrogate_in_a_query_filter_is_refused_before_any_c_find(router):
    answer = requests.post(router.url + "/courier/query", data=b'{"Node": "dest", "Filters": {"PatientID": "P\\ud800*"}}',
                           headers=JSON, timeout=30)
    assert answer.status_code == 400, answer.text        # before: 502, the C-FIND failed in Orthanc
    assert answer.json()["error"].startswith("Filters.PatientID: contains a lone surrogate (U+D800")
    entries = requests.get(router.url + "/courier/audit", params={"action": "query"}, timeout=10).json()["entries"]
    assert entries == []


def test_a_csv_field_over_128_kib_in_a_lookup_upload_is_a_400(router):
    data = b"PatientID,Pseudonym\n" + b"P" * 200000 + b",SUBJ\n"
    answer = requests.post(router.url + "/courier/crosswalk/lk/lookup", data=data, timeout=30,
                           headers={"Content-Type": "text/csv"})
    assert answer.status_code == 400 and answer.json()["error"].startswith("uploaded file: not a CSV table"), answer.text


def raw_request(node, method, path, body=b"", headers=None):
    """One request on a fresh connection: (status, headers, body); http.client raises if Orthanc
    closes the connection without an answer."""
    connection = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=15)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("method, path, allowed", [
    ("PUT", "/courier/tasks", "GET"), ("DELETE", "/courier/tasks/1", "GET"), ("PUT", "/courier/jobs", "POST, GET"),
    ("DELETE", "/courier/jobs/1/cancel", "POST"), ("GET", "/courier/send", "POST"), ("PUT", "/courier/openapi.json", "GET"),
    ("POST", "/courier/ui/", "GET"), ("POST", "/courier/ui/jobs", "GET"), ("DELETE", "/courier/ui/audit", "GET"),
])
def test_a_wrong_method_is_answered_405_with_the_allowed_methods(router, method, path, allowed):
    # Before: Orthanc 1.10.1 refused 405 through SendHttpStatus and closed the connection unanswered.
    status, headers, body = raw_request(router, method, path, b"{}", JSON)
    assert (status, headers.get("allow")) == (405, allowed)
    assert body == b""                       # Orthanc's SendMethodNotAllowed sends no body (and no other header)
    assert alive(router)


def multipart(fields: dict) -> tuple[bytes, str]:
    boundary = "courier-test-boundary"
    parts = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}"\r\n'
                     f"Content-Type: {ctype}\r\n\r\n".encode() + data + b"\r\n" for name, (ctype, data) in fields.items())
    return parts + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_multipart_posts_are_refused_never_told_they_succeeded(router):
    # Before: Orthanc answered 200 with an empty body, and handed each part to Courier as a POST of its
    # own with the part's Content-Type: a part typed application/json got past the CSRF rule and was
    # acted on (here: a C-ECHO was made and audited) while the sender learnt nothing.
    body, content_type = multipart({"file": ("application/json", b"{}")})
    status, _, answer = raw_request(router, "POST", "/courier/nodes/dest/echo", body, {"Content-Type": content_type})
    assert status == 403 and answer == b""
    nodes = requests.get(router.url + "/courier/nodes", timeout=10).json()
    assert [n["LastEcho"] for n in nodes if n["Id"] == "dest"] == [None]
    assert requests.get(router.url + "/courier/audit", params={"action": "node-echoed"}, timeout=10).json()["entries"] == []
    csv = base64.b64encode(b"PatientID,StudyInstanceUID\nP1,1.2.3\n")
    body, content_type = multipart({"File": ("text/csv", csv), "meta": ("application/json", json.dumps(
        {"File": csv.decode(), "Source": "dest", "Destination": "dest"}).encode())})
    assert raw_request(router, "POST", "/courier/jobs/batch", body, {"Content-Type": content_type})[0] == 403
    assert requests.get(router.url + "/courier/jobs", timeout=10).json()["total"] == 0
    assert raw_request(router, "POST", "/courier/ui/batch", body, {"Content-Type": content_type})[0] == 403
    # the filter concerns /courier/ only: Orthanc's own upload form still stores what it is sent
    dicom = write_instances(router.dir / "upload", 1, patient_id="FORM")[0].read_bytes()
    body, content_type = multipart({"files[]": ("application/dicom", dicom)})
    status, _, _ = raw_request(router, "POST", "/instances", body, {"Content-Type": content_type})
    assert status == 200 and len(requests.get(router.url + "/instances", timeout=10).json()) == 1
    assert alive(router)


def test_get_arguments_are_decoded_and_must_be_text(router):
    # Orthanc 1.10.1 hands a plugin the GET arguments still percent-encoded.
    answer = requests.get(router.url + "/courier/tasks", params={"state": "NOT DONE"}, timeout=10)
    assert answer.status_code == 400 and answer.json()["error"].startswith("query parameter 'state': unknown state 'NOT DONE'")
    assert requests.get(router.url + "/courier/audit", params={"actor": "jos\u00e9"}, timeout=10).status_code == 200
    answer = requests.get(router.url + "/courier/audit?actor=%ED%A0%80", timeout=10)
    assert answer.status_code == 400 and answer.json() == {"error": "query parameter 'actor': not UTF-8 text",
                                                           "status": 400}
