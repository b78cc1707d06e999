"""The pixel data is set aside while the attributes are pseudonymized and comes back byte for
byte; whatever follows it in a file sends the instance the whole way, so the profile judges it."""
import io

import pydicom
import pydicom.data
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import ImplicitVRLittleEndian, JPEGBaseline8Bit

from courier.config.profiles import Profile
from courier.deid.pixel_tail import read_split
from courier.deid.pseudonymizer import Pseudonymizer
from factory import make_instance

PSEUDONYMIZER = Pseudonymizer(Profile("t", b"test-secret-not-for-production", frozenset(), burned_in="Pass"))


def encode(ds, syntax=None) -> bytes:
    if syntax:
        ds.file_meta.TransferSyntaxUID = syntax
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize("syntax", [None, ImplicitVRLittleEndian])
def test_the_pixel_data_comes_back_byte_for_byte_after_the_new_attributes(syntax):
    source = make_instance(size=64, patient_name="Doe^Jane")
    data = encode(source, syntax)
    header, pixels = read_split(data)
    assert pixels is not None and "PixelData" not in header
    assert data.endswith(bytes(pixels))                    # the element as it came, to the file's end
    out, _ = PSEUDONYMIZER.pseudonymize_bytes(data)
    assert out.endswith(bytes(pixels))
    result = pydicom.dcmread(io.BytesIO(out))
    assert result.PixelData == source.PixelData and str(result.PatientName) != "Doe^Jane"
    assert result.file_meta.TransferSyntaxUID == (syntax or source.file_meta.TransferSyntaxUID)


def test_encapsulated_pixel_data_is_kept_whole():
    source = make_instance(size=8)
    del source.PixelData
    frames = [b"\xff\xd8frame-one\xff\xd9", b"\xff\xd8frame-two!\xff\xd9"]
    source.PixelData = encapsulate(frames)
    source["PixelData"].VR = "OB"
    source.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    data = encode(source)
    _, pixels = read_split(data)
    assert pixels is not None and data.endswith(bytes(pixels))
    out, _ = PSEUDONYMIZER.pseudonymize_bytes(data)
    assert pydicom.dcmread(io.BytesIO(out)).PixelData == source.PixelData


def test_an_element_after_the_pixel_data_is_judged_by_the_profile_not_copied():
    source = make_instance(size=16)
    source.add_new(0x7FE10010, "LO", "GEMS_Ultrasound_MovieGroup_001")    # a vendor's private block after the pixels
    source.add_new(0x7FE11001, "LO", "Doe^Jane was here")
    data = encode(source)
    header, pixels = read_split(data)
    assert pixels is None and "PixelData" in header       # read whole: the profile sees the private block
    out, _ = PSEUDONYMIZER.pseudonymize_bytes(data)
    result = pydicom.dcmread(io.BytesIO(out))
    assert 0x7FE11001 not in result and b"Doe^Jane" not in out and result.PixelData == source.PixelData


def test_trailing_padding_is_dropped_and_big_endian_is_read_whole():
    source = make_instance(size=16)
    source.add_new(0xFFFCFFFC, "OB", b"\x00" * 64)
    data = encode(source)
    _, pixels = read_split(data)
    assert pixels is not None and len(pixels) == 12 + len(source.PixelData)      # the element, not the padding
    out, _ = PSEUDONYMIZER.pseudonymize_bytes(data)
    assert 0xFFFCFFFC not in pydicom.dcmread(io.BytesIO(out))
    with open(pydicom.data.get_testdata_file("MR_small_bigendian.dcm"), "rb") as handle:
        header, pixels = read_split(handle.read())
    assert pixels is None and "PixelData" in header
