"""Pseudonymization against Table E.1-1: PHI planted everywhere, nothing survives but what an
option keeps; keyed, reproducible pseudonyms, UIDs and date shifts."""
import io
import json
import subprocess
import sys
from pathlib import Path

import pydicom
import pydicom.data
import pytest
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from courier.config.profiles import OPTIONS, Profile, PseudonymFormat
from courier.deid.annex_e import TABLE, compile_actions
from courier.deid.keyed import make_pseudonym, remap_uid
from courier.deid.pseudonymizer import PseudonymizationError, Pseudonymizer
from factory import make_instance

SECRET = b"test-secret-not-for-production"
PLANTABLE = {"LO", "SH", "ST", "LT", "UT", "PN", "UC", "CS", "AE", "DA", "DT", "UI"}
PATIENT_NAME = "Smithfield^Johanna"
FREE_TEXT = 0x00204000        # ImageComments carries a sentence naming the patient


def marker(tag: int, vr: str) -> str:
    if vr == "DA":
        return "19871231"
    if vr == "DT":
        return "19871231101010"
    if vr == "UI":
        return f"1.2.999.{tag}"
    return f"PHI{tag:08X}"


def plantable_entries():
    for entry in TABLE:
        digits = entry["tag"][1:5] + entry["tag"][6:10]
        if not all(c in "0123456789ABCDEFabcdef" for c in digits):
            continue
        tag = int(digits, 16)
        if tag >> 16 in (0x0000, 0x0002) or tag == FREE_TEXT:   # command set, file meta; free text below
            continue
        vr = dictionary_VR(tag)
        if vr in PLANTABLE or vr == "SQ":
            yield tag, vr


def planted_dataset() -> Dataset:
    """A CT with a PHI marker in every plantable attribute of the table, also two levels deep in
    sequences (table and non-table ones) and in private elements."""
    ds = make_instance(patient_name=PATIENT_NAME, patient_id="MRN0042")
    leaf = Dataset()
    for tag, vr in plantable_entries():
        if vr == "SQ":
            continue
        ds.add_new(tag, vr, marker(tag, vr))
        leaf.add_new(tag, vr, marker(tag, vr))
    ds.PatientName, ds.PatientID = PATIENT_NAME, "MRN0042"
    leaf.PatientName = PATIENT_NAME
    middle = Dataset()
    middle.ReferencedImageSequence = Sequence([leaf])             # not in the table: walked
    middle.add_new(0x00400555, "SQ", Sequence([leaf]))              # Acquisition Context Sequence: in the table
    ds.ReferencedStudySequence = Sequence([middle])                # two levels deep
    ds.add_new(0x00090010, "LO", "ACME")                           # private creator of block (0009,10xx)
    ds.add_new(0x00091001, "LO", "PHI_PRIVATE_TEXT")
    private_item = Dataset()
    private_item.PatientName = PATIENT_NAME
    ds.add_new(0x00091002, "SQ", Sequence([private_item]))
    ds.ImageComments = "Johanna Smithfield, MRN0042, follow-up"      # free text naming the patient
    return ds


