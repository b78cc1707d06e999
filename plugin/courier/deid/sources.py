"""Where a profile's patient pseudonyms come from, besides the keyed hash.

Lookup: a crosswalk table (PatientID -> pseudonym) loaded from a CSV file at start-up and/or
uploaded through the REST API; a patient missing from it is quarantined (CTP's @lookup does the
same), and the task can be retried once the table has the patient.

Broker: an honest-broker HTTP service, called once per patient (the answer is kept in the
crosswalk), with a timeout; a broker that does not answer fails the attempt, which is retried.
"""
from __future__ import annotations

import csv
import io
from typing import Callable, Optional

import requests

from courier.deid.pseudonymizer import Profile, PseudonymizationError
from courier.store.store import Store

LOOKUP_COLUMNS = ("PatientID", "Pseudonym")


def parse_lookup_csv(text: str, origin: str) -> list[tuple[str, str]]:
    """Rows of a PatientID,Pseudonym CSV (comma or semicolon, with or without BOM).
    ValueError naming the line and column for the first problem."""
    text = text.lstrip("\ufeff")
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in LOOKUP_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{origin}: line 1: missing column(s) {', '.join(missing)} (found {', '.join(header) or 'nothing'})")
    index = {name: header.index(name) for name in LOOKUP_COLUMNS}
    rows, seen = [], {}
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        values = {name: (row[i].strip() if i < len(row) else "") for name, i in index.items()}
        for name in LOOKUP_COLUMNS:
            if not values[name]:
                raise ValueError(f"{origin}: line {line}, column {name}: empty")
        if values["PatientID"] in seen and seen[values["PatientID"]] != values["Pseudonym"]:
            raise ValueError(f"{origin}: line {line}, column Pseudonym: PatientID {values['PatientID']!r} already has "
                             f"another pseudonym (one patient, one pseudonym)")
        seen[values["PatientID"]] = values["Pseudonym"]
        rows.append((values["PatientID"], values["Pseudonym"]))
    return rows


def patient_source(profile: Profile, store: Store) -> Optional[Callable[[str], str]]:
    """The callable Pseudonymizer uses for PatientID -> pseudonym, or None for the keyed hash."""
    if profile.source == "Lookup":
        def lookup(patient_id: str) -> str:
            found = store.lookup_pseudonym(profile.name, patient_id)
            if found is None:
                raise PseudonymizationError(f"PatientID not in the lookup table of profile {profile.name}",
                                            "quarantine")
            return found
        return lookup
    if profile.source == "Broker":
        def broker(patient_id: str) -> str:
            known = store.crosswalk_pseudonym(profile.name, patient_id)
            if known is not None:
                return known
            try:
                response = requests.post(profile.broker_url, json={"PatientID": patient_id, "Profile": profile.name},
                                         timeout=profile.broker_timeout)
                response.raise_for_status()
                pseudonym = str(response.json()["Pseudonym"]).strip()
            except requests.Timeout:
                raise PseudonymizationError(f"the honest broker did not answer within {profile.broker_timeout:g} s",
                                            "retry") from None
            except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
                raise PseudonymizationError(f"the honest broker failed: {type(exc).__name__}", "retry") from None
            if not pseudonym or len(pseudonym) > 64:
                raise PseudonymizationError("the honest broker answered an empty or over-long pseudonym", "retry")
            store.record_crosswalk(profile.name, [(patient_id, pseudonym)], {})
            return pseudonym
        return broker
    return None
