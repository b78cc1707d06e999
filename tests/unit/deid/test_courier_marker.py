"""A sender cannot switch pseudonymization off: Courier knows its own output by a keyed MAC in its
private block, not by a DeidentificationMethod text anybody can write (gate and follower alike)."""
import io
from typing import Optional

import pydicom
import pytest

from courier.config.match import compile_condition
from courier.config.profiles import Profile, parse_profiles
from courier.config.routes import Route
from courier.deid import marker
from courier.deid.ingest_gate import KEEP, MODIFY, IngestGate, MadeOnIngest
from courier.deid.pseudonymizer import Pseudonymizer, method_marker
from courier.errors import ConfigError
from courier.orthanc_rest import OrthancHttpError
from courier.routing.callers import CallerPolicy
from courier.routing.follower import ChangeFollower, orthanc_instance_id, pseudonymized_on_ingest
from courier.store.store import Store
from factory import file_bytes, make_instance

SECRET = b"0123456789abcdef0123"


def pseudonymizer(name="p", secret=SECRET, **kwargs) -> Pseudonymizer:
    return Pseudonymizer(Profile(name, secret, burned_in="Pass", **kwargs))


def forged(**tags):
    """An original claiming to be Courier's output: its DeidentificationMethod and a made-up mark."""
    ds = make_instance(patient_id="REAL-MRN-1", patient_name="Doe^Jane", PatientIdentityRemoved="YES", **tags)
    ds.DeidentificationMethod = [method_marker("p"), "PS3.15 E.1-1 2024b Basic Profile"]
    ds.add_new(marker.CREATOR_TAG, "LO", "COURIER 1.0")
    ds.add_new(marker.MAC_TAG, "LO", "0" * 32)
    return ds


def orthanc_tags(ds) -> dict:
    """What Orthanc's simplified tags and /content give for an instance."""
    return {"SOPInstanceUID": ds.SOPInstanceUID, "PatientID": ds.PatientID, "StudyInstanceUID": ds.StudyInstanceUID,
            "SeriesInstanceUID": ds.SeriesInstanceUID, "DeidentificationMethod": "\\".join(ds.DeidentificationMethod)}


def test_only_the_profile_that_made_an_instance_recognises_it():
    out = pseudonymizer().pseudonymize(make_instance()).dataset
    assert pseudonymizer().made_this(out)
    assert not pseudonymizer(name="other").made_this(out)                   # same secret, another profile
    assert not pseudonymizer(secret=b"another secret 0123456").made_this(out)
    again = pydicom.dcmread(io.BytesIO(file_bytes(out)))
    assert pseudonymizer().made_this(again)                                 # the file, read back
    mark = again[marker.MAC_TAG].value
    assert pseudonymizer().made_this({**orthanc_tags(again), "7fdf,1001": mark})
    assert pseudonymizer().made_this({**orthanc_tags(again), "7fdf,1001": mark.encode() + b" "})   # raw /content
    assert not pseudonymizer().made_this(orthanc_tags(again))              # simplified tags alone prove nothing


def test_a_forged_mark_or_a_copied_one_is_not_courier_output():
    assert not pseudonymizer().made_this(forged())
    genuine = pseudonymizer().pseudonymize(make_instance()).dataset
    copied = forged()
    copied[marker.MAC_TAG].value = genuine[marker.MAC_TAG].value           # a real mark on another instance
    assert not pseudonymizer().made_this(copied)
    genuine.PatientID = "REAL-MRN-1"                                       # the real PatientID put back
    assert not pseudonymizer().made_this(genuine)


