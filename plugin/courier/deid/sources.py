"""Where a profile's patient pseudonyms come from, besides the keyed hash.

Lookup: a crosswalk table (PatientID -> pseudonym) loaded from a CSV file at start-up and/or
uploaded through the REST API; a patient missing from it is quarantined (CTP's @lookup does the
same), and the task can be retried once the table has the patient.

Broker: an honest-broker HTTP service, called once per patient (the answer is kept in the
crosswalk), with a timeout; a broker that does not answer fails the attempt, which is retried.
"""
from __future__ import annotations

from typing import Callable, Optional

import requests

from courier.config.profiles import Profile
from courier.deid.pseudonymizer import PseudonymizationError
from courier.store.store import Store


def patient_source(profile: Profile, store: Store) -> Optional[Callable[[str], str]]:
    """The callable Pseudonymizer uses for PatientID -> pseudonym, or None for the keyed hash."""
    if profile.source == "Lookup":
        def lookup(patient_id: str) -> str:
            found = store.crosswalk.lookup_pseudonym(profile.name, patient_id)
            if found is None:
                raise PseudonymizationError(f"PatientID not in the lookup table of profile {profile.name}",
                                            "quarantine")
            return found
        return lookup
    if profile.source == "Broker":
        def broker(patient_id: str) -> str:
            known = store.crosswalk.pseudonym_of(profile.name, patient_id)
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
            store.crosswalk.record(profile.name, [(patient_id, pseudonym)], {})
            return pseudonym
        return broker
    return None