def written(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def profile(*options, **kwargs) -> Profile:
    return Profile("trial", SECRET, frozenset(options), **kwargs)


def run(*options, **kwargs):
    return Pseudonymizer(profile(*options, burned_in="Pass", **kwargs)).pseudonymize(planted_dataset())


def survivors(data: bytes) -> set[str]:
    found = set()
    for tag, vr in plantable_entries():
        if vr != "SQ" and marker(tag, vr).encode() in data and vr not in ("DA", "DT"):
            found.add(keyword_for_tag(tag) or hex(tag))
    return found


def test_basic_profile_leaves_no_phi_anywhere():
    result = run()
    data = written(result.dataset)
    assert survivors(data) == set()
    for text in (b"PHI", b"Smithfield", b"Johanna", b"MRN0042", b"19871231", b"1.2.999.", b"ACME"):
        assert text not in data, text
    assert result.dataset.PatientIdentityRemoved == "YES"
    assert result.dataset.LongitudinalTemporalInformationModified == "REMOVED"


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_each_option_keeps_exactly_what_the_table_says(option):
    extra = {"safe_private": frozenset({(0x0009, "ACME", 0x01)})} if option == "RetainSafePrivate" else {}
    data = written(run(option, **extra).dataset)
    fixed, _, _ = compile_actions(frozenset({option}))
    kept = {keyword_for_tag(tag) or hex(tag) for tag, vr in plantable_entries()
            if vr not in ("SQ", "DA", "DT") and fixed.get(tag) in ("K", "C")}
    assert survivors(data) == kept
    for identifier in (b"Smithfield", b"Johanna", b"MRN0042"):
        assert identifier not in data, (option, identifier)
    assert (b"PHI_PRIVATE_TEXT" in data) == (option == "RetainSafePrivate")
    comments = pydicom.dcmread(io.BytesIO(data)).get("ImageComments")
    if option == "CleanDescriptors":       # kept, with the patient's identifiers cleaned out
        assert comments.endswith(", follow-up") and "Johanna" not in comments
    else:
        assert comments is None
    codes = [item.CodeValue for item in pydicom.dcmread(io.BytesIO(data)).DeidentificationMethodCodeSequence]
    assert codes == ["113100", OPTIONS[option][1]]


def test_retain_uids_and_full_dates():
    uids = written(run("RetainUIDs").dataset)
    assert f"1.2.999.{0x0020000D}".encode() in uids
    full = run("RetainLongitudinalFullDates")
    assert b"19871231" in written(full.dataset)
    assert full.dataset.LongitudinalTemporalInformationModified == "UNMODIFIED"


def test_modified_dates_shift_every_date_of_a_patient_by_one_offset():
    import datetime
    assert run("RetainLongitudinalModifiedDates").dates_shifted > 100     # every planted date
    pseudo = Pseudonymizer(profile("RetainLongitudinalModifiedDates", burned_in="Pass"))
    first = pseudo.pseudonymize(make_instance(patient_id="MRN0042", StudyDate="20240115", PatientBirthDate="19700101"))
    second = pseudo.pseudonymize(make_instance(patient_id="MRN0042", StudyDate="20240125",
                                               AcquisitionDateTime="20240125101500.5"))
    def day(text):
        return datetime.datetime.strptime(text[:8], "%Y%m%d")
    assert first.dataset.LongitudinalTemporalInformationModified == "MODIFIED"
    assert first.dataset.StudyDate != "20240115"
    assert (day(second.dataset.StudyDate) - day(first.dataset.StudyDate)).days == 10       # interval kept
    assert second.dataset.AcquisitionDateTime[8:] == "101500.5"                          # time of day kept
    shift = (day(first.dataset.StudyDate) - day("20240115")).days
    assert -365 <= shift <= -1
    others = {pseudo.pseudonymize(make_instance(patient_id=f"P{n}", StudyDate="20240115")).dataset.StudyDate
              for n in range(20)}
    assert len(others) > 5                                    # offsets differ between patients


def test_malformed_dates_are_removed_and_counted_not_fatal():
    ds = make_instance(StudyDate="2024-13-45", SeriesDate="20241301", AcquisitionDateTime="garbage")
    result = Pseudonymizer(profile("RetainLongitudinalModifiedDates", burned_in="Pass")).pseudonymize(ds)
    assert result.dates_removed == 3
    assert result.dataset.StudyDate == "" and result.dataset.SeriesDate == ""


def test_uids_are_remapped_consistently_across_two_studies_of_a_patient():
    first = make_instance(patient_id="P7")
    second = make_instance(patient_id="P7")
    reference = Dataset()
    reference.ReferencedSOPClassUID = first.SOPClassUID
    reference.ReferencedSOPInstanceUID = first.SOPInstanceUID
    second.ReferencedImageSequence = Sequence([reference])
    frame = second.FrameOfReferenceUID = first.FrameOfReferenceUID = pydicom.uid.generate_uid()
    study = first.StudyInstanceUID
    pseudo = Pseudonymizer(profile(burned_in="Pass"))
    a, b = pseudo.pseudonymize(first), pseudo.pseudonymize(second)
    assert b.dataset.ReferencedImageSequence[0].ReferencedSOPInstanceUID == a.dataset.SOPInstanceUID
    assert a.dataset.FrameOfReferenceUID == b.dataset.FrameOfReferenceUID != frame
    assert a.uids[study] == a.dataset.StudyInstanceUID != b.dataset.StudyInstanceUID
    assert b.dataset.ReferencedImageSequence[0].ReferencedSOPClassUID == pydicom.uid.CTImageStorage
    assert a.dataset.SOPClassUID == pydicom.uid.CTImageStorage
    assert a.dataset.file_meta.MediaStorageSOPInstanceUID == a.dataset.SOPInstanceUID
    assert a.dataset.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert a.dataset.SOPInstanceUID.startswith("2.25.") and len(a.dataset.SOPInstanceUID) <= 64
    assert a.patient_id[1] == b.patient_id[1] == a.dataset.PatientID == b.dataset.PatientName


def test_pseudonyms_are_keyed_and_formatted():
    fmt = PseudonymFormat(prefix="TRIAL-", length=6, alphabet="0123456789")
    value = make_pseudonym(SECRET, "MRN0042", fmt)
    assert value.startswith("TRIAL-") and len(value) == 12 and value[6:].isdigit()
    assert make_pseudonym(SECRET, "MRN0042", fmt) == value
    assert make_pseudonym(b"another secret", "MRN0042", fmt) != value
    assert remap_uid(SECRET, "1.2.3") != remap_uid(b"another secret", "1.2.3")


def test_same_results_in_another_process():
    ds = make_instance(patient_id="REPRO1", study_uid="1.2.3.4.5", series_uid="1.2.3.4.6")
    ds.SOPInstanceUID = "1.2.3.4.7"
    mine = Pseudonymizer(profile("RetainLongitudinalModifiedDates", burned_in="Pass")).pseudonymize(ds).dataset
    code = f"""
import sys, json
sys.path[:0] = {[str(Path(__file__).resolve().parents[3] / 'plugin'), str(Path(__file__).resolve().parents[2])]!r}
from courier.deid.pseudonymizer import Pseudonymizer
from courier.config.profiles import Profile
from factory import make_instance
ds = make_instance(patient_id="REPRO1", study_uid="1.2.3.4.5", series_uid="1.2.3.4.6")
ds.SOPInstanceUID = "1.2.3.4.7"
out = Pseudonymizer(Profile("trial", {SECRET!r}, frozenset({{"RetainLongitudinalModifiedDates"}}),
                            burned_in="Pass")).pseudonymize(ds).dataset
print(json.dumps([out.PatientID, out.StudyInstanceUID, out.SeriesInstanceUID, out.SOPInstanceUID, out.StudyDate]))
"""
    theirs = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert theirs == [mine.PatientID, mine.StudyInstanceUID, mine.SeriesInstanceUID, mine.SOPInstanceUID, mine.StudyDate]


def test_overrides_and_trial_tags():
    pseudo = Pseudonymizer(profile(burned_in="Pass", keep=frozenset({0x00081030}), remove=frozenset({0x00180050}),
                                   replace={0x00081090: "MODEL-X"},
                                   trial={"ClinicalTrialSponsorName": "Acme Pharma", "ClinicalTrialProtocolID": "P-01"}))
    ds = make_instance(StudyDescription="Chest CT", SliceThickness="1.0", ManufacturerModelName="Scanner 9000")
    out = pseudo.pseudonymize(ds).dataset
    assert out.StudyDescription == "Chest CT" and "SliceThickness" not in out
    assert out.ManufacturerModelName == "MODEL-X"
    assert out.ClinicalTrialSponsorName == "Acme Pharma" and out.ClinicalTrialSubjectID == out.PatientID


@pytest.mark.parametrize("tags,disposition", [({"BurnedInAnnotation": "YES"}, "quarantine"),
                                              ({"Modality": "US"}, "quarantine")])
def test_burned_in_annotation_is_not_passed_on(tags, disposition):
    ds = make_instance(**{k: v for k, v in tags.items() if k != "Modality"})
    if "Modality" in tags:
        ds.Modality = tags["Modality"]
    with pytest.raises(PseudonymizationError) as caught:
        Pseudonymizer(profile()).pseudonymize(ds)
    assert caught.value.disposition == disposition
    with pytest.raises(PseudonymizationError) as caught:
        Pseudonymizer(profile(burned_in="Reject")).pseudonymize(ds)
    assert caught.value.disposition == "reject"
    assert Pseudonymizer(profile(burned_in="Pass")).pseudonymize(ds).dataset.PatientIdentityRemoved == "YES"


BUNDLED = sorted(p for p in (Path(pydicom.data.__file__).parent / "test_files").rglob("*") if p.is_file())


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_pydicom_test_files_are_pseudonymized_or_refused_never_crash(path):
    data = Path(path).read_bytes()
    pseudo = Pseudonymizer(profile("RetainLongitudinalModifiedDates", burned_in="Pass"))
    try:
        out, result = pseudo.pseudonymize_bytes(data)
    except PseudonymizationError as exc:
        assert exc.reason                                  # refused, with a reason
        return
    ds = pydicom.dcmread(io.BytesIO(out))
    assert ds.PatientIdentityRemoved == "YES"
    original = pydicom.dcmread(io.BytesIO(data), force=True)
    name = str(original.get("PatientName", "") or "")
    if len(name) >= 3:
        assert name.encode() not in out
    assert [e.tag for e in ds.iterall() if e.tag.is_private] == [0x7FDF0010, 0x7FDF1001]     # Courier's mark only


def test_keep_override_keeps_a_private_element_and_its_creator():
    ds = make_instance()
    ds.add_new(0x00290010, "LO", "VENDOR")
    ds.add_new(0x00291005, "DS", "1.5")
    ds.add_new(0x00291006, "LO", "dropped")
    out = Pseudonymizer(profile(burned_in="Pass", keep=frozenset({0x00291005}))).pseudonymize(ds).dataset
    assert out[0x00290010].value == "VENDOR" and out[0x00291005].value == "1.5"
    assert 0x00291006 not in out


def test_burned_in_sop_classes():
    ds = make_instance()
    with pytest.raises(PseudonymizationError, match="SOP class 1.2.840.10008.5.1.4.1.1.2 may carry burned-in text"):
        Pseudonymizer(profile(burned_in_modalities=frozenset(),
                              burned_in_sop_classes=frozenset({str(ds.SOPClassUID)}))).pseudonymize(ds)


def without_patient_id(**kwargs):
    ds = make_instance(**kwargs)
    del ds.PatientID
    return ds


def test_without_patient_id_the_name_and_birth_date_key_the_pseudonym():
    pseudo = Pseudonymizer(profile(burned_in="Pass"))
    out, result = pseudo.pseudonymize_bytes(written(without_patient_id(patient_name="Doe^Jane", PatientBirthDate="19700101")))
    assert b"Doe" not in out and result.patient_id == ("Doe^Jane|19700101", make_pseudonym(SECRET, "Doe^Jane|19700101",
                                                                                          PseudonymFormat()))
    assert pydicom.dcmread(io.BytesIO(out)).PatientID == result.patient_id[1]
    other = pseudo.pseudonymize(without_patient_id(patient_name="Roe^Rita", PatientBirthDate="19700101"))
    empty_id = pseudo.pseudonymize(make_instance(patient_id="", patient_name="Doe^Jane", PatientBirthDate="19700101"))
    assert other.patient_id[1] != result.patient_id[1] == empty_id.patient_id[1]
    anonymous = without_patient_id(patient_name="", PatientBirthDate="")
    study = anonymous.StudyInstanceUID
    assert pseudo.pseudonymize(anonymous).patient_id[0] == f"study:{study}"       # its patient is not known


def test_without_patient_id_a_refusal_says_what_is_missing():
    nothing = without_patient_id(patient_name="", PatientBirthDate="")
    del nothing.StudyInstanceUID
    with pytest.raises(PseudonymizationError, match=r"no PatientID \(0010,0020\), PatientName, PatientBirthDate or "
                                                    r"StudyInstanceUID") as caught:
        Pseudonymizer(profile(burned_in="Pass")).pseudonymize(nothing)
    assert caught.value.disposition == "reject"
    looked_up = Pseudonymizer(profile(burned_in="Pass"), patient_pseudonym=lambda patient_id: "SUBJ-1")
    with pytest.raises(PseudonymizationError, match=r"no PatientID \(0010,0020\): the pseudonyms of profile trial are "
                                                    "looked up by PatientID"):
        looked_up.pseudonymize(without_patient_id())
    no_uid = make_instance()
    del no_uid.SOPInstanceUID
    with pytest.raises(PseudonymizationError, match=r"no SOPInstanceUID \(0008,0018\)"):
        Pseudonymizer(profile(burned_in="Pass")).pseudonymize_bytes(written(no_uid))


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
def test_the_marking_encoded_once_writes_the_same_bytes_as_encoding_it_each_time(monkeypatch, syntax):
    """The profile's marking (DeidentificationMethod and its code sequence, trial attributes) is
    encoded once per transfer syntax and reused: the files must be identical to those written
    with the marking set element by element."""
    from pydicom.uid import UID

    from factory import file_bytes

    kwargs = dict(burned_in="Pass", trial={"ClinicalTrialProtocolID": "PROTO-7", "ClinicalTrialSiteName": "Site A"})
    instances = []
    for n in range(3):
        ds = make_instance(patient_id=f"P{n}", instance_number=n + 1)
        ds.file_meta.TransferSyntaxUID = UID(syntax)
        instances.append(file_bytes(ds))
    reused = Pseudonymizer(profile("RetainLongitudinalModifiedDates", **kwargs))
    fast = [reused.pseudonymize_bytes(data)[0] for data in instances]
    assert list(reused._constants) == [UID(syntax).is_implicit_VR]   # the pre-encoded marking was used
    monkeypatch.setattr(Pseudonymizer, "_reusable_encoding", staticmethod(lambda ds: None))
    slow = [Pseudonymizer(profile("RetainLongitudinalModifiedDates", **kwargs)).pseudonymize_bytes(data)[0]
            for data in instances]
    assert fast == slow
    marked = pydicom.dcmread(io.BytesIO(fast[1]))
    assert marked.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert marked.ClinicalTrialSiteName == "Site A" and marked.PatientIdentityRemoved == "YES"


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_private_elements_dropped_undecoded_give_the_file_decoding_them_gives(path):
    """The private elements the profile drops are not decoded (a vendor's header has hundreds):
    the file written is byte for byte the one written when every private element is decoded first."""
    data = Path(path).read_bytes()
    pseudo = Pseudonymizer(profile("RetainLongitudinalModifiedDates", "CleanDescriptors", burned_in="Pass"))

    def decode_private(ds: Dataset) -> None:
        for tag in list(ds.keys()):
            if tag.is_private:
                ds[tag]                                   # noqa: B018 - decoded, as before
    try:
        out, result = pseudo.pseudonymize_bytes(data)
    except PseudonymizationError:
        return
    reference, reference_result = pseudo.pseudonymize_bytes(data, before=decode_private)
    assert out == reference and result.uids == reference_result.uids


def test_a_dropped_private_person_name_read_from_a_file_is_still_cut_from_text():
    """An explicit VR file's private PN goes undecoded no more than before: its value is cut from the
    text the profile keeps (here a comment naming the person)."""
    ds = make_instance(ImageComments="reviewed by Grimaldi^Rosalind")
    ds.add_new(0x00090010, "LO", "ACME")
    ds.add_new(0x00091001, "PN", "Grimaldi^Rosalind")
    ds.add_new(0x00091002, "LO", "kept nowhere")
    data = written(ds)
    out, _ = Pseudonymizer(profile("CleanDescriptors", burned_in="Pass")).pseudonymize_bytes(data)
    again = pydicom.dcmread(io.BytesIO(out))
    assert "Grimaldi" not in str(again.ImageComments) and b"Grimaldi" not in out
    assert not [e for e in again if e.tag.is_private and e.tag.group == 0x0009]


def test_a_time_to_clean_is_left_as_it_was_read_and_its_date_is_shifted():
    """`C` on a time (RetainLongitudinalModifiedDates): nothing in it to clean, so it is not decoded
    and goes out byte for byte; the date beside it is shifted as before."""
    ds = make_instance(AcquisitionTime="101500.25", AcquisitionDate="20240115")
    out, result = Pseudonymizer(profile("RetainLongitudinalModifiedDates", burned_in="Pass")).pseudonymize_bytes(
        written(ds))
    time_element = result.dataset.get_item(0x00080032)
    assert time_element.is_raw and time_element.value == b"101500.25 "
    again = pydicom.dcmread(io.BytesIO(out))
    assert again.AcquisitionTime == "101500.25" and again.AcquisitionDate != "20240115"


def test_pydicom_quotes_no_value_of_an_instance_into_a_log(caplog, recwarn):
    """pydicom's checks would warn "Invalid value for VR DA: '1970-01-01'" (a malformed birth date)
    through Python's last-resort handler, into Orthanc's log: they are off in Courier's process."""
    import logging

    with caplog.at_level(logging.DEBUG):
        ds = make_instance(PatientBirthDate="1970-01-01", PatientSex="female?")
        out, _ = Pseudonymizer(profile(burned_in="Pass")).pseudonymize_bytes(written(ds))
    assert b"1970-01-01" not in out
    said = caplog.text + "".join(str(w.message) for w in recwarn)
    assert "1970-01-01" not in said and "female?" not in said