def test_a_received_courier_block_is_never_kept_only_the_new_mark_is_written():
    ds = forged()
    ds.add_new(0x00090010, "LO", "COURIER 1.0")                           # Courier's creator in another group
    ds.add_new(0x00091001, "LO", "0" * 32)
    ds.add_new(0x00190010, "LO", "ACME")
    ds.add_new(0x00191001, "LO", "kept")
    keeps_everything = pseudonymizer(options=frozenset({"RetainSafePrivate"}), keep=frozenset({marker.MAC_TAG, 0x00091001}),
                                     safe_private=frozenset({(0x0009, "COURIER 1.0", 0x01), (0x7FDF, "COURIER 1.0", 0x01),
                                                             (0x0019, "ACME", 0x01)}))
    out = keeps_everything.pseudonymize(ds).dataset
    assert [e.tag for e in out if e.tag.is_private] == [0x00190010, 0x00191001, marker.CREATOR_TAG, marker.MAC_TAG]
    assert out[marker.MAC_TAG].value != "0" * 32 and keeps_everything.made_this(out)


@pytest.mark.parametrize("spec,where", [({"SafePrivate": ["7FDF,ANY,01"]}, "SafePrivate[0]"),
                                        ({"SafePrivate": ["0009,COURIER 1.0,01"]}, "SafePrivate[0]"),
                                        ({"Keep": ["PatientAge", "7FDF,1001"]}, "Keep[1]")])
def test_a_profile_can_neither_keep_nor_list_courier_block(spec, where):
    with pytest.raises(ConfigError) as caught:
        parse_profiles({"trial": {"SecretEnv": "S", **spec}}, "/", environ={"S": "0123456789abcdef0123"})
    assert caught.value.path == f"Courier.Pseudonymization.trial.{where}" and "Courier's own private" in str(caught.value)


def gate(tmp_path):
    route = Route("r", "Instance", (("Modality", compile_condition("CT")),), ("d",), pseudonymize="p",
                  pseudonymize_on="Ingest")
    return IngestGate([route], pseudonymizer(), Store(str(tmp_path / "c.sqlite")), str(tmp_path / "q"))


def test_the_gate_pseudonymizes_a_forged_output_and_keeps_a_real_one(tmp_path):
    g = gate(tmp_path)
    action, data = g.decide(file_bytes(forged()))
    assert action == MODIFY and b"REAL-MRN-1" not in data and b"Doe" not in data
    assert g.decide(data) == (KEEP, None)                                  # Courier's own output: never twice


class FakeRest:
    """Orthanc's /instances/{id}/content/7fdf-1001 and /simplified-tags for the instances it holds."""

    def __init__(self, marks: dict, tags: Optional[dict] = None) -> None:
        self.marks, self.tags, self.read = marks, tags or {}, []

    def get_bytes(self, path: str) -> bytes:
        self.read.append(path)
        instance = path.split("/")[2]
        if path.endswith("/content/7fdf-1001") and instance in self.marks:
            return self.marks[instance]
        raise OrthancHttpError(404, f"GET {path}: HTTP 404")

    def get_json(self, path: str, **_) -> dict:
        self.read.append(path)
        instance = path.split("/")[2]
        if path.endswith("/simplified-tags") and instance in self.tags:
            return self.tags[instance]
        raise OrthancHttpError(404, f"GET {path}: HTTP 404")


CT_ONLY = (("Modality", compile_condition("CT")),)


def follower(tmp_path, rest, pseudonymizers, match=CT_ONLY, made=None):
    route = Route("r", "Instance", match, ("d",), pseudonymize="p", pseudonymize_on="Ingest")
    return ChangeFollower(Store(str(tmp_path / "f.sqlite")), rest, [route], CallerPolicy("Any", {}), None,
                          pseudonymizers=pseudonymizers, made=made), route


def test_what_the_gate_made_is_known_to_the_follower_without_reading_it_back(tmp_path):
    made = MadeOnIngest()
    gate = IngestGate([Route("r", "Instance", (), ("d",), pseudonymize="p", pseudonymize_on="Ingest")],
                      pseudonymizer(), Store(str(tmp_path / "g.sqlite")), str(tmp_path / "q"), made=made)
    action, out = gate.decide(file_bytes(make_instance()))
    assert action == MODIFY
    output = pydicom.dcmread(io.BytesIO(out))
    instance_id = orthanc_instance_id(orthanc_tags(output))          # as Orthanc will name it
    assert made.holds(instance_id, "p") and not made.holds(instance_id, "another profile")
    rest = FakeRest({}, {})                                          # Orthanc would answer nothing
    f, route = follower(tmp_path, rest, {"p": pseudonymizer()}, match=(), made=made)
    assert f._ingested(route, {}, instance_id) and rest.read == []
    assert gate.decide(out) == (KEEP, None)                          # its own output again: kept, nothing added
    assert len(made._made) == 1


