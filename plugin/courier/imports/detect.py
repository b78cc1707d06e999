"""Pure: is a file DICOM (by content, not by name), and what identifies the instance in it.

A DICOM file has the "DICM" magic at offset 128 (after the preamble); some writers leave out
preamble and file meta, so a file without the magic counts as DICOM when pydicom can read a
dataset with a SOP Instance UID from it. The answer says why not, in words for a `.reason` file.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from courier.store.records import orthanc_id

MAGIC_OFFSET, MAGIC = 128, b"DICM"
KEYS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


@dataclass(frozen=True)
class Detected:
    """What a file is: DICOM with its identifiers, or not (with the reason)."""
    dicom: bool
    reason: str = ""                      # "not DICOM: ..." or "unreadable: ..."
    patient_id: str = ""
    study_uid: str = ""
    series_uid: str = ""
    sop_uid: str = ""
    modality: str = ""

    @property
    def instance_id(self) -> str:
        """Orthanc's ID of the instance: SHA-1 of PatientID|StudyUID|SeriesUID|SOPInstanceUID."""
        return orthanc_id(self.patient_id, self.study_uid, self.series_uid, self.sop_uid)

    @property
    def study_id(self) -> str:
        return orthanc_id(self.patient_id, self.study_uid)

    @property
    def series_id(self) -> str:
        return orthanc_id(self.patient_id, self.study_uid, self.series_uid)


def has_magic(data: bytes) -> bool:
    return data[MAGIC_OFFSET:MAGIC_OFFSET + 4] == MAGIC


def detect(data: bytes) -> Detected:
    """DICOM or not, from the bytes of a file."""
    magic = has_magic(data)
    if not magic and len(data) < 8:
        return Detected(False, "not DICOM: too short")
    try:
        ds = dcmread(io.BytesIO(data), stop_before_pixels=True, force=not magic)
        values = {key: str(getattr(ds, key, "") or "") for key in KEYS}
        modality = str(getattr(ds, "Modality", "") or "")
    except InvalidDicomError as exc:
        return Detected(False, f"not DICOM: {exc}")
    except Exception as exc:  # noqa: BLE001 - any parse failure of a file that claims to be DICOM
        return Detected(False, f"{'unreadable' if magic else 'not DICOM'}: {type(exc).__name__}: {exc}"[:300])
    if not values["SOPInstanceUID"]:
        return Detected(False, "unreadable: no SOP Instance UID" if magic else "not DICOM: no DICOM dataset found")
    if not (values["StudyInstanceUID"] and values["SeriesInstanceUID"]):
        return Detected(False, "unreadable: no Study or Series Instance UID")
    return Detected(True, "", values["PatientID"], values["StudyInstanceUID"], values["SeriesInstanceUID"],
                    values["SOPInstanceUID"], modality)

