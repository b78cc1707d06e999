"""The runtime document (pure): extracted from orthanc.json without passwords, laid back over it,
compared by JSON path, exported as orthanc.json sections."""
import pytest

from courier.config.runtime import IN_ORTHANC_JSON, canonical, diff, digest, export, extract, overlay
from courier.errors import ConfigError

ORTHANC = {"HttpPort": 8042, "DicomModalities": {"pacs": ["PACS", "10.0.0.1", 104]},
           "OrthancPeers": {"peer": {"Url": "http://p/", "Username": "u", "Password": "s3cret"},
                            "old": ["http://o/", "u", "pw"]},
           "DicomWeb": {"Enable": True, "Servers": {"web": ["http://w/"]}},
           "Courier": {"Workers": 2, "Routes": [{"Name": "r", "Destinations": ["pacs"]}]}}


def test_extract_keeps_passwords_out_and_overlay_puts_them_back():
    document = extract(ORTHANC, {"x.py": "def match(t, c): return True"})
    assert "s3cret" not in canonical(document) and "pw" not in canonical(document)
    assert document["OrthancPeers"]["peer"]["Password"] == IN_ORTHANC_JSON
    assert document["Courier"] == {"Routes": [{"Name": "r", "Destinations": ["pacs"]}]}     # Workers: orthanc.json only
    assert document["Scripts"] == {"x.py": "def match(t, c): return True"}
    full = overlay(ORTHANC, document)
    assert full["OrthancPeers"]["peer"]["Password"] == "s3cret" and full["OrthancPeers"]["old"][2] == "pw"
    assert full["Courier"]["Workers"] == 2 and full["HttpPort"] == 8042 and full["DicomWeb"]["Enable"] is True


def test_a_literal_password_or_an_unknown_marker_is_refused_naming_the_path():
    document = extract(ORTHANC, {})
    document["OrthancPeers"]["peer"]["Password"] = "typed in"
    with pytest.raises(ConfigError, match=r"OrthancPeers\.peer\.Password"):
        overlay(ORTHANC, document)
    document["OrthancPeers"] = {"new": {"Url": "http://n/", "Password": IN_ORTHANC_JSON}}
    with pytest.raises(ConfigError, match=r"OrthancPeers\.new\.Password: orthanc.json gives no such secret"):
        overlay(ORTHANC, document)
    document["OrthancPeers"] = {"new": {"Url": "http://n/", "Username": "u", "PasswordEnv": "P"}}
    assert overlay(ORTHANC, document, lambda path, entry: f"from {path}")["OrthancPeers"]["new"]["Password"] == \
        "from OrthancPeers.new"


def test_diff_names_routes_by_name_and_every_change_by_path():
    old = {"Courier": {"Routes": [{"Name": "a", "Destinations": ["x"]}, {"Name": "b", "Destinations": ["y"]}]},
           "DicomModalities": {"x": ["X", "h", 1]}}
    new = {"Courier": {"Routes": [{"Name": "b", "Destinations": ["y"]}, {"Name": "a", "Destinations": ["z"]}]},
           "DicomModalities": {"z": ["Z", "h", 2]}}
    assert diff(old, new) == [
        {"Path": "Courier.Routes.a.Destinations", "Change": "changed", "Old": ["x"], "New": ["z"]},
        {"Path": "DicomModalities.x", "Change": "removed", "Old": ["X", "h", 1]},
        {"Path": "DicomModalities.z", "Change": "added", "New": ["Z", "h", 2]}]
    assert diff(old, old) == [] and digest(old) == digest({**old}) and digest(old) != digest(new)


def test_export_is_orthanc_json_sections_with_the_scripts_to_write():
    document = extract(ORTHANC, {"x.py": "..."})
    exported = export(document)
    assert exported["Scripts"] == {"x.py": "..."} and exported["DicomWeb"]["Servers"]["web"] == ["http://w/"]
    assert exported["DicomModalities"]["pacs"] == ["PACS", "10.0.0.1", 104]        # a port is no password


def test_every_kind_of_secret_stays_in_orthanc_json_and_only_for_its_address():
    orthanc = {"OrthancPeers": {"p": {"Url": "http://p/", "Username": "u", "Password": "pw",
                                      "HttpHeaders": {"Authorization": "Bearer t0ken"},
                                      "CertificateKeyPassword": "kp"},
                                "c": ["http://u:pw2@c/"]}}
    document = extract(orthanc, {})
    text = canonical(document)
    assert not any(secret in text for secret in ("pw", "t0ken", "kp", "pw2")), text
    full = overlay(orthanc, document)
    assert full["OrthancPeers"] == orthanc["OrthancPeers"]
    moved = extract(orthanc, {})
    moved["OrthancPeers"]["p"]["Url"] = "http://elsewhere/"
    with pytest.raises(ConfigError, match=r"OrthancPeers\.p\.Password: orthanc.json's secret belongs to its Url"):
        overlay(orthanc, moved)
    typed = extract(orthanc, {})
    typed["OrthancPeers"]["p"]["HttpHeaders"]["Authorization"] = "Bearer typed"
    with pytest.raises(ConfigError, match=r"OrthancPeers\.p\.HttpHeaders\.Authorization: a secret is not kept"):
        overlay(orthanc, typed)
    with pytest.raises(ConfigError, match=r"OrthancPeers\.n\[0\]: a secret is not kept"):
        overlay(orthanc, {"OrthancPeers": {"n": ["http://a:b@n/"]}})


def test_a_list_form_modality_is_kept_whole():
    document = extract(ORTHANC, {})
    document["DicomModalities"]["new"] = ["NEW", "h", 11112]
    assert overlay(ORTHANC, document)["DicomModalities"]["new"] == ["NEW", "h", 11112]
