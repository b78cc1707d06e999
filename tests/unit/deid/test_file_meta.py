"""PS3.15 E.1.1 item 7: the 128-byte preamble and the File Meta Information are replaced with a
description of the de-identifying application; nothing of the received header is carried over."""
import io

import pydicom
import pytest
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from courier import VERSION
from courier.config.profiles import Profile
from courier.deid.file_meta import IMPLEMENTATION_CLASS_UID
from courier.deid.pseudonymizer import Pseudonymizer
from factory import file_bytes, make_instance

SECRET = b"test-secret-not-for-production"
PREAMBLE = b"Doe^Jane MRN0042 born 19700101 ".ljust(128, b"\x00")


def received(**tags) -> bytes:
    ds = make_instance(patient_id="MRN0042", patient_name="Doe^Jane", **tags)
    meta = ds.file_meta
    meta.ImplementationClassUID, meta.ImplementationVersionName = "1.2.3.4.5.6", "HIS_EXPORT_2"
    meta.SourceApplicationEntityTitle, meta.SendingApplicationEntityTitle = "MRN0042_PACS", "WARD7_DOE"
    meta.ReceivingApplicationEntityTitle = "RECEIVER"
    meta.PrivateInformationCreatorUID = "1.2.3.4.99"
    meta.PrivateInformation = b"MRN0042 Doe^Jane"
    return file_bytes(ds, preamble=PREAMBLE)


def pseudonymizer(**kwargs) -> Pseudonymizer:
    return Pseudonymizer(Profile("trial", SECRET, burned_in="Pass"), **kwargs)


def test_the_preamble_and_the_file_meta_information_describe_courier_only():
    data = received()
    original = pydicom.dcmread(io.BytesIO(data))
    assert original.preamble == PREAMBLE and original.file_meta.PrivateInformation == b"MRN0042 Doe^Jane"
    out, result = pseudonymizer().pseudonymize_bytes(data)
    assert out[:128] == b"\x00" * 128 and out[128:132] == b"DICM"
    ds = pydicom.dcmread(io.BytesIO(out))
    meta = {e.keyword: e.value for e in ds.file_meta if e.keyword != "FileMetaInformationGroupLength"}
    assert meta == {"FileMetaInformationVersion": b"\x00\x01",
                    "MediaStorageSOPClassUID": pydicom.uid.CTImageStorage,
                    "MediaStorageSOPInstanceUID": ds.SOPInstanceUID,
                    "TransferSyntaxUID": pydicom.uid.ExplicitVRLittleEndian,
                    "ImplementationClassUID": IMPLEMENTATION_CLASS_UID,
                    "ImplementationVersionName": f"COURIER_{VERSION}",
                    "SourceApplicationEntityTitle": "COURIER"}
    assert ds.SOPInstanceUID == result.uids[original.SOPInstanceUID] != original.SOPInstanceUID
    for phi in (b"MRN0042", b"Doe", b"Jane", b"19700101", b"1.2.3.4.5.6", b"HIS_EXPORT", b"WARD7", b"RECEIVER"):
        assert phi not in out, phi


def test_the_source_ae_title_can_be_passed_in():
    out, _ = pseudonymizer(source_ae="ROUTER7").pseudonymize_bytes(received())
    assert pydicom.dcmread(io.BytesIO(out)).file_meta.SourceApplicationEntityTitle == "ROUTER7"
    assert pseudonymizer(source_ae="ROUTER7").reviewed().source_ae == "ROUTER7"
    for bad, why in (("", "empty"), ("A" * 17, "longer than 16"), ("A\\B", "backslash")):
        with pytest.raises(ValueError, match=why):
            pseudonymizer(source_ae=bad)


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRBigEndian])
def test_the_transfer_syntax_is_kept(syntax):
    ds = make_instance()
    ds.file_meta.TransferSyntaxUID = syntax
    out, _ = pseudonymizer().pseudonymize_bytes(file_bytes(ds))
    again = pydicom.dcmread(io.BytesIO(out))
    assert again.file_meta.TransferSyntaxUID == syntax and again.Rows == 16


def test_the_received_ae_titles_are_cut_from_text():
    out, _ = Pseudonymizer(Profile("trial", SECRET, frozenset({"CleanDescriptors"}), burned_in="Pass")).pseudonymize_bytes(
        received(ImageComments="sent by WARD7_DOE"))
    assert pydicom.dcmread(io.BytesIO(out)).ImageComments == "sent by XXX"


def test_a_dataset_without_header_gets_one():
    ds = make_instance()
    del ds.file_meta
    result = pseudonymizer().pseudonymize(ds)
    assert result.dataset.file_meta.MediaStorageSOPInstanceUID == result.dataset.SOPInstanceUID
    assert result.dataset.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian


@pytest.mark.parametrize("sop_uid,ae,sop_class", [("1.2.3.4", "COURIER", "1.2.840.10008.5.1.4.1.1.2"),
                                                  ("1.2.3.45", "ODD", "1.2.840.10008.5.1.4.1.1.4"),
                                                  ("2.25.1", "A" * 16, "1.2.840.10008.5.1.4.1.1.7")])
