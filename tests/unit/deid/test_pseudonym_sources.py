import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from courier.config.profiles import Profile, parse_lookup_csv
from courier.deid.pseudonymizer import PseudonymizationError, Pseudonymizer
from courier.deid.sources import patient_source
from courier.store.store import Store
from factory import make_instance

SECRET = b"0123456789abcdef0123"


def test_lookup_csv_accepts_semicolons_and_bom_and_reports_lines():
    assert parse_lookup_csv("\ufeffPatientID;Pseudonym\nP1;S-1\n\nP2;S-2\n", "f.csv") == [("P1", "S-1"), ("P2", "S-2")]
    with pytest.raises(ValueError, match="f.csv: line 1: missing column"):
        parse_lookup_csv("ID,Pseudonym\nP1,S\n", "f.csv")
    with pytest.raises(ValueError, match="f.csv: line 3, column Pseudonym: empty"):
        parse_lookup_csv("PatientID,Pseudonym\nP1,S\nP2,\n", "f.csv")
    with pytest.raises(ValueError, match="line 3, column Pseudonym: PatientID 'P1' already has another pseudonym"):
        parse_lookup_csv("PatientID,Pseudonym\nP1,S\nP1,T\n", "f.csv")


def test_lookup_source_uses_the_table_and_quarantines_unknown_patients(tmp_path):
    store = Store(str(tmp_path / "c.sqlite"))
    profile = Profile("lk", SECRET, source="Lookup", burned_in="Pass")
    store.crosswalk.load_lookup("lk", [("P1", "SUBJ-001")])
    pseudo = Pseudonymizer(profile, patient_source(profile, store))
    assert pseudo.pseudonymize(make_instance(patient_id="P1")).dataset.PatientID == "SUBJ-001"
    with pytest.raises(PseudonymizationError) as caught:
        pseudo.pseudonymize(make_instance(patient_id="P2"))
    assert caught.value.disposition == "quarantine" and "not in the lookup table" in caught.value.reason


class Broker:
    """A real HTTP honest broker on loopback; `delay` makes it slow."""

    def __init__(self, delay=0.0, status=200):
        self.calls = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.calls.append(body)
                time.sleep(delay)
                payload = json.dumps({"Pseudonym": "HB-" + body["PatientID"][::-1]}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/pseudonym"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_broker_is_called_once_per_patient(tmp_path):
    broker = Broker()
    try:
        store = Store(str(tmp_path / "c.sqlite"))
        profile = Profile("hb", SECRET, source="Broker", broker_url=broker.url, broker_timeout=5, burned_in="Pass")
        pseudo = Pseudonymizer(profile, patient_source(profile, store))
        ids = {pseudo.pseudonymize(make_instance(patient_id="P123")).dataset.PatientID for _ in range(3)}
        assert ids == {"HB-321P"}
        assert broker.calls == [{"PatientID": "P123", "Profile": "hb"}]
        again = Pseudonymizer(profile, patient_source(profile, Store(str(tmp_path / "c.sqlite"))))
        assert again.pseudonymize(make_instance(patient_id="P123")).dataset.PatientID == "HB-321P"
        assert len(broker.calls) == 1                  # cached across restarts, in the crosswalk
    finally:
        broker.close()


@pytest.mark.parametrize("delay,status,words", [(2.0, 200, "did not answer within 0.5 s"), (0, 500, "broker failed: HTTPError")])
def test_a_failing_broker_fails_clearly_and_is_retried(tmp_path, delay, status, words):
    broker = Broker(delay=delay, status=status)
    try:
        store = Store(str(tmp_path / "c.sqlite"))
        profile = Profile("hb", SECRET, source="Broker", broker_url=broker.url, broker_timeout=0.5, burned_in="Pass")
        with pytest.raises(PseudonymizationError) as caught:
            Pseudonymizer(profile, patient_source(profile, store)).pseudonymize(make_instance(patient_id="P1"))
        assert caught.value.disposition == "retry" and words in caught.value.reason
        assert store.crosswalk.rows("hb", "patients") == []
    finally:
        broker.close()
