import io

import pydicom

from courier.config.match import compile_condition
from courier.config.profiles import Profile
from courier.config.routes import Route
from courier.deid.ingest_gate import DISCARD, KEEP, MODIFY, IngestGate
from courier.deid.pseudonymizer import Pseudonymizer
from courier.store.store import Store
from factory import make_instance


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
    def pseudonymize_bytes(self, data):
        raise RuntimeError("a bug in the pseudonymizer")


def test_any_error_discards_and_quarantines_the_original(tmp_path):
    g, store = gate(tmp_path, Exploding(Profile("p", b"0123456789abcdef0123")))
    original = file_bytes(patient_name="Doe^Jane")
    assert g.decide(original) == (DISCARD, None)
    total, entries = store.quarantine.list()
    assert total == 1 and "RuntimeError: a bug in the pseudonymizer" in entries[0]["reason"]
    assert open(entries[0]["file"], "rb").read() == original
    assert g.decide(b"not dicom at all")[0] == DISCARD       # unreadable: also quarantined
    assert store.quarantine.list()[0] == 2


def test_an_instance_already_pseudonymized_with_the_profile_is_kept_as_is(tmp_path):
    g, _ = gate(tmp_path)
    action, once = g.decide(file_bytes(patient_id="P1"))
    assert action == MODIFY
    assert g.decide(once) == (KEEP, None)          # never pseudonymized twice
