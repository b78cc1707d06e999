"""Keyed, reproducible values: HMAC-SHA256 with the profile's secret. The same input and secret give
the same pseudonym, UID and date shift in every process and release; without the secret nobody
can recompute them from a known PatientID (CTP's and dcm4che's unkeyed hashes can)."""
from __future__ import annotations

import hashlib
import hmac

from courier.config.profiles import PseudonymFormat


def keyed_digest(secret: bytes, purpose: str, value: str) -> bytes:
    return hmac.new(secret, f"{purpose}:{value}".encode("utf-8"), hashlib.sha256).digest()


def make_pseudonym(secret: bytes, patient_key: str, fmt: PseudonymFormat) -> str:
    number = int.from_bytes(keyed_digest(secret, "patient", patient_key), "big")
    chars = []
    for _ in range(fmt.length):
        number, index = divmod(number, len(fmt.alphabet))
        chars.append(fmt.alphabet[index])
    return fmt.prefix + "".join(chars)


def remap_uid(secret: bytes, uid: str) -> str:
    return "2.25." + str(int.from_bytes(keyed_digest(secret, "uid", uid.strip())[:16], "big"))


def date_shift(secret: bytes, patient_key: str, days: tuple[int, int]) -> int:
    low, high = days
    return low + int.from_bytes(keyed_digest(secret, "date", patient_key)[:8], "big") % (high - low + 1)
