"""Pure pseudonymization: Dataset + Profile -> Dataset, by DICOM PS3.15 Annex E.

The action of every attribute comes from Table E.1-1 with the profile's options (annex_e), the
keyed values from the profile's secret (keyed). This module walks the dataset and applies them:

C (clean): dates are shifted (Retain Longitudinal Modified Dates), text is kept with every known
identifier of the patient removed (Clean Descriptors / Structured Content), sequences are walked.
Attributes the table does not list are kept (as the standard says) but their text is cleaned of
the patient's identifiers all the same, and walked when they are sequences. Private attributes
are removed unless Retain Safe Private is on and the profile lists them in SafePrivate.
"""
from __future__ import annotations

import dataclasses
import datetime
import io
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from courier.config.profiles import OPTIONS, Profile
from courier.deid.annex_e import TABLE_EDITION, compile_actions
from courier.deid.keyed import date_shift, make_pseudonym, remap_uid

TEXT_VRS = {"LO", "SH", "ST", "LT", "UT", "PN", "UC"}
DUMMY = {"PN": "ANONYMIZED", "DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000D",
         "IS": "0", "DS": "0", "CS": "ANONYMIZED", "AE": "ANONYMIZED"}
NUMERIC_VRS = {"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"}
IDENTIFYING = ("PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthName",
               "PatientMotherBirthName", "AccessionNumber", "PatientBirthDate", "PatientAddress",
               "PatientTelephoneNumbers", "MedicalRecordLocator", "ReferringPhysicianName")


class PseudonymizationError(Exception):
    """`disposition` is what should happen to the instance: "reject" or "quarantine"."""

    def __init__(self, reason: str, disposition: str = "quarantine") -> None:
        self.reason, self.disposition = reason, disposition
        super().__init__(reason)


@dataclass
class Result:
    dataset: Dataset
    patient_id: tuple[str, str]               # (original, pseudonym)
    uids: dict[str, str]                      # original -> new, for the crosswalk
    dates_shifted: int = 0
    dates_removed: int = 0                    # malformed dates found and removed


def method_marker(profile: str) -> str:
    """The DeidentificationMethod value naming the Courier profile that pseudonymized an instance."""
    return f"Courier profile {profile}"[:64]


