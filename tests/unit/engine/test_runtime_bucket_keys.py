"""A bucket's keys may not name another secret of the configuration (it would go to the bucket's
Endpoint as the access key id), and a node's password may not name a bucket's key."""
import pytest

from courier.engine.runtime import RuntimeConfig
from courier.errors import ConfigError

ENV = {"ARCHIVE_PASSWORD": "archive-password", "S3_ACCESS": "AKIAEXAMPLE", "S3_SECRET": "secret-example"}


def runtime(tmp_path):
    seed = {"Courier": {"Archives": {"zip": {"Path": str(tmp_path / "zip"), "PasswordEnv": "ARCHIVE_PASSWORD"}}}}
    return RuntimeConfig(seed, str(tmp_path), str(tmp_path), "test", store=None, rest=None, environ=ENV)


def document(access_env):
    return {"Courier": {"Buckets": {"s3": {"Endpoint": "http://127.0.0.1:9", "Bucket": "dicom",
                                           "AccessKeyEnv": access_env, "SecretKeyEnv": "S3_SECRET"}},
                        "Routes": [{"Name": "r", "Destinations": ["s3"]}]}}


def test_a_bucket_with_keys_of_its_own_is_built(tmp_path):
    built = runtime(tmp_path).build(document("S3_ACCESS"))
    assert built.config.destinations["s3"] == "bucket" and "s3" in built.senders


def test_a_bucket_key_naming_another_secret_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="Courier.Buckets.s3.AccessKeyEnv: names the variable that holds the secret "
                                          "of Courier.Archives.zip.PasswordEnv"):
        runtime(tmp_path).build(document("ARCHIVE_PASSWORD"))


def test_a_node_password_naming_a_bucket_key_is_refused(tmp_path):
    doc = document("S3_ACCESS")
    doc["OrthancPeers"] = {"p": {"Url": "http://127.0.0.1:9/", "Username": "u", "PasswordEnv": "S3_SECRET"}}
    with pytest.raises(ConfigError, match="OrthancPeers.p.PasswordEnv: names the variable that holds the secret of "
                                          "Courier.Buckets.s3.SecretKeyEnv"):
        runtime(tmp_path).build(doc)


def test_a_token_or_client_secret_may_not_be_the_tls_key_or_another_nodes(tmp_path):
    from courier.config.runtime import check_secret_reuse
    base = {"DicomTlsPrivateKey": "tls.key",
            "Courier": {"Nodes": {"a": {"Authorization": {"TokenUrl": "http://idp/", "ClientId": "c",
                                                          "ClientSecretFile": "a.secret"}}}}}
    check_secret_reuse(base, str(tmp_path))
    stolen = {**base, "Courier": {"Nodes": {**base["Courier"]["Nodes"],
                                            "b": {"Authorization": {"BearerTokenFile": "a.secret"}}}}}
    with pytest.raises(ConfigError, match="Courier.Nodes.b.Authorization.BearerTokenFile: names the file that holds "
                                          "the secret of Courier.Nodes.a.Authorization.ClientSecretFile"):
        check_secret_reuse(stolen, str(tmp_path))
    with pytest.raises(ConfigError, match="OrthancPeers.p.PasswordFile: names the file that holds the secret of "
                                          "DicomTlsPrivateKey"):
        check_secret_reuse({**base, "OrthancPeers": {"p": {"Url": "http://x/", "PasswordFile": "tls.key"}}}, str(tmp_path))


def test_two_buckets_of_one_store_may_share_keys_but_a_new_endpoint_may_not_take_them(tmp_path):
    from courier.config.runtime import check_secret_reuse

    def bucket(endpoint):
        return {"Endpoint": endpoint, "Bucket": "b", "AccessKeyFile": "k.access", "SecretKeyFile": "k.secret"}
    check_secret_reuse({"Courier": {"Buckets": {"a": bucket("http://s3.local"), "b": bucket("http://s3.local")}}},
                       str(tmp_path))
    with pytest.raises(ConfigError, match="Courier.Buckets.evil.AccessKeyFile: names the file that holds the secret "
                                          "of Courier.Buckets.a.AccessKeyFile"):
        check_secret_reuse({"Courier": {"Buckets": {"a": bucket("http://s3.local"), "evil": bucket("http://evil")}}},
                           str(tmp_path))
