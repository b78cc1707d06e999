"""Pure pseudonymization: Dataset + Profile -> Dataset, by DICOM PS3.15 Annex E.

The action of every attribute comes from Table E.1-1 with the profile's options (annex_e), the
keyed values from the profile's secret (keyed). This module walks the dataset and applies them:

C (clean): dates are shifted (Retain Longitudinal Modified Dates), text is kept with every value
this instance's pseudonymization removes or replaces cut out (E.3.5; Clean Descriptors /
Structured Content), sequences are walked. Attributes the table does not list are kept (as the
standard says) but their text is cleaned all the same, and walked when they are sequences.
Private attributes are removed unless Retain Safe Private is on and the profile lists them in
SafePrivate.

One walk per instance: what an action removes or replaces (at any depth, also inside a removed
sequence: what the table removes there) is collected as it goes, the texts to clean are put
aside, and once the walk is over the matcher is built (deid.text) and cleans them all. Then the
instance is marked (deid.marker: a keyed MAC a sender cannot forge) and gets a new preamble and
File Meta Information describing Courier (deid.file_meta).
"""
from __future__ import annotations

import dataclasses
import datetime
import io
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Union

from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID

from courier.config.profiles import OPTIONS, Profile
from courier.deid import marker, pydicom_settings
from courier.deid.annex_e import TABLE_EDITION, compile_actions
from courier.deid.file_meta import (
    DEFAULT_AE,
    PREAMBLE,
    check_ae_title,
    new_file_meta,
    received_ae_titles,
    transfer_syntax,
    write_file,
)
from courier.deid.keyed import date_shift, make_pseudonym, remap_uid
from courier.deid.pixel_tail import Parts, joined, read_split
from courier.deid.text import Identifiers

pydicom_settings.quiet()        # wherever Courier pseudonymizes: no value quoted into a log

TEXT_VRS = {"LO", "SH", "ST", "LT", "UT", "PN", "UC"}
DUMMY = {"PN": "ANONYMIZED", "DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000D",
         "IS": "0", "DS": "0", "CS": "ANONYMIZED", "AE": "ANONYMIZED"}


def dictionary_vr(tag: BaseTag) -> Optional[str]:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


NUMERIC_VRS = {"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"}
REMOVING = frozenset("XZDU")             # actions whose original value is gone from the output
PATIENT_ID, PATIENT_NAME, SOURCE_AE = 0x00100020, 0x00100010, 0x00020016


class PseudonymizationError(Exception):
    """`disposition` is what should happen to the instance: "reject" or "quarantine"."""

    def __init__(self, reason: str, disposition: str = "quarantine") -> None:
        self.reason, self.disposition = reason, disposition
        super().__init__(reason)


@dataclass
class Result:
    dataset: Dataset
    patient_id: tuple[str, str]               # (original PatientID, or the key used without one; pseudonym)
    uids: dict[str, str]                      # original -> new, for the crosswalk
    dates_shifted: int = 0
    dates_removed: int = 0                    # malformed dates found and removed


def method_marker(profile: str) -> str:
    """The DeidentificationMethod value naming the Courier profile that pseudonymized an instance
    (a description: what proves it is the keyed mark, see made_this)."""
    return f"Courier profile {profile}"[:64]


PIXEL_DATA_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)      # Pixel Data, Float and Double Float Pixel Data


def read_instance_split(data: bytes) -> tuple[Dataset, Optional[memoryview]]:
    """A received DICOM file parsed without its Pixel Data, which is set aside as it came (or
    parsed whole, None, when it cannot be: deid.pixel_tail); PseudonymizationError ("reject")
    saying why it is not a DICOM file."""
    return _readable(lambda: read_split(data))


def read_instance_whole(data: bytes) -> tuple[Dataset, None]:
    """A received DICOM file parsed with its Pixel Data (as read_instance_split: never set aside)."""
    return _readable(lambda: dcmread(io.BytesIO(data))), None


