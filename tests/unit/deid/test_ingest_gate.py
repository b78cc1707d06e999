import io

import pydicom
import pytest

from courier.config.match import compile_condition
from courier.config.profiles import Profile
from courier.config.routes import Route
from courier.deid.ingest_gate import DISCARD, KEEP, MODIFY, IngestGate
from courier.deid.pseudonymizer import Pseudonymizer
from courier.store.store import Store
from factory import encoded_against_its_header, make_instance
from factory import file_bytes as file_bytes_of


def file_bytes(**kwargs):
    out = io.BytesIO()
    make_instance(**kwargs).save_as(out, enforce_file_format=True)
    return out.getvalue()


def gate(tmp_path, pseudonymizer=None):
    route = Route("r", "Instance", (("Modality", compile_condition("CT")),), ("d",), pseudonymize="p",
                  pseudonymize_on="Ingest")
    store = Store(str(tmp_path / "c.sqlite"))
    pseudonymizer = pseudonymizer or Pseudonymizer(Profile("p", b"0123456789abcdef0123", burned_in="Pass"))
    return IngestGate([route], pseudonymizer, store, str(tmp_path / "q")), store


def test_matching_instances_are_replaced_by_their_pseudonymized_copy(tmp_path):
    g, store = gate(tmp_path)
    action, data = g.decide(file_bytes(patient_id="P1", patient_name="Doe^Jane"))
    assert action == MODIFY and b"Doe" not in data
    assert pydicom.dcmread(io.BytesIO(data)).PatientIdentityRemoved == "YES"
    assert store.crosswalk.rows("p", "patients")[0][0] == "P1"
    assert g.decide(file_bytes(modality="MR"))[0] == KEEP


class Exploding(Pseudonymizer):
    def pseudonymize_to_bytes(self, ds):
        raise RuntimeError("a bug in the pseudonymizer")


def test_any_error_discards_and_quarantines_the_original(tmp_path):
    g, store = gate(tmp_path, Exploding(Profile("p", b"0123456789abcdef0123")))
    original = file_bytes(patient_name="Doe^Jane")
    assert g.decide(original) == (DISCARD, None)
    total, entries = store.quarantine.list()
    assert total == 1 and "RuntimeError: a bug in the pseudonymizer" in entries[0]["reason"]
    assert entries[0]["route"] == "r"                          # the Ingest route it was quarantined for
    assert open(entries[0]["file"], "rb").read() == original
    assert g.decide(b"not dicom at all")[0] == DISCARD       # unreadable: also quarantined
    assert store.quarantine.list()[0] == 2


def test_an_instance_already_pseudonymized_with_the_profile_is_kept_as_is(tmp_path):
    g, _ = gate(tmp_path)
    action, once = g.decide(file_bytes(patient_id="P1"))
    assert action == MODIFY
    assert g.decide(once) == (KEEP, None)          # never pseudonymized twice


def test_an_instance_without_patient_id_is_pseudonymized(tmp_path):
    g, store = gate(tmp_path)
    ds = make_instance(patient_name="Doe^Jane")
    del ds.PatientID
    action, data = g.decide(file_bytes_of(ds))
    assert action == MODIFY and b"Doe" not in data
    out = pydicom.dcmread(io.BytesIO(data))
    assert out.PatientID and out.PatientIdentityRemoved == "YES"
    assert store.quarantine.list()[0] == 0
    assert store.crosswalk.rows("p", "patients") == [("Doe^Jane|19700101", out.PatientID)]


@pytest.mark.parametrize("missing", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
def test_an_original_orthanc_could_not_index_is_refused_with_the_reason(tmp_path, missing):
    g, store = gate(tmp_path)
    ds = make_instance(patient_name="Doe^Jane")
    delattr(ds, missing)
    assert g.decide(file_bytes_of(ds)) == (DISCARD, None)
    total, entries = store.quarantine.list()
    assert total == 1 and entries[0]["disposition"] == "reject"
    assert f"not stored: no {missing}: Orthanc indexes instances by Study, Series and SOP Instance UID" in entries[0]["reason"]


def test_an_original_encoded_against_its_header_is_refused_with_the_reason(tmp_path):
    """pydicom reads it (and would write a clean copy), DCMTK does not: Orthanc 1.10.1 would answer
    the REST upload 400 while storing the copy. Refused, so that an error means nothing was stored."""
    g, store = gate(tmp_path)
    assert g.decide(encoded_against_its_header(make_instance(patient_name="Doe^Jane"))) == (DISCARD, None)
    reason = store.quarantine.list()[1][0]["reason"]
    assert "encoded Implicit VR while its transfer syntax 1.2.840.10008.1.2.1 (Explicit VR Little Endian) says " \
           "Explicit VR: Orthanc cannot read it" in reason


def test_a_forged_deidentification_method_does_not_switch_the_gate_off(tmp_path):
    g, _ = gate(tmp_path)
    action, data = g.decide(file_bytes(patient_id="REAL-MRN", DeidentificationMethod="Courier profile p",
                                       PatientIdentityRemoved="YES"))
    assert action == MODIFY and b"REAL-MRN" not in data
