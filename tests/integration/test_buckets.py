"""Bucket destinations end to end: storescu -> Courier (real Orthanc + plugin) -> moto's S3 server
on loopback (authentication on): objects at their laid-out keys with the bytes Orthanc holds, a
20 MB instance in parts, a store that fails the first upload, wrong keys, a bucket added at runtime."""
import json

import requests

from factory import write_instances
from harness import storescu, wait_until
from s3 import FaultyProxy

FAST_RETRY = {"MaxAttempts": 50, "InitialDelaySeconds": 0.3, "Multiplier": 2, "MaxDelaySeconds": 1}
MODALITY = {"AET": "MODALITY", "Host": "127.0.0.1", "Port": 1}


def bucket_entry(s3, name, tmp_path, url=None, **changes):
    access, secret = s3.write_keys(tmp_path / "keys")
    return {"Endpoint": url or s3.url, "Bucket": name, "Prefix": "courier", "Layout": "{PatientID}/{SOPInstanceUID}.dcm",
            "AccessKeyFile": access, "SecretKeyFile": secret, "MultipartThresholdMB": 5, **changes}


def router(cluster, buckets, routes, **courier):
    return cluster.orthanc("router", courier={"Retry": FAST_RETRY, "Buckets": buckets, "Routes": routes, **courier},
                           extra={"DicomModalities": {"modality": MODALITY}})


def tasks(node, **query):
    return node.get("/courier/tasks", **query)["tasks"]


def stored_files(node):
    """SOP Instance UID -> the bytes Orthanc holds."""
    files = {}
    for instance in node.instances():
        tags = node.get(f"/instances/{instance}/simplified-tags")
        files[tags["SOPInstanceUID"]] = requests.get(f"{node.url}/instances/{instance}/file", timeout=30).content
    return files


def test_instances_land_at_their_keys_and_a_large_one_goes_multipart(cluster, tmp_path, s3, s3_bucket):
    node = router(cluster, {"s3": bucket_entry(s3, s3_bucket, tmp_path)},
                  [{"Name": "all", "Trigger": "Instance", "Destinations": ["s3"]}])
    small = write_instances(tmp_path / "small", 2, patient_id="P42")
    large = write_instances(tmp_path / "large", 1, patient_id="P42", size=3200)      # 20 MB of pixels
    assert large[0].stat().st_size > 19 * 1024 * 1024
    storescu(node.dicom_port, small + large, calling="MODALITY")
    expected = {f"courier/P42/{p.stem}.dcm" for p in small + large}
    wait_until(lambda: set(s3.objects(s3_bucket)) == expected, 60, what="three objects in the bucket")
    done = wait_until(lambda: (t := tasks(node)) and len(t) == 3 and all(x["state"] == "SUCCESS" for x in t) and t,
                      30, what="3 tasks SUCCESS")
    assert {t["destination"] for t in done} == {"s3"}
    objects, held = s3.objects(s3_bucket), stored_files(node)
    assert {key: data for key, data in objects.items()} == {f"courier/P42/{uid}.dcm": data for uid, data in held.items()}
    big = f"courier/P42/{large[0].stem}.dcm"
    assert s3.parts_count(s3_bucket, big) == 4                                       # 5 MB parts
    assert s3.client().head_object(Bucket=s3_bucket, Key=big)["ETag"].strip('"').endswith("-4")
    assert all(s3.parts_count(s3_bucket, f"courier/P42/{p.stem}.dcm") == 1 for p in small)


def test_a_bucket_that_fails_the_first_upload_gets_it_on_a_later_attempt(cluster, tmp_path, s3, s3_bucket):
    proxy = FaultyProxy(s3.url, fail_puts=1)
    try:
        node = router(cluster, {"s3": bucket_entry(s3, s3_bucket, tmp_path, url=proxy.url)},
                      [{"Name": "all", "Trigger": "Instance", "Destinations": ["s3"]}])
        files = write_instances(tmp_path / "in", 1, patient_id="P7")
        storescu(node.dicom_port, files, calling="MODALITY")
        wait_until(lambda: set(s3.objects(s3_bucket)) == {f"courier/P7/{files[0].stem}.dcm"}, 40,
                   what="the object after the retry")
        task = wait_until(lambda: (t := tasks(node)) and t[0]["state"] == "SUCCESS" and t[0], 20, what="task SUCCESS")
        assert task["attempts"] == 2 and proxy.failed == 1
        attempts = [e for e in node.get("/courier/audit", limit=100)["entries"] if e.get("task_id") == task["id"]]
        failed = [e for e in attempts if e["action"] == "task-retry-scheduled"]
        assert len(failed) == 1 and "ServiceUnavailable" in failed[0]["detail"]["error"]
        assert failed[0]["detail"]["attempt"] == 1
        assert any(e["action"] == "task-delivered" and e["detail"]["attempt"] == 2 for e in attempts)
    finally:
        proxy.stop()


