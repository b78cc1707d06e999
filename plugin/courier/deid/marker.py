"""Courier's mark on its own output, which a sender cannot forge.

DeidentificationMethod says which Courier profile pseudonymized an instance, but anybody can write
that text. What proves it is a keyed MAC: HMAC-SHA256 with the profile's secret of the profile
name, the SOP Instance UID and the PatientID (the pseudonym), written in Courier's private block:

    (7FDF,0010) LO  "COURIER 1.0"       private creator, always in the first slot
    (7FDF,1001) LO  32 hex digits       the MAC (128 bits)

The whole group 7FDF is Courier's (the last private group before Pixel Data, used by no vendor
dictionary): the pseudonymizer removes whatever a received instance has there, or anywhere under
the "COURIER 1.0" creator, and a profile can neither keep nor list it (config.profiles), so the
only mark an output carries is the one Courier computed for it. Without the secret the MAC of a
new UID or PatientID cannot be made, and a mark copied from another instance does not fit.

`verify` reads a pydicom Dataset, or a mapping in Orthanc's short tag format ("7fdf,1001", as
/instances/{id}/content/7fdf-1001 gives it) with the SOPInstanceUID and PatientID of Orthanc's
tags. Orthanc's simplified tags alone cannot carry it (they name every unknown private element
"Unknown Tag & Data", and show none in an Implicit VR instance): without the key, no mark.
"""
from __future__ import annotations

import hmac
from typing import Any, Mapping, Union

from pydicom.dataset import Dataset

from courier.config.profiles import COURIER_PRIVATE_CREATOR, COURIER_PRIVATE_GROUP
from courier.deid.keyed import keyed_digest

CREATOR_TAG = (COURIER_PRIVATE_GROUP << 16) | 0x0010
MAC_TAG = (COURIER_PRIVATE_GROUP << 16) | 0x1001
MAC_KEY = f"{COURIER_PRIVATE_GROUP:04x},1001"          # Orthanc's short tag format
CREATOR_KEY = f"{COURIER_PRIVATE_GROUP:04x},0010"


def text(value: Any) -> str:
    """A short string value as read: str, or bytes when read as UN; without padding."""
    if isinstance(value, (bytes, bytearray)):            # read as UN (Implicit VR: no dictionary knows it)
        value = bytes(value).decode("ascii", "replace")
    return "" if value is None else str(value).strip(" \x00")


def mac(secret: bytes, profile: str, sop_instance_uid: str, patient_id: str) -> str:
    message = "\\".join((profile, text(sop_instance_uid), text(patient_id)))
    return keyed_digest(secret, "courier-mark", message)[:16].hex()


def write(ds: Dataset, secret: bytes, profile: str) -> None:
    """Mark `ds` (its SOP Instance UID and PatientID final) as made by `profile`."""
    ds.add_new(CREATOR_TAG, "LO", COURIER_PRIVATE_CREATOR)
    ds.add_new(MAC_TAG, "LO", mac(secret, profile, ds.get("SOPInstanceUID", ""), ds.get("PatientID", "")))


def verify(source: Union[Dataset, Mapping[str, Any]], secret: bytes, profile: str) -> bool:
    """True only if `source` carries the mark `profile` (with its secret) wrote for it."""
    if isinstance(source, Dataset):
        creator = source.get(CREATOR_TAG)
        found = source.get(MAC_TAG)
        if creator is None or found is None or text(creator.value) != COURIER_PRIVATE_CREATOR:
            return False
        found, uid, patient = found.value, source.get("SOPInstanceUID", ""), source.get("PatientID", "")
    else:
        if CREATOR_KEY in source and text(source[CREATOR_KEY]) != COURIER_PRIVATE_CREATOR:
            return False
        found, uid, patient = source.get(MAC_KEY), source.get("SOPInstanceUID", ""), source.get("PatientID", "")
    if not text(uid) or not text(found):
        return False
    return hmac.compare_digest(text(found).encode("utf-8"), mac(secret, profile, uid, patient).encode("ascii"))


def is_courier_block(group: int, creator: Any) -> bool:
    """Elements a received instance may not bring into an output: Courier's group, or its creator."""
    return group == COURIER_PRIVATE_GROUP or text(creator) == COURIER_PRIVATE_CREATOR
