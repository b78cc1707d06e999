import copy

import pytest

from courier.config.destinations import DEFAULT_LAYOUT
from courier.config.parse import parse
from courier.errors import ConfigError

BASE = {
    "HttpPort": 8100, "StorageDirectory": "/srv/orthanc",
    "DicomModalities": {"pacs": ["PACS", "127.0.0.1", 104], "ct": {"AET": "CT1", "Host": "ct.local", "Port": 104}},
    "OrthancPeers": {"peer": {"Url": "http://127.0.0.1:8200/"}},
    "DicomWeb": {"Servers": {"web": ["http://127.0.0.1:8300/dicom-web/"]}},
    "Courier": {
        "Folders": {"out": {"Path": "export"}},
        "Routes": [{"Name": "ct", "Trigger": "StableStudy", "Match": {"Modality": "CT", "CallingAet": ["CT1"]},
                    "Destinations": ["pacs", "peer", "web", "out"], "Priority": 5, "DeleteAfterDelivery": True}],
    },
}


def parsed(**changes):
    config = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        target = config
        *parents, last = dotted.split("__")
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        target[last] = value
    return parse(config, "/etc/courier", "/repo")


def test_a_valid_configuration():
    config = parsed()
    assert config.destinations == {"pacs": "dicom", "ct": "dicom", "peer": "peer", "web": "dicomweb", "out": "folder"}
    assert config.known_callers == {"PACS": ("127.0.0.1",), "CT1": ("ct.local",)}
    assert config.folders["out"].path == "/etc/courier/export" and config.folders["out"].layout == DEFAULT_LAYOUT
    assert config.database_path == "/srv/orthanc/courier.sqlite"
    assert config.orthanc_url == "http://127.0.0.1:8100"
    assert config.scripts_directory == "/repo/lua-free-scripts"
    route = config.routes[0]
    assert (route.trigger, route.priority, route.delete_after_delivery) == ("StableStudy", 5, True)
    assert dict(route.match)["Modality"]("CT")


@pytest.mark.parametrize("changes,path,words", [
    ({"Courier__Workrs": 2}, "Courier.Workrs", "did you mean 'Workers'"),
    ({"Courier__Workers": "4"}, "Courier.Workers", "expected an integer, got a string"),
    ({"Courier__Workers": 0}, "Courier.Workers", "greater than 0"),
    ({"Courier__Workers": 3}, "Courier.Workers", 'set "ConcurrentJobs" to at least 3'),
    ({"Courier__Retry": {"MaxAttempts": True}}, "Courier.Retry.MaxAttempts", "expected an integer"),
    ({"Courier__Retry": {"Multiplier": 0.5}}, "Courier.Retry.Multiplier", "at least 1"),
    ({"Courier__AllowedCallers": "Some"}, "Courier.AllowedCallers", "KnownModalities"),
    ({"Courier__Routes__0__Trigger": "NewStudy"}, "Courier.Routes[0].Trigger", "StableStudy"),
    ({"Courier__Routes__0__Destinations": ["pacs", "pcas"]}, "Courier.Routes[0].Destinations[1]", "no destination named 'pcas'"),
    ({"Courier__Routes__0__Destinations": []}, "Courier.Routes[0].Destinations", "at least one"),
    ({"Courier__Routes__0__Match": {"Modalty": "CT"}}, "Courier.Routes[0].Match.Modalty", "did you mean 'Modality'"),
    ({"Courier__Routes__0__Match": {"Modality": {"regex": "("}}},
     "Courier.Routes[0].Match.Modality", "invalid regular expression"),
    ({"Courier__Routes__0__Name": ""}, "Courier.Routes[0].Name", "unique"),
    ({"Courier__Routes__0__Condition": "../evil.py"}, "Courier.Routes[0].Condition", "file name"),
    ({"Courier__Routes__0__AllowedCallingAets": "CT1"}, "Courier.Routes[0].AllowedCallingAets", "expected a list"),
    ({"Courier__Routes__0__Colour": "red"}, "Courier.Routes[0].Colour", "unknown key"),
    ({"Courier__Folders": {"out": {"Path": "x", "Layout": "{PatientNam}/{SOPInstanceUID}"}}},
     "Courier.Folders.out.Layout", "not a DICOM keyword"),
    ({"Courier__Folders": {"out": {"Layout": "x"}}}, "Courier.Folders.out.Path", "is required"),
    ({"Courier__Folders": {"pacs": {"Path": "x"}}}, "Courier.Folders.pacs", "also used by a dicom destination"),
    ({"OrthancPeers": {"pacs": "http://127.0.0.1:1/"}}, "OrthancPeers.pacs", "unique across registries"),
    ({"Courier": []}, "Courier", "expected an object"),
])
def test_errors_name_the_path_and_give_a_hint(changes, path, words):
    with pytest.raises(ConfigError) as caught:
        parsed(**changes)
    message = str(caught.value)
    assert message.startswith(f"Courier configuration error at {path}:"), message
    assert words in message