def test_wrong_keys_fail_with_the_reason_and_the_keys_are_never_shown(cluster, tmp_path, s3, s3_bucket):
    entry = bucket_entry(s3, s3_bucket, tmp_path)
    wrong_secret = "wrong-secret-key-never-to-be-shown-0123"
    (tmp_path / "keys" / "secret").write_text(wrong_secret)
    node = router(cluster, {"s3": entry}, [{"Name": "all", "Trigger": "Instance", "Destinations": ["s3"]}])
    files = write_instances(tmp_path / "in", 1)
    storescu(node.dicom_port, files, calling="MODALITY")
    task = wait_until(lambda: (t := tasks(node)) and t[0]["state"] == "FAILURE" and t[0], 30, what="task FAILURE")
    assert task["attempts"] == 1                           # refused for good: not tried again
    assert "bucket s3: SignatureDoesNotMatch" in task["last_error"] and s3_bucket in task["last_error"]
    assert s3.objects(s3_bucket) == {}
    shown = json.dumps([node.get("/courier/tasks"), node.get("/courier/audit", limit=200), node.get("/courier/config"),
                        node.get("/courier/config/versions"), node.get("/courier/config/versions/1")])
    shown += requests.get(node.url + "/courier/ui/config", timeout=30).text + node.log_tail(100000)
    assert entry["SecretKeyFile"] in shown                  # the file's name is there...
    for secret in (wrong_secret, s3.access_key, s3.secret_key):
        assert secret not in shown                          # ...never a key


def test_a_bucket_added_at_runtime_receives_a_routed_instance(cluster, tmp_path, s3, s3_bucket):
    node = router(cluster, {}, [])
    entry = bucket_entry(s3, s3_bucket, tmp_path, Prefix="runtime/")
    answer = requests.put(node.url + "/courier/config/buckets/late", json={"Entry": entry}, timeout=30)
    assert answer.status_code == 200, answer.text
    answer = requests.put(node.url + "/courier/config/routes/r", timeout=30, json={
        "Entry": {"Trigger": "Instance", "Destinations": ["late"]}})
    assert answer.status_code == 200, answer.text
    literal = requests.put(node.url + "/courier/config/buckets/bad", timeout=30,
                           json={"Entry": {**entry, "SecretKey": s3.secret_key}})
    assert literal.status_code == 400 and "Courier.Buckets.bad.SecretKey: unknown key" in literal.json()["error"]
    assert s3.secret_key not in literal.text
    files = write_instances(tmp_path / "in", 1, patient_id="RT")
    storescu(node.dicom_port, files, calling="MODALITY")
    wait_until(lambda: set(s3.objects(s3_bucket)) == {f"runtime/RT/{files[0].stem}.dcm"}, 30, what="the object")
    wait_until(lambda: (t := tasks(node)) and t[0]["state"] == "SUCCESS", 20, what="task SUCCESS")
    document = node.get("/courier/config")["Document"]
    assert document["Courier"]["Buckets"]["late"]["SecretKeyFile"] == entry["SecretKeyFile"]
    assert s3.secret_key not in json.dumps(node.get("/courier/config/versions/3"))


def test_a_modified_and_pseudonymized_route_uploads_what_it_changed(cluster, tmp_path, s3, s3_bucket):
    import io

    import pydicom
    (tmp_path / "key").write_text("bucket-key-0123456789abcdef")
    node = router(cluster, {"s3": bucket_entry(s3, s3_bucket, tmp_path, Layout="{SOPInstanceUID}.dcm")},
                  [{"Name": "m", "Destinations": ["s3"], "Pseudonymize": "p",
                    "Modify": {"Set": {"InstitutionName": "Bucket site"}, "Remove": ["StudyDescription"]}}],
                  Pseudonymization={"p": {"SecretFile": str(tmp_path / "key"), "Keep": ["InstitutionName"]}})
    storescu(node.dicom_port, write_instances(tmp_path / "in", 1, patient_id="BUCKET-PID"), calling="MODALITY")
    objects = wait_until(lambda: s3.objects(s3_bucket) or None, 30, what="the object")
    ds = pydicom.dcmread(io.BytesIO(next(iter(objects.values()))))
    assert ds.InstitutionName == "Bucket site" and "StudyDescription" not in ds and ds.PatientID != "BUCKET-PID"
