"""Courier.Nodes.{id}.Authorization: a bearer token or OAuth2 client credentials, secrets outside the JSON."""
import copy

import pytest

from courier.config.parse import parse
from courier.config.runtime import extract
from courier.errors import ConfigError

BASE = {"DicomModalities": {"pacs": ["PACS", "127.0.0.1", 104]},
        "DicomWeb": {"Servers": {"web": {"Url": "http://127.0.0.1:8300/dicom-web/", "HttpHeaders": {"X-Site": "a"}}}},
        "Courier": {"Nodes": {}}}


def config_with(authorization, node="web", environ=None):
    config = copy.deepcopy(BASE)
    config["Courier"]["Nodes"][node] = {"Authorization": authorization}
    return parse(config, "/etc/courier", "/repo", environ or {})


def test_a_bearer_token_from_a_file_or_a_variable(tmp_path):
    (tmp_path / "token").write_text("abc.def.ghi\n")
    auth = config_with({"BearerTokenFile": str(tmp_path / "token")}).node_settings["web"].authorization
    assert (auth.kind, auth.secret, auth.files) == ("bearer", "abc.def.ghi", (str(tmp_path / "token"),))
    assert "abc.def.ghi" not in repr(auth)
    auth = config_with({"BearerTokenEnv": "TOKEN"}, environ={"TOKEN": "xyz"}).node_settings["web"].authorization
    assert (auth.secret, auth.variables) == ("xyz", ("TOKEN",))


def test_oauth2_client_credentials_with_defaults():
    auth = config_with({"TokenUrl": "https://idp/token", "ClientId": "courier", "ClientSecretEnv": "S"},
                       environ={"S": "s3cret"}).node_settings["web"].authorization
    assert (auth.kind, auth.token_url, auth.client_id, auth.secret, auth.scope, auth.refresh_before) == (
        "oauth2", "https://idp/token", "courier", "s3cret", "", 60.0)
    assert "s3cret" not in repr(auth)


@pytest.mark.parametrize("authorization, node, path, words", [
    ({"BearerTokenEnv": "T"}, "pacs", "Courier.Nodes.pacs.Authorization", "only a DICOMweb server"),
    ({}, "web", "Courier.Nodes.web.Authorization", "give either"),
    ({"BearerTokenEnv": "T", "TokenUrl": "https://idp/t"}, "web", "Courier.Nodes.web.Authorization", "give either"),
    ({"BearerTokenEnv": "T", "BearerTokenFile": "t"}, "web", "Courier.Nodes.web.Authorization", "exactly one"),
    ({"BearerTokenEnv": "UNSET"}, "web", "Courier.Nodes.web.Authorization.BearerTokenEnv", "not set"),
    ({"BearerTokenFile": "/nonexistent/token"}, "web", "Courier.Nodes.web.Authorization.BearerTokenFile", "cannot read"),
    ({"TokenUrl": "ftp://idp", "ClientId": "c", "ClientSecretEnv": "T"}, "web", "Courier.Nodes.web.Authorization.TokenUrl",
     "http(s) URL"),
    ({"TokenUrl": "https://idp", "ClientSecretEnv": "T"}, "web", "Courier.Nodes.web.Authorization.ClientId", "required"),
    ({"TokenUrl": "https://idp", "ClientId": "c", "ClientSecretEnv": "T", "RefreshBeforeSeconds": 0}, "web",
     "Courier.Nodes.web.Authorization.RefreshBeforeSeconds", "greater than 0"),
    ({"TokenUrl": "https://idp", "ClientId": "c", "ClientSecret": "literal"}, "web",
     "Courier.Nodes.web.Authorization.ClientSecret", "unknown key"),
])
def test_authorization_errors_name_the_path(authorization, node, path, words):
    with pytest.raises(ConfigError) as error:
        config_with(authorization, node, environ={"T": "token-value"})
    assert error.value.path == path and words in str(error.value)
    assert "token-value" not in str(error.value)


def test_the_runtime_document_keeps_the_names_only_and_masks_headers():
    config = copy.deepcopy(BASE)
    config["Courier"]["Nodes"]["web"] = {"Authorization": {"BearerTokenEnv": "TOKEN"}}
    document = extract(config, {})
    assert document["Courier"]["Nodes"]["web"] == {"Authorization": {"BearerTokenEnv": "TOKEN"}}
    assert document["DicomWeb"]["Servers"]["web"]["HttpHeaders"] == {"X-Site": "(kept in orthanc.json)"}