def test_a_route_with_two_equal_names_is_refused():
    config = copy.deepcopy(BASE)
    config["Courier"]["Routes"].append(copy.deepcopy(config["Courier"]["Routes"][0]))
    with pytest.raises(ConfigError, match=r"Courier.Routes\[1\].Name"):
        parse(config, "/", "/")


def test_workers_follow_orthancs_concurrent_jobs():
    assert parse({}, "/", "/").workers == 2
    assert parse({"ConcurrentJobs": 8}, "/", "/").workers == 4
    assert parse({"ConcurrentJobs": 8, "Courier": {"Workers": 8}}, "/", "/").workers == 8


def test_no_courier_section_means_no_routes():
    config = parse({}, "/", "/")
    assert config.routes == () and config.allowed_callers == "KnownModalities"


def profile_config(tmp_path, profile, route_profile="trial"):
    config = copy.deepcopy(BASE)
    config["Courier"]["Pseudonymization"] = {"trial": profile}
    config["Courier"]["Routes"][0]["Pseudonymize"] = route_profile
    return config


@pytest.mark.parametrize("profile,path,words", [
    ({}, "Courier.Pseudonymization.trial", "set exactly one of SecretFile and SecretEnv"),
    ({"SecretEnv": "NOT_SET_ANYWHERE"}, "Courier.Pseudonymization.trial.SecretEnv", "NOT_SET_ANYWHERE is not set"),
    ({"SecretEnv": "SHORT_SECRET"}, "Courier.Pseudonymization.trial.SecretEnv", "shorter than 16 bytes"),
    ({"SecretFile": "/nonexistent/key"}, "Courier.Pseudonymization.trial.SecretFile", "cannot read /nonexistent/key"),
    ({"SecretEnv": "GOOD_SECRET", "Options": ["RetainUID"]},
     "Courier.Pseudonymization.trial.Options[0]", "did you mean 'RetainUIDs'"),
    ({"SecretEnv": "GOOD_SECRET", "Options": ["RetainLongitudinalFullDates", "RetainLongitudinalModifiedDates"]},
     "Courier.Pseudonymization.trial.Options", "exclude each other"),
    ({"SecretEnv": "GOOD_SECRET", "SafePrivate": ["0010,ACME,01"]}, "Courier.Pseudonymization.trial.SafePrivate[0]", "odd group"),
    ({"SecretEnv": "GOOD_SECRET", "Keep": ["PatientNam"]}, "Courier.Pseudonymization.trial.Keep[0]", "neither a DICOM keyword"),
    ({"SecretEnv": "GOOD_SECRET", "DateShiftDays": [10, -10]},
     "Courier.Pseudonymization.trial.DateShiftDays", "[lowest, highest]"),
    ({"SecretEnv": "GOOD_SECRET", "BurnedInAnnotation": "Ignore"},
     "Courier.Pseudonymization.trial.BurnedInAnnotation", "Quarantine"),
    ({"SecretEnv": "GOOD_SECRET", "Pseudonym": {"Alphabet": "AA"}},
     "Courier.Pseudonymization.trial.Pseudonym.Alphabet", "distinct"),
    ({"SecretEnv": "GOOD_SECRET", "Trial": {"Sponsor": "x"}},
     "Courier.Pseudonymization.trial.Trial.Sponsor", "did you mean 'SponsorName'"),
])
def test_profile_errors_name_the_path(tmp_path, profile, path, words):
    environ = {"SHORT_SECRET": "abc", "GOOD_SECRET": "0123456789abcdef0123"}
    with pytest.raises(ConfigError) as caught:
        parse(profile_config(tmp_path, profile), "/", "/", environ)
    assert str(caught.value).startswith(f"Courier configuration error at {path}:"), str(caught.value)
    assert words in str(caught.value)
    assert "0123456789abcdef0123" not in str(caught.value)


def test_a_route_naming_an_unknown_profile_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"Courier.Routes\[0\].Pseudonymize: no pseudonymization profile named 'trail'"):
        parse(profile_config(tmp_path, {"SecretEnv": "S"}, route_profile="trail"), "/", "/", {"S": "x" * 20})


def test_a_profile_from_a_secret_file(tmp_path):
    (tmp_path / "key").write_text("a-long-enough-secret-value\n")
    config = parse(profile_config(tmp_path, {"SecretFile": "key", "Options": ["CleanDescriptors"],
                                             "Keep": ["StudyDescription", "0009,0010"], "Replace": {"InstitutionName": "X"},
                                             "Trial": {"ProtocolID": "P1"}}), str(tmp_path), "/")
    profile = config.profiles["trial"]
    assert profile.secret == b"a-long-enough-secret-value"
    assert "a-long-enough" not in repr(profile)
    assert profile.keep == {0x00081030, 0x00090010} and profile.replace == {0x00080080: "X"}
    assert profile.trial == {"ClinicalTrialProtocolID": "P1"} and config.routes[0].pseudonymize == "trial"


