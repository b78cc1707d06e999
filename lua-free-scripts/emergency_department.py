"""Route condition: studies from the emergency department's scanners, or flagged urgent.

Edit ED_SCANNERS to your calling AE titles. `context.calling_aet` is the AE that sent the
instance to Courier (DICOM metadata RemoteAET in Orthanc).
"""
from typing import Any, Mapping

ED_SCANNERS = {"ED_CT1", "ED_CT2", "ED_XR1"}
URGENT_WORDS = ("TRAUMA", "URGENT", "STAT")


def match(tags: Mapping[str, Any], context: Any) -> bool:
    if context.calling_aet in ED_SCANNERS:
        return True
    text = " ".join(str(tags.get(k) or "") for k in ("StudyDescription", "RequestedProcedureDescription")).upper()
    return any(word in text for word in URGENT_WORDS)