class Pseudonymizer:
    def __init__(self, profile: Profile,
                 patient_pseudonym: Optional[Callable[[str], str]] = None) -> None:
        """`patient_pseudonym(original PatientID)` replaces the HMAC pseudonym (lookup table,
        honest broker); it raises PseudonymizationError when it has no answer."""
        self.profile = profile
        self.fixed, self.masked, self.private_action = compile_actions(profile.options)
        self.patient_pseudonym = patient_pseudonym
        self.shift_dates = "RetainLongitudinalModifiedDates" in profile.options
        self.full_dates = "RetainLongitudinalFullDates" in profile.options
        self._reviewed: Optional["Pseudonymizer"] = None

    def reviewed(self) -> "Pseudonymizer":
        """The same pseudonymizer with the burned-in check waived: for instances an admin
        released from quarantine after looking at them."""
        if self._reviewed is None:
            self._reviewed = Pseudonymizer(dataclasses.replace(self.profile, burned_in="Pass"), self.patient_pseudonym)
        return self._reviewed

    # -- entry points ------------------------------------------------------------------------
    def pseudonymize_bytes(self, data: bytes) -> tuple[bytes, Result]:
        try:
            dataset = dcmread(io.BytesIO(data))
            dataset.PatientID  # noqa: B018 - force parsing up to the patient module
        except Exception as exc:
            raise PseudonymizationError(f"not a readable DICOM file: {type(exc).__name__}: {exc}", "reject") from None
        result = self.pseudonymize(dataset)
        out = io.BytesIO()
        try:
            result.dataset.save_as(out, enforce_file_format=True)
        except Exception as exc:
            raise PseudonymizationError(f"cannot write the pseudonymized file: {type(exc).__name__}: {exc}") from None
        return out.getvalue(), result

    def pseudonymize(self, ds: Dataset) -> Result:
        self._check_burned_in(ds)
        original_id = str(ds.get("PatientID", "") or "")
        patient_key = original_id or f"{ds.get('PatientName', '')}|{ds.get('PatientBirthDate', '')}"
        if self.patient_pseudonym is not None:
            pseudonym = self.patient_pseudonym(original_id)
        else:
            pseudonym = make_pseudonym(self.profile.secret, patient_key, self.profile.pseudonym)
        state = _WalkState(terms=_identifying_terms(ds), uids={},
                           shift=date_shift(self.profile.secret, patient_key, self.profile.date_shift_days))
        try:
            self._walk(ds, state)
            if hasattr(ds, "file_meta") and "MediaStorageSOPInstanceUID" in ds.file_meta:
                ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", ds.file_meta.MediaStorageSOPInstanceUID)
            self._mark(ds, pseudonym, state)
        except PseudonymizationError:
            raise
        except Exception as exc:           # a malformed element we could not handle: never pass it on
            raise PseudonymizationError(f"cannot pseudonymize: {type(exc).__name__}: {exc}") from None
        return Result(ds, (original_id, pseudonym), state.uids, state.shifted, state.removed)

    # -- the walk ----------------------------------------------------------------------------
    def _action(self, tag: BaseTag) -> Optional[str]:
        if tag in self.profile.remove:
            return "X"
        if tag in self.profile.keep:
            return "K"
        action = self.fixed.get(int(tag))
        if action is None and tag.group >> 8 in (0x50, 0x60) and tag.group % 2 == 0:
            base = (tag.group & 0xFF00)
            action = self.masked.get((base, tag.element)) or self.masked.get((base, -1))
        return action

    def _walk(self, ds: Dataset, state: "_WalkState") -> None:
        for elem in list(ds):
            tag = elem.tag
            if tag.is_private:
                if not self._keep_private(ds, elem):
                    del ds[tag]
                continue
            if tag.element == 0x0000:            # group lengths are recomputed on write
                del ds[tag]
                continue
            if int(tag) in self.profile.replace:
                elem.value = self.profile.replace[int(tag)]
                continue
            action = self._action(tag)
            if action is None:                   # not in the table: kept, but cleaned
                self._unlisted(elem, state)
            else:
                self._apply(ds, elem, action, state)

    def _keep_private(self, ds: Dataset, elem: DataElement) -> bool:
        tag = int(elem.tag)
        if tag in self.profile.keep:                       # an explicit Keep override
            return True
        if elem.tag.element < 0x0100 and any(k >> 16 == elem.tag.group and (k & 0xFFFF) >> 8 == elem.tag.element
                                             for k in self.profile.keep):
            return True                                    # the creator of a kept private element
        if "RetainSafePrivate" not in self.profile.options or not self.profile.safe_private:
            return False
        if elem.tag.element < 0x0100:            # the private creator itself
            return any(group == elem.tag.group and creator == str(elem.value)
                       for group, creator, _ in self.profile.safe_private)
        creator_tag = (elem.tag.group << 16) | (elem.tag.element >> 8)
        creator = ds.get(creator_tag)
        return creator is not None and (elem.tag.group, str(creator.value), elem.tag.element & 0xFF) in self.profile.safe_private

    def _unlisted(self, elem: DataElement, state: "_WalkState") -> None:
        if elem.VR == "SQ":
            for item in elem.value:
                self._walk(item, state)
        elif elem.VR in ("DA", "DT") and self.shift_dates:
            self._shift(elem, state)
        elif elem.VR in TEXT_VRS:
            elem.value = _clean_value(elem.value, state.terms)

    def _apply(self, ds: Dataset, elem: DataElement, action: str, state: "_WalkState") -> None:
        vr = elem.VR
        if action == "X":
            del ds[elem.tag]
        elif action == "Z":
            elem.value = Sequence([]) if vr == "SQ" else (None if vr in NUMERIC_VRS else "")
        elif action == "K":
            if vr == "SQ":
                for item in elem.value:
                    self._walk(item, state)
        elif action == "U":
            self._remap(elem, state)
        elif action == "D":
            self._dummy(elem, state)
        elif action == "C":
            self._clean(elem, state)
        else:
            raise PseudonymizationError(f"unknown action {action!r} for {elem.tag}")

    def _remap(self, elem: DataElement, state: "_WalkState") -> None:
        if elem.VR == "SQ":
            for item in elem.value:
                self._walk(item, state)
            return
        if elem.value in (None, ""):
            return
        values = elem.value if elem.VM > 1 else [elem.value]
        mapped = []
        for uid in values:
            new = state.uids.get(str(uid)) or remap_uid(self.profile.secret, str(uid))
            state.uids[str(uid)] = new
            mapped.append(new)
        elem.value = mapped if elem.VM > 1 else mapped[0]

    def _dummy(self, elem: DataElement, state: "_WalkState") -> None:
        vr = elem.VR
        if vr == "SQ":
            elem.value = Sequence([Dataset()])
        elif vr == "UI":
            self._remap(elem, state)
        elif vr in NUMERIC_VRS:
            elem.value = 0
        elif vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
            elem.value = b"\x00\x00"
        else:
            elem.value = DUMMY.get(vr, "ANONYMIZED")

    def _clean(self, elem: DataElement, state: "_WalkState") -> None:
        vr = elem.VR
        if vr == "SQ":
            for item in elem.value:
                self._walk(item, state)
        elif vr in ("DA", "DT"):
            if self.shift_dates:
                self._shift(elem, state)
        elif vr in TEXT_VRS:
            elem.value = _clean_value(elem.value, state.terms)

    def _shift(self, elem: DataElement, state: "_WalkState") -> None:
        if elem.value in (None, ""):
            return
        values = list(elem.value) if elem.VM > 1 else [elem.value]
        shifted = []
        for value in values:
            new = _shift_date(str(value), elem.VR, state.shift)
            if new is None:
                state.removed += 1
                elem.value = ""
                return
            shifted.append(new)
        state.shifted += 1
        elem.value = shifted if len(shifted) > 1 else shifted[0]

    # -- marking -----------------------------------------------------------------------------
    def _mark(self, ds: Dataset, pseudonym: str, state: "_WalkState") -> None:
        ds.PatientID = pseudonym
        ds.PatientName = pseudonym
        ds.PatientIdentityRemoved = "YES"
        options = sorted(self.profile.options)
        ds.DeidentificationMethod = [method_marker(self.profile.name),
                                     f"PS3.15 E.1-1 {TABLE_EDITION} Basic Profile"] + options
        codes = [("113100", "Basic Application Confidentiality Profile")] + \
                [(OPTIONS[o][1], OPTIONS[o][2]) for o in options]
        items = []
        for value, meaning in codes:
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        ds.LongitudinalTemporalInformationModified = (
            "MODIFIED" if self.shift_dates else "UNMODIFIED" if self.full_dates else "REMOVED")
        for keyword, value in self.profile.trial.items():
            setattr(ds, keyword, value)
        if self.profile.trial:
            ds.ClinicalTrialSubjectID = pseudonym

    def _check_burned_in(self, ds: Dataset) -> None:
        if self.profile.burned_in == "Pass":
            return
        flagged = str(ds.get("BurnedInAnnotation", "")).upper() == "YES"
        suspect = str(ds.get("Modality", "")) in self.profile.burned_in_modalities
        sop_class = str(ds.get("SOPClassUID", ""))
        if flagged or suspect or sop_class in self.profile.burned_in_sop_classes:
            why = ("BurnedInAnnotation is YES" if flagged else f"modality {ds.get('Modality')} may carry burned-in text"
                   if suspect else f"SOP class {sop_class} may carry burned-in text")
            raise PseudonymizationError(f"{why} (profile {self.profile.name}: {self.profile.burned_in})",
                                        self.profile.burned_in.lower())