def test_the_meta_encoder_writes_what_pydicom_writes_byte_for_byte(sop_uid, ae, sop_class):
    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    from courier.deid.file_meta import meta_bytes, new_file_meta

    ds = Dataset()
    ds.SOPInstanceUID = sop_uid
    if sop_class:
        ds.SOPClassUID = sop_class
    meta = new_file_meta(ds, None, ae)
    reference = DicomBytesIO()
    write_file_meta_info(reference, meta, enforce_standard=True)
    assert meta_bytes(meta) == reference.getvalue()


def _read_back(ds, syntax) -> pydicom.Dataset:
    """`ds` written in `syntax` and read again: its elements undecoded, as a received file's are."""
    ds.file_meta.TransferSyntaxUID = syntax
    return pydicom.dcmread(io.BytesIO(file_bytes(ds)))


NAMES = {None: "Muller", "ISO_IR 100": "Müller", "ISO_IR 192": "Müller", "ISO_IR 144": "Мюллер"}


def _rich_instance(charset="ISO_IR 100") -> pydicom.Dataset:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "113100", "DCM", "Basic"
    nested = Dataset()
    nested.ReferencedSOPInstanceUID = "1.2.3.4.5"
    item.ReferencedImageSequence = Sequence([nested])
    ds = make_instance(ImageComments="a comment", PatientComments=NAMES[charset])
    if charset:
        ds.SpecificCharacterSet = charset
    ds.DeidentificationMethodCodeSequence = Sequence([item])
    ds["DeidentificationMethodCodeSequence"].is_undefined_length = True     # read back with undefined length
    ds.add_new(0x00091010, "LO", "VENDOR")
    ds.add_new(0x00091011, "OB", bytes(range(256)) * 300)           # 76,800 bytes: a 32-bit length
    ds.add_new(0x00091012, "UT", "free text " * 10)
    ds.add_new(0x00280030, "DS", ["0.5", "0.5"])
    ds.add_new(0x00181020, "LO", ["V1", "V2"])
    ds.add_new(0x00200032, "DS", ["-125", "-125", "10.5"])
    return ds


def _decode_and_change(ds: pydicom.Dataset, charset) -> None:
    """What the pseudonymizer does to a header: values decoded, replaced, emptied, added."""
    for keyword in ("PatientName", "ImageComments", "DeidentificationMethodCodeSequence", "PatientComments"):
        getattr(ds, keyword)
    ds.PatientName = "PSEUDO^NYM"
    del ds[0x00091012]
    ds.ClinicalTrialSubjectID = "SUBJ1"                            # odd-length ASCII text
    ds.StudyID = "ANONYMIZED"                                      # even-length ASCII text
    ds.ContentDate, ds.ContentTime = "20240120", "101500.5"        # a shifted date, an odd-length time
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "2.25.123", "2.25.1234"   # odd and even UIDs
    ds.PatientSex, ds.PatientAge, ds.Modality = "F", "042Y", "CT"
    ds.AccessionNumber, ds.ReferringPhysicianName, ds.PatientBirthDate = "", "", ""
    ds.OperatorsName = None
    ds.ImageComments = f"reviewed by {NAMES[charset]}."             # text in the character set
    ds.SeriesDescription = ["ONE", "TWO"]                          # multi-valued text


@pytest.mark.parametrize("syntax", [pydicom.uid.ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian])
@pytest.mark.parametrize("charset", list(NAMES))
@pytest.mark.parametrize("decode", [False, True])
def test_the_data_set_writer_writes_what_pydicom_writes_byte_for_byte(syntax, charset, decode):
    """Undecoded elements (packed here) beside decoded, changed, emptied and new ones (the plain
    ones packed here, the rest pydicom's to write), a sequence read with undefined length, private
    elements, a value over 64 KiB, text in four character sets: the same bytes as pydicom's
    write_dataset."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    from courier.deid.file_meta import write_data_set

    ds = _read_back(_rich_instance(charset), syntax)
    if decode:
        _decode_and_change(ds, charset)
    mine, reference = DicomBytesIO(), DicomBytesIO()
    for fp in (mine, reference):
        fp.is_implicit_VR, fp.is_little_endian = syntax.is_implicit_VR, syntax.is_little_endian
    write_data_set(mine, ds)
    write_dataset(reference, ds)
    assert mine.getvalue() == reference.getvalue()
    assert any(ds.get_item(tag).is_raw for tag in ds.keys())       # the fast path was taken for some


def test_the_data_set_writer_leaves_a_changed_character_set_to_pydicom():
    """A data set whose character set changed is re-encoded by pydicom (text elements converted):
    never its undecoded text written as it was read."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    from courier.deid.file_meta import write_data_set

    ds = _read_back(_rich_instance(), pydicom.uid.ExplicitVRLittleEndian)
    ds.SpecificCharacterSet = "ISO_IR 192"
    mine, reference = DicomBytesIO(), DicomBytesIO()
    for fp in (mine, reference):
        fp.is_implicit_VR, fp.is_little_endian = False, True
    write_data_set(mine, ds)
    write_dataset(reference, ds)
    assert mine.getvalue() == reference.getvalue()
    assert "Müller".encode("utf-8") in mine.getvalue()