def test_what_the_gate_did_not_make_is_read_back_and_verified_by_its_mark(tmp_path):
    genuine = pseudonymizer().pseudonymize(make_instance()).dataset    # made before a restart, say
    fake = forged()
    ids = {orthanc_instance_id(orthanc_tags(d)): d for d in (genuine, fake)}
    rest = FakeRest({i: d[marker.MAC_TAG].value.encode() for i, d in ids.items()},
                    {i: orthanc_tags(d) for i, d in ids.items()})
    made = MadeOnIngest()
    f, route = follower(tmp_path, rest, {"p": pseudonymizer()}, match=(), made=made)
    genuine_id, fake_id = ids
    assert f._ingested(route, {}, genuine_id)
    assert rest.read == [f"/instances/{genuine_id}/simplified-tags", f"/instances/{genuine_id}/content/7fdf-1001"]
    assert not f._ingested(route, {}, fake_id)
    made.add(fake_id, "another profile")                             # made by another profile's gate: no shortcut
    assert not f._ingested(route, {}, fake_id)


def test_the_gate_remembers_only_what_it_made_and_a_bounded_number():
    made = MadeOnIngest(capacity=3)
    for n in range(5):
        made.add(f"id-{n}", "p")
    assert [made.holds(f"id-{n}", "p") for n in range(5)] == [False, False, True, True, True]


def test_the_follower_fires_an_ingest_route_for_courier_output_only(tmp_path):
    genuine = pseudonymizer().pseudonymize(make_instance()).dataset
    fake = forged()
    ids = {orthanc_instance_id(orthanc_tags(d)): d for d in (genuine, fake)}
    rest = FakeRest({i: d[marker.MAC_TAG].value.encode() for i, d in ids.items()})
    f, route = follower(tmp_path, rest, {"p": pseudonymizer()})
    assert f._ingested(route, orthanc_tags(genuine))                       # series/study: the id from the tags
    assert not f._ingested(route, orthanc_tags(fake))
    assert f._ingested(route, orthanc_tags(genuine), orthanc_instance_id(orthanc_tags(genuine)))
    plain = orthanc_tags(make_instance(DeidentificationMethod="another tool"))
    reads = len(rest.read)
    assert not f._ingested(route, plain) and len(rest.read) == reads       # no claim: nothing read from Orthanc
    no_profiles, route = follower(tmp_path, rest, {})
    assert not no_profiles._ingested(route, orthanc_tags(genuine))         # nothing to verify with: fail closed


def test_pseudonymized_on_ingest_needs_the_mark():
    genuine = pseudonymizer().pseudonymize(make_instance()).dataset
    route = Route("r", "Instance", (), ("d",), pseudonymize="p", pseudonymize_on="Ingest")
    tags = orthanc_tags(genuine)
    assert not pseudonymized_on_ingest(route, tags, {"p": pseudonymizer()})
    assert pseudonymized_on_ingest(route, {**tags, "7fdf,1001": genuine[marker.MAC_TAG].value}, {"p": pseudonymizer()})


def test_orthanc_instance_ids_are_computed_as_orthanc_does():
    tags = {"PatientID": "AGWT2JC3PH3R", "StudyInstanceUID": "2.25.183467383085848281029167801691384971703",
            "SeriesInstanceUID": "2.25.80746239203879857051215007947777433280",
            "SOPInstanceUID": "2.25.199582269273755774657750123675864015897"}
    assert orthanc_instance_id(tags) == "08c24054-e6fdf513-075c9e8e-74f21680-c08afae8"      # read from Orthanc 1.10.1