@dataclass
class _WalkState:
    terms: list[str]
    uids: dict[str, str]
    shift: int
    shifted: int = 0
    removed: int = 0


def _identifying_terms(ds: Dataset) -> list[str]:
    """The patient's identifiers as they may reappear in free text, longest first."""
    terms: set[str] = set()
    for keyword in IDENTIFYING:
        value = ds.get(keyword)
        if value in (None, ""):
            continue
        for single in value if isinstance(value, (list, MultiValue)) else [value]:
            text = str(single)
            parts = [text] + re.split(r"[\^=\s,]+", text)
            terms.update(p.strip() for p in parts if len(p.strip()) >= 3)
    return sorted(terms, key=len, reverse=True)


def _clean_text(text: str, terms: list[str]) -> str:
    for term in terms:
        if term.lower() in text.lower():
            text = re.sub(re.escape(term), "X" * min(len(term), 8), text, flags=re.IGNORECASE)
    return text


def _clean_value(value: Any, terms: list[str]) -> Any:
    if value in (None, ""):
        return value
    if isinstance(value, (list, MultiValue)):
        return [_clean_text(str(v), terms) for v in value]
    return _clean_text(str(value), terms)


def _shift_date(value: str, vr: str, days: int) -> Optional[str]:
    """Shift a DA (YYYYMMDD) or the date part of a DT by `days`; None if malformed."""
    text = value.strip()
    if len(text) < 8 or not text[:8].isdigit():
        return None
    try:
        date = datetime.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None
    if vr == "DA" and len(text) != 8:
        return None
    try:
        moved = date + datetime.timedelta(days=days)
    except OverflowError:
        return None
    return moved.strftime("%Y%m%d") + text[8:]