def test_sqlite_by_default_postgresql_with_its_password_outside_the_json(monkeypatch):
    assert parsed().database.kind == "sqlite" and parsed().database.path == "/srv/orthanc/courier.sqlite"
    config = copy.deepcopy(BASE)
    config["Courier"]["Database"] = {"Url": "postgresql://courier@db.local:5432/courier", "PasswordEnv": "COURIER_DB_PW"}
    settings = parse(config, "/etc/courier", "/repo", environ={"COURIER_DB_PW": "s3cret"}).database
    assert (settings.kind, settings.password, settings.describe()) == ("postgresql", "s3cret",
                                                                       "postgresql://courier@db.local:5432/courier")
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize("database,extra,words", [
    ({"Url": "postgresql://courier:pw@db/courier"}, {}, "Courier.Database.Url: holds a password"),
    ({"Url": "mysql://db/courier"}, {}, "Courier.Database.Url: expected postgresql://"),
    ({"Url": "postgresql://courier@db/courier"}, {"DatabasePath": "c.sqlite"}, "not both"),
    ({"Url": "postgresql://courier@db/courier", "Pasword": "x"}, {}, "Courier.Database.Pasword: unknown key"),
])
def test_database_errors_name_the_path(database, extra, words):
    config = copy.deepcopy(BASE)
    config["Courier"].update({"Database": database, **extra})
    with pytest.raises(ConfigError) as error:
        parse(config, "/etc/courier", "/repo")
    assert words in str(error.value)


def test_a_modality_object_keeps_its_local_aet_and_tls_for_courier_own_sends():
    tls = {"DicomTlsCertificate": "c.crt", "DicomTlsPrivateKey": "c.key", "DicomTlsTrustedCertificates": "/t.crt"}
    config = parsed(DicomModalities__ct={"AET": "CT1", "Host": "ct.local", "Port": 104, "LocalAet": "ROUTER2",
                                         "UseDicomTls": True}, **tls, DicomTlsMinimumProtocolVersion=4)
    assert (config.nodes["ct"].local_aet, config.nodes["ct"].tls) == ("ROUTER2", True)
    settings = config.nodes["ct"].tls_settings
    assert (settings.certificate, settings.trusted, settings.minimum_version) == ("/etc/courier/c.crt", "/t.crt", 4)
    assert (config.nodes["pacs"].local_aet, config.nodes["pacs"].tls, config.nodes["pacs"].tls_settings) == ("", False, None)
    with pytest.raises(ConfigError, match=r"DicomModalities.ct.UseDicomTls: DICOM TLS needs"):
        parsed(DicomModalities__ct={"AET": "CT1", "Host": "ct.local", "Port": 104, "UseDicomTls": True})
    with pytest.raises(ConfigError, match=r"DicomTlsPrivateKey: expected a file name"):
        parsed(DicomTlsCertificate="c.crt")


def test_a_router_name_has_no_colon():
    """Task and lease owners begin `<router name>:`: with a colon in a name, router "site" would
    take the live router "site:a"'s leases for a dead incarnation's of its own."""
    assert parsed(Courier__RouterName="site-a").router_name == "site-a"
    for bad in ("site:a", ""):
        with pytest.raises(ConfigError, match=r"Courier.RouterName.*without ':'"):
            parsed(Courier__RouterName=bad)


def test_batch_linger_is_off_by_default_and_bounded():
    assert parsed().batch_linger == 0
    assert parsed(Courier__BatchLingerSeconds=0.25).batch_linger == 0.25
    with pytest.raises(ConfigError, match=r"Courier.BatchLingerSeconds.*between 0 and 10"):
        parsed(Courier__BatchLingerSeconds=-1)
    with pytest.raises(ConfigError, match=r"Courier.BatchLingerSeconds.*expected a number"):
        parsed(Courier__BatchLingerSeconds="soon")


def test_orthancs_savejobs_left_true_is_named_with_what_to_set():
    """Orthanc's default (true) resumes at its restart the store job a kill interrupted, while
    Courier sends the batch again; the shipped configurations say false."""
    base = copy.deepcopy(BASE)
    base.pop("SaveJobs", None)
    (warning,) = parse(base, "/etc/courier", "/repo").orthanc_warnings
    assert warning.startswith("SaveJobs is true") and '"SaveJobs": false' in warning
    assert parse({**base, "SaveJobs": True}, "/etc/courier", "/repo").orthanc_warnings == (warning,)
    assert parse({**base, "SaveJobs": False}, "/etc/courier", "/repo").orthanc_warnings == ()