def _readable(read: Callable[[], Any]) -> Any:
    try:
        found = read()
    except Exception as exc:
        raise PseudonymizationError(f"not a readable DICOM file: {type(exc).__name__}: {exc}", "reject") from None
    dataset = found[0] if isinstance(found, tuple) else found
    if len(dataset) == 0:
        raise PseudonymizationError("not a readable DICOM file: it has no data element", "reject")
    return found


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip(" \x00")


class Pseudonymizer:
    def __init__(self, profile: Profile, patient_pseudonym: Optional[Callable[[str], str]] = None,
                 source_ae: str = DEFAULT_AE) -> None:
        """`patient_pseudonym(original PatientID)` replaces the HMAC pseudonym (lookup table,
        honest broker); it raises PseudonymizationError when it has no answer. `source_ae` is
        the AE title the new File Meta Information names as the source (ValueError if invalid)."""
        self.profile = profile
        self.fixed, self.masked, self.private_action = compile_actions(profile.options)
        self.patient_pseudonym = patient_pseudonym
        self.source_ae = check_ae_title(source_ae)
        self.shift_dates = "RetainLongitudinalModifiedDates" in profile.options
        self.full_dates = "RetainLongitudinalFullDates" in profile.options
        self.keeps_safe_private = "RetainSafePrivate" in profile.options and bool(profile.safe_private)
        self._reviewed: Optional["Pseudonymizer"] = None
        self._constants: dict[bool, list] = {}     # implicit VR? -> the profile's marking, encoded once
        # A profile that removes or replaces the Pixel Data must see it: never set aside then.
        self.touches_pixels = any(tag in profile.replace or self._action(BaseTag(tag)) not in (None, "K")
                                  for tag in PIXEL_DATA_TAGS)

    def read(self, data: bytes) -> tuple[Dataset, Optional[memoryview]]:
        """A received file for pseudonymize_split: its Pixel Data set aside as it came, unless this
        profile removes or replaces it."""
        return read_instance_whole(data) if self.touches_pixels else read_instance_split(data)

    def reviewed(self) -> "Pseudonymizer":
        """The same pseudonymizer with the burned-in check waived: for instances an admin
        released from quarantine after looking at them."""
        if self._reviewed is None:
            self._reviewed = Pseudonymizer(dataclasses.replace(self.profile, burned_in="Pass"), self.patient_pseudonym,
                                           self.source_ae)
        return self._reviewed

    def made_this(self, source: Union[Dataset, Mapping[str, Any]]) -> bool:
        """Did this profile pseudonymize it? Only its keyed mark says so (deid.marker): a
        DeidentificationMethod text anybody can write is not enough. `source`: a Dataset, or
        Orthanc's tags with the mark element under "7fdf,1001"."""
        return marker.verify(source, self.profile.secret, self.profile.name)

    # -- entry points ------------------------------------------------------------------------
    def pseudonymize_bytes(self, data: bytes, before: Optional[Callable[[Dataset], None]] = None) -> tuple[bytes, Result]:
        """A DICOM file's bytes -> its pseudonymized file's bytes. The Pixel Data is set aside
        while the attributes are rewritten and appended as it came (deid.pixel_tail); the
        Result's dataset then has no Pixel Data (unless the profile removes or replaces it: then the
        whole file is read and written). `before(ds)` changes the instance first (a Modify)."""
        parts, result = self.pseudonymize_parts(data, before)
        return joined(parts), result

    def pseudonymize_parts(self, data: bytes, before: Optional[Callable[[Dataset], None]] = None
                           ) -> tuple[Parts, Result]:
        """As pseudonymize_bytes, the file in pieces that follow each other: the new header, then
        the Pixel Data as it came (a view of `data`, not a copy), so that a sender can write them
        where they go without joining them (joining a CT slice took a fresh 0.5 MB each time)."""
        ds, pixels = self.read(data)
        if before is not None:
            before(ds)
        out, result = self.pseudonymize_to_bytes(ds)
        return ((out, pixels) if pixels else (out,)), result

    def pseudonymize_split(self, ds: Dataset, pixels: Optional[memoryview]) -> tuple[bytes, Result]:
        """What `read` gave -> the pseudonymized file's bytes (the Pixel Data appended as it came)
        and the Result."""
        out, result = self.pseudonymize_to_bytes(ds)
        return joined((out, pixels) if pixels else (out,)), result

    def pseudonymize_to_bytes(self, ds: Dataset) -> tuple[bytes, Result]:
        """A parsed instance -> the bytes of its pseudonymized DICOM file (and the Result)."""
        received = getattr(ds, "file_meta", None)
        missing = []
        if not _text(ds.get("SOPInstanceUID")):
            missing.append("SOPInstanceUID (0008,0018)")
        if not _text(ds.get("SOPClassUID")) and not (received is not None and received.get("MediaStorageSOPClassUID")):
            missing.append("SOPClassUID (0008,0016)")
        if missing:
            raise PseudonymizationError(f"not a DICOM instance that can be written to a file: no {' and no '.join(missing)}",
                                        "reject")
        result = self.pseudonymize(ds)
        try:
            return write_file(result.dataset), result
        except Exception as exc:
            raise PseudonymizationError(f"cannot write the pseudonymized file: {type(exc).__name__}: {exc}") from None

    def pseudonymize(self, ds: Dataset) -> Result:
        self._check_burned_in(ds)
        original_id = str(ds.get("PatientID") or "")
        patient_key = self._patient_key(ds, original_id)
        if self.patient_pseudonym is not None:
            pseudonym = self.patient_pseudonym(original_id)
        else:
            pseudonym = make_pseudonym(self.profile.secret, patient_key, self.profile.pseudonym)
        received = getattr(ds, "file_meta", None)
        state = _WalkState(removed=Identifiers(), uids={},
                           shift=date_shift(self.profile.secret, patient_key, self.profile.date_shift_days))
        try:
            state.removed.add(PATIENT_ID, "LO", ds.get("PatientID"))      # always replaced by the pseudonym
            state.removed.add(PATIENT_NAME, "PN", ds.get("PatientName"))
            for title in received_ae_titles(received):                   # the received header goes
                state.removed.add(SOURCE_AE, "AE", title)
            self._walk(ds, state)
            if state.pending:
                cleaner = state.removed.cleaner()                        # once per instance
                for elem in state.pending:
                    elem.value = cleaner.clean_value(elem.value)
            self._mark(ds, pseudonym, state)
            ds.file_meta = new_file_meta(ds, received, self.source_ae)
            ds.preamble = PREAMBLE
        except PseudonymizationError:
            raise
        except Exception as exc:           # a malformed element we could not handle: never pass it on
            raise PseudonymizationError(f"cannot pseudonymize: {type(exc).__name__}: {exc}") from None
        return Result(ds, (patient_key, pseudonym), state.uids, state.shifted, state.removed_dates)

    def _patient_key(self, ds: Dataset, original_id: str) -> str:
        """What the patient's pseudonym and date shift are keyed on: the PatientID; without one,
        the name and birth date; without those, the study (its patient is not known)."""
        if _text(original_id):
            return original_id
        if self.patient_pseudonym is not None:
            raise PseudonymizationError(f"no PatientID (0010,0020): the pseudonyms of profile {self.profile.name} are "
                                        "looked up by PatientID (lookup table, honest broker or batch file)", "quarantine")
        name, birth = _text(ds.get("PatientName")), _text(ds.get("PatientBirthDate"))
        if name or birth:
            return f"{name}|{birth}"
        study = _text(ds.get("StudyInstanceUID"))
        if study:
            return f"study:{study}"
        raise PseudonymizationError("no PatientID (0010,0020), PatientName, PatientBirthDate or StudyInstanceUID: "
                                    "nothing to key the patient's pseudonym on", "reject")

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

    def _removes(self, tag: BaseTag, vr: str) -> bool:
        """Does the profile remove or replace this (public) attribute's value?"""
        if tag in self.profile.remove or int(tag) in self.profile.replace:
            return True
        action = self._action(tag)
        return action in REMOVING or (self.shift_dates and vr in ("DA", "DT") and action in (None, "C"))

    def _collect(self, elem: DataElement, state: "_WalkState") -> None:
        """`elem` goes (or its value is replaced): remember its value, and inside a sequence the
        values of what the table removes there, at any depth."""
        if elem.VR != "SQ":
            state.removed.add(int(elem.tag), elem.VR, elem.value)
            return
        for item in elem.value or ():
            for sub in item:
                if sub.VR == "SQ":
                    self._collect(sub, state)
                elif sub.tag.is_private:
                    if sub.VR == "PN":
                        state.removed.add(int(sub.tag), "PN", sub.value)
                elif self._removes(sub.tag, sub.VR):
                    state.removed.add(int(sub.tag), sub.VR, sub.value)

    def _stays_raw(self, tag: BaseTag, raw: Any, action: Optional[str]) -> bool:
        """A public element the profile keeps as it is (`K`; or, not in the table or to clean (`C`),
        neither text, a date to shift nor a sequence: cleaning leaves anything else as it is, see
        _clean): left undecoded, so that it is written back byte for byte without being parsed and
        re-encoded (most of a CT header's technical attributes; its times)."""
        if not raw.is_raw or action not in (None, "K", "C"):
            return False
        vr = raw.VR or dictionary_vr(tag)
        if vr is None or len(vr) != 2 or vr in ("SQ", "UN"):
            return False
        return action == "K" or (vr not in TEXT_VRS and not (vr in ("DA", "DT") and self.shift_dates))

    def _walk(self, ds: Dataset, state: "_WalkState") -> None:
        dropped = []                             # private elements go once all were judged (creators first)
        for tag in list(ds.keys()):
            if tag.is_private:
                if self._keep_private(ds, tag):
                    _ = ds[tag]                  # decoded as it always was, so written by pydicom
                    continue
                # A person's name, whoever's, is cut from text too. An element that goes is decoded
                # only if it may be one: an explicit VR other than PN or UN stays what it was read as
                # (pydicom looks a VR up only when the file gives none, or UN), so there is nothing
                # to decode in the many private elements of a vendor's header that the profile drops.
                elem = ds.get_item(tag)
                if not elem.is_raw or elem.VR in (None, "PN", "UN"):
                    elem = ds[tag]
                    if elem.VR == "PN":
                        state.removed.add(int(tag), "PN", elem.value)
                dropped.append(tag)
                continue
            if tag.element == 0x0000 or tag.group == 0x0002:   # group lengths are recomputed on write;
                del ds[tag]                                     # file meta belongs in the (new) header
                continue
            if int(tag) in self.profile.replace:
                elem = ds[tag]
                state.removed.add(int(tag), elem.VR, elem.value)
                elem.value = self.profile.replace[int(tag)]
                continue
            action = self._action(tag)
            if self._stays_raw(tag, ds.get_item(tag), action):
                continue
            elem = ds[tag]
            if action is None:                   # not in the table: kept, but cleaned
                self._unlisted(elem, state)
            else:
                self._apply(ds, elem, action, state)
        for tag in dropped:
            del ds[tag]

    def _keep_private(self, ds: Dataset, private: BaseTag) -> bool:
        """Does the private element `private` of `ds` stay? Only a private creator's value is read
        (its own, or its block's)."""
        tag, group, element = int(private), private.group, private.element
        if not self.keeps_safe_private and tag not in self.profile.keep and not self._creates_a_kept(group, element):
            return False                         # nothing could keep it: whose it is need not be read
        if 0x10 <= element <= 0xFF:              # a private creator: its value names the block
            owner: Optional[str] = marker.text(ds[private].value)
        elif element >= 0x1000:
            creator = ds.get((group << 16) | (element >> 8))
            owner = None if creator is None else marker.text(creator.value)
        else:
            owner = None
        if marker.is_courier_block(group, owner):
            return False                         # Courier's own block: only Courier writes it, never kept
        if tag in self.profile.keep:                       # an explicit Keep override
            return True
        if self._creates_a_kept(group, element):
            return True                                    # the creator of a kept private element
        if "RetainSafePrivate" not in self.profile.options or not self.profile.safe_private or owner is None:
            return False
        if element < 0x0100:                     # the private creator itself
            return any(g == group and c == owner for g, c, _ in self.profile.safe_private)
        return (group, owner, element & 0xFF) in self.profile.safe_private

    def _creates_a_kept(self, group: int, element: int) -> bool:
        """Is (group, element) the private creator of an element the profile keeps?"""
        return element < 0x0100 and any(k >> 16 == group and (k & 0xFFFF) >> 8 == element for k in self.profile.keep)

    def _unlisted(self, elem: DataElement, state: "_WalkState") -> None:
        if elem.VR == "SQ":
            for item in elem.value:
                self._walk(item, state)
        elif elem.VR in ("DA", "DT") and self.shift_dates:
            self._shift(elem, state)
        elif elem.VR in TEXT_VRS:
            state.pending.append(elem)

    def _apply(self, ds: Dataset, elem: DataElement, action: str, state: "_WalkState") -> None:
        vr = elem.VR
        if action in ("X", "Z", "D") or (action == "U" and vr != "SQ"):
            self._collect(elem, state)              # its value leaves the instance: cut it from text too
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
            state.pending.append(elem)

    def _shift(self, elem: DataElement, state: "_WalkState") -> None:
        if elem.value in (None, ""):
            return
        state.removed.add(int(elem.tag), elem.VR, elem.value)       # the true date must not stay in text
        values = list(elem.value) if elem.VM > 1 else [elem.value]
        shifted = []
        for value in values:
            new = _shift_date(str(value), elem.VR, state.shift)
            if new is None:
                state.removed_dates += 1
                elem.value = ""
                return
            shifted.append(new)
        state.shifted += 1
        elem.value = shifted if len(shifted) > 1 else shifted[0]

    # -- marking -----------------------------------------------------------------------------
    def _mark(self, ds: Dataset, pseudonym: str, state: "_WalkState") -> None:
        ds.PatientID = pseudonym
        ds.PatientName = pseudonym
        syntax = self._reusable_encoding(ds)
        if syntax is not None:
            constants = self._constants.get(syntax.is_implicit_VR)
            if constants is None:
                constants = self._constants[syntax.is_implicit_VR] = self._encoded_marking(syntax.is_implicit_VR)
            for raw in constants:           # the same for every instance of the profile: encoded once,
                ds[raw.tag] = raw           # written back byte for byte
        else:
            self._marking(ds)
        if self.profile.trial:
            ds.ClinicalTrialSubjectID = pseudonym
        if ds.get("SOPInstanceUID"):
            marker.write(ds, self.profile.secret, self.profile.name)

    @staticmethod
    def _reusable_encoding(ds: Dataset) -> Optional[UID]:
        """The transfer syntax the instance is written in, if pre-encoded elements fit it."""
        syntax = UID(transfer_syntax(ds, getattr(ds, "file_meta", None)))
        return syntax if syntax.is_transfer_syntax and syntax.is_little_endian and not syntax.is_deflated else None

    def _encoded_marking(self, implicit: bool) -> list:
        block = Dataset()
        self._marking(block)
        fp = DicomBytesIO()
        fp.is_implicit_VR, fp.is_little_endian = implicit, True
        write_dataset(fp, block)
        encoded = read_dataset(io.BytesIO(fp.getvalue()), implicit, True)
        return [encoded.get_item(tag) for tag in encoded.keys()]

    def _marking(self, ds: Dataset) -> None:
        """What says how the instance was de-identified, the same for every instance of the profile."""
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
    removed: Identifiers                      # values removed or replaced, to cut from text
    uids: dict[str, str]
    shift: int
    pending: list = dataclasses.field(default_factory=list)   # text elements to clean after the walk
    shifted: int = 0
    removed_dates: int = 0


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
