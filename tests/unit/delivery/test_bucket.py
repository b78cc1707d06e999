"""The bucket sender against a real S3 implementation (moto's server on loopback): keys from the
layout, single and multipart uploads checked with a HEAD, and what each failure means."""
import base64
import hashlib
import io

import pytest
from pydicom import dcmwrite

from courier.config.destinations import Bucket
from courier.delivery.bucket import BucketSender, expected_checksums, verify
from courier.errors import DeliveryError, Refused, bucket_failure
from courier.store.records import ManifestItem
from factory import make_instance
from harness import free_port
from s3 import FaultyProxy

MB = 1024 * 1024


def dicom_bytes(size=16, **tags):
    ds = make_instance(size=size, **tags)
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return ds, out.getvalue()


def sender(s3, bucket_name, url=None, **changes):
    spec = dict(id="store", bucket=bucket_name, layout="{PatientID}/{SOPInstanceUID}.dcm", endpoint=url or s3.url,
                region="us-east-1", prefix="courier/", access_key=s3.access_key, secret_key=s3.secret_key,
                multipart_threshold=5 * MB)
    spec.update(changes)
    return BucketSender(None, Bucket(**spec), timeout=5)


def test_a_small_instance_is_one_put_at_its_laid_out_key(s3, s3_bucket):
    ds, data = dicom_bytes(patient_id="P/../1")
    report = sender(s3, s3_bucket).send_files([(ManifestItem("i1", ds.SOPInstanceUID), data)])
    assert report == {"i1": None}
    key = f"courier/P_.._1/{ds.SOPInstanceUID}.dcm"
    assert s3.objects(s3_bucket) == {key: data}
    assert s3.parts_count(s3_bucket, key) == 1


def test_a_large_instance_goes_multipart_and_is_checked(s3, s3_bucket):
    ds, data = dicom_bytes(size=3200)                 # 3200 x 3200 x 2 bytes: 20 MB of pixels
    assert len(data) > 19 * MB
    report = sender(s3, s3_bucket).send_files([(ManifestItem("big", ds.SOPInstanceUID), data)])
    assert report == {"big": None}
    key = f"courier/PAT1/{ds.SOPInstanceUID}.dcm"
    assert s3.objects(s3_bucket)[key] == data
    assert s3.parts_count(s3_bucket, key) == 4        # 5 MB parts
    head = s3.client().head_object(Bucket=s3_bucket, Key=key)
    assert head["ETag"].strip('"').endswith("-4")


def test_a_503_is_a_retriable_failure_and_the_next_attempt_delivers(s3, s3_bucket):
    proxy = FaultyProxy(s3.url, fail_puts=1)
    try:
        one, two = dicom_bytes(), dicom_bytes()
        files = [(ManifestItem("i1", one[0].SOPInstanceUID), one[1]), (ManifestItem("i2", two[0].SOPInstanceUID), two[1])]
        bucket = sender(s3, s3_bucket, url=proxy.url)
        first = bucket.send_files(files)
        assert first["i1"].down and not first["i1"].permanent and "ServiceUnavailable" in first["i1"].reason
        assert first["i2"].down and first["i2"].reason.startswith("not sent, destination down")
        assert s3.objects(s3_bucket) == {}
        assert bucket.send_files(files) == {"i1": None, "i2": None}
        assert len(s3.objects(s3_bucket)) == 2 and len(proxy.uploads()) == 3
    finally:
        proxy.stop()


def test_wrong_keys_fail_for_good_with_the_reason_and_never_show_the_keys(s3, s3_bucket):
    ds, data = dicom_bytes()
    wrong = sender(s3, s3_bucket, secret_key="not-the-right-secret-key-at-all")
    report = wrong.send_files([(ManifestItem("i1", ds.SOPInstanceUID), data)])
    assert report["i1"].permanent and report["i1"].down
    assert "SignatureDoesNotMatch" in report["i1"].reason and "bucket store" in report["i1"].reason
    assert "not-the-right-secret-key-at-all" not in report["i1"].reason
    unknown = sender(s3, s3_bucket, access_key="AKIANOBODYKNOWS00000")
    reason = unknown.send_files([(ManifestItem("i1", ds.SOPInstanceUID), data)])["i1"].reason
    assert "InvalidAccessKeyId" in reason and "AKIANOBODYKNOWS00000" not in reason


def test_a_missing_bucket_is_permanent_and_a_store_not_answering_is_retried(s3):
    ds, data = dicom_bytes()
    item = ManifestItem("i1", ds.SOPInstanceUID)
    missing = sender(s3, "no-such-bucket-here").send_files([(item, data)])["i1"]
    assert missing.permanent and missing.down and "NoSuchBucket" in missing.reason
    refused = sender(s3, "whatever", url=f"http://127.0.0.1:{free_port()}").send_files([(item, data)])["i1"]
    assert refused.down and not refused.permanent and "Could not connect" in refused.reason


def test_not_dicom_is_refused_for_that_instance_only(s3, s3_bucket):
    ds, data = dicom_bytes()
    report = sender(s3, s3_bucket).send_files([(ManifestItem("bad", "1.2"), b"not dicom"),
                                               (ManifestItem("good", ds.SOPInstanceUID), data)])
    assert report["bad"].permanent and not report["bad"].down and report["good"] is None


def test_cancelled_sends_nothing(s3, s3_bucket):
    ds, data = dicom_bytes()
    report = sender(s3, s3_bucket).send_files([(ManifestItem("i1", ds.SOPInstanceUID), data)], cancelled=lambda: True)
    assert report["i1"].interrupted and s3.objects(s3_bucket) == {}


def test_the_head_must_answer_the_size_and_the_checksum():
    data = b"x" * 1000
    sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
    verify({"ContentLength": 1000, "ChecksumSHA256": sha}, data, None, "k")
    verify({"ContentLength": 1000, "ETag": f'"{hashlib.md5(data).hexdigest()}"'}, data, None, "k")
    with pytest.raises(Refused, match="holds 999 bytes"):
        verify({"ContentLength": 999, "ChecksumSHA256": sha}, data, None, "k")
    with pytest.raises(Refused, match="SHA-256") as caught:
        verify({"ContentLength": 1000, "ChecksumSHA256": base64.b64encode(b"0" * 32).decode()}, data, None, "k")
    assert caught.value.retriable
    with pytest.raises(Refused, match="ETag"):
        verify({"ContentLength": 1000, "ETag": '"' + "0" * 32 + '"'}, data, None, "k")
    with pytest.raises(Refused, match="cannot be checked") as caught:
        verify({"ContentLength": 1000, "ETag": '"kms-opaque"'}, data, None, "k")
    assert not caught.value.retriable
    sha256s, etag = expected_checksums(b"a" * 12, 5)           # parts of 5, 5 and 2 bytes
    assert etag.endswith("-3") and len(sha256s) == 2
    verify({"ContentLength": 12, "ETag": etag}, b"a" * 12, 5, "k")


@pytest.mark.parametrize("status, code, kind, retriable", [
    (None, "", DeliveryError, True), (503, "ServiceUnavailable", DeliveryError, True),
    (500, "InternalError", DeliveryError, True),
    (503, "SlowDown", DeliveryError, True), (403, "AccessDenied", DeliveryError, False),
    (403, "InvalidAccessKeyId", DeliveryError, False), (404, "NoSuchBucket", DeliveryError, False),
    (400, "BadDigest", Refused, True), (400, "EntityTooLarge", Refused, False),
])
def test_what_each_store_failure_means(status, code, kind, retriable):
    error = bucket_failure(status, code, "message")
    assert type(error) is kind and error.retriable is retriable
