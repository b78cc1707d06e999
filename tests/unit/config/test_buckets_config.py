"""Courier.Buckets: S3-compatible destinations, parsed like folders; keys from a file or a variable only."""
import pytest

from courier.config.destinations import DEFAULT_LAYOUT
from courier.config.parse import parse
from courier.config.runtime import COURIER_KEYS, check_shape
from courier.errors import ConfigError

ENV = {"S3_ACCESS": "AKIAEXAMPLE", "S3_SECRET": "secret-example-key"}


def configure(bucket, route_to="store", environ=ENV, **courier):
    config = {"DicomModalities": {"pacs": ["PACS", "127.0.0.1", 104]},
              "Courier": {"Buckets": {"store": bucket},
                          "Routes": [{"Name": "all", "Destinations": [route_to]}], **courier}}
    return parse(config, "/etc/courier", "/repo", environ=environ)


def minimal(**changes):
    return {"Endpoint": "http://127.0.0.1:9000", "Bucket": "dicom", "AccessKeyEnv": "S3_ACCESS",
            "SecretKeyEnv": "S3_SECRET", **changes}


def test_a_bucket_is_a_destination_kind_with_its_defaults():
    config = configure(minimal())
    assert config.destinations["store"] == "bucket"
    bucket = config.buckets["store"]
    assert (bucket.endpoint, bucket.bucket, bucket.prefix, bucket.layout) == ("http://127.0.0.1:9000", "dicom", "",
                                                                              DEFAULT_LAYOUT)
    assert bucket.multipart_threshold == 8 * 1024 * 1024 and bucket.enabled
    assert (bucket.access_key, bucket.secret_key) == ("AKIAEXAMPLE", "secret-example-key")
    assert bucket.credential_sources == ("S3_ACCESS", "S3_SECRET")
    assert "secret-example-key" not in repr(bucket) and "AKIAEXAMPLE" not in repr(bucket)
    assert "store" not in config.disabled


def test_prefix_layout_threshold_and_keys_from_files(tmp_path):
    (tmp_path / "access").write_text("AKIAFILE\n")
    (tmp_path / "secret").write_text("secret-from-a-file\n")
    bucket = configure({"Region": "eu-west-1", "Bucket": "hospital.archive", "Prefix": "/courier//ct/",
                        "Layout": "{PatientID}/{SOPInstanceUID}.dcm", "MultipartThresholdMB": 16, "Enabled": False,
                        "AccessKeyFile": str(tmp_path / "access"), "SecretKeyFile": str(tmp_path / "secret")}).buckets["store"]
    assert bucket.endpoint is None and bucket.region == "eu-west-1"
    assert bucket.prefix == "courier/ct/" and bucket.layout == "{PatientID}/{SOPInstanceUID}.dcm"
    assert bucket.multipart_threshold == 16 * 1024 * 1024 and not bucket.enabled
    assert bucket.access_key == "AKIAFILE" and bucket.secret_key == "secret-from-a-file"
    assert bucket.credential_sources == (str(tmp_path / "access"), str(tmp_path / "secret"))


def test_a_disabled_bucket_holds_its_tasks():
    assert "store" in configure(minimal(Enabled=False)).disabled


def test_no_keys_at_all_leaves_them_to_boto3():
    bucket = configure({"Region": "us-east-1", "Bucket": "dicom"}).buckets["store"]
    assert bucket.access_key is None and bucket.secret_key is None and bucket.credential_sources == ()


@pytest.mark.parametrize("bucket, path, problem", [
    ({"Endpoint": "http://127.0.0.1:9000"}, "Courier.Buckets.store.Bucket", "is required"),
    ({"Bucket": "dicom"}, "Courier.Buckets.store", "set Endpoint (any S3-compatible store) or Region"),
    (minimal(Bucket="no/slash"), "Courier.Buckets.store.Bucket", "is not a bucket name"),
    (minimal(Endpoint="ftp://example"), "Courier.Buckets.store.Endpoint", "http:// or https:// URL"),
    (minimal(Endpoint="http://user:pw@example"), "Courier.Buckets.store.Endpoint", "without credentials"),
    (minimal(Layout="{PatientId}/{SOPInstanceUID}"), "Courier.Buckets.store.Layout", "{PatientId} is not a DICOM keyword"),
    (minimal(Layout="{StudyInstanceUID}/"), "Courier.Buckets.store.Layout", "must end with a file name"),
    (minimal(Prefix="a/../b"), "Courier.Buckets.store.Prefix", "'.' or '..'"),
    (minimal(MultipartThresholdMB=1), "Courier.Buckets.store.MultipartThresholdMB", "at least 5"),
    (minimal(MultipartThresholdMB="8"), "Courier.Buckets.store.MultipartThresholdMB", "expected a number"),
    (minimal(Enabled="no"), "Courier.Buckets.store.Enabled", "expected true or false"),
    (minimal(SecretKey="literal"), "Courier.Buckets.store.SecretKey", "unknown key"),
    ({**minimal(), "SecretKeyFile": "/x"}, "Courier.Buckets.store", "set exactly one of SecretKeyFile and SecretKeyEnv"),
    ({"Endpoint": "http://h", "Bucket": "dicom", "AccessKeyEnv": "S3_ACCESS"}, "Courier.Buckets.store",
     "set SecretKeyFile or SecretKeyEnv too"),
    (minimal(AccessKeyEnv="NOT_SET"), "Courier.Buckets.store.AccessKeyEnv", "NOT_SET is not set or empty"),
    (minimal(SecretKeyFile="/nonexistent/secret", SecretKeyEnv=None), "Courier.Buckets.store.SecretKeyFile",
     "cannot read /nonexistent/secret"),
])
def test_mistakes_name_the_json_path(bucket, path, problem):
    bucket = {k: v for k, v in bucket.items() if v is not None}
    with pytest.raises(ConfigError) as caught:
        configure(bucket)
    assert caught.value.path == path and problem in str(caught.value)
    assert "secret-example-key" not in str(caught.value)


def test_ids_are_unique_across_destination_kinds():
    with pytest.raises(ConfigError, match=r"Courier.Buckets.pacs: the id is also used by a dicom destination"):
        parse({"DicomModalities": {"pacs": ["PACS", "127.0.0.1", 104]},
               "Courier": {"Buckets": {"pacs": minimal()}}}, "/etc", "/repo", environ=ENV)


def test_a_route_names_a_bucket_or_is_told_where_to_declare_it():
    with pytest.raises(ConfigError, match="Courier.Buckets"):
        configure(minimal(), route_to="nowhere")


def test_buckets_are_part_of_the_runtime_configuration():
    assert "Buckets" in COURIER_KEYS
    check_shape({"Courier": {"Buckets": {"store": minimal()}}})
