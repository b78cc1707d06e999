"""The C-STORE filter's checks: unknown callers, and instances nested too deep for Orthanc 1.10.1."""
import io

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian

from courier.routing.admission import MAX_DEPTH, Admission, nesting_depth
from courier.routing.callers import CallerPolicy
from factory import make_instance


def nested(depth: int, implicit: bool = False) -> bytes:
    ds = make_instance()
    if depth:
        inner = Dataset()
        inner.CodeValue = "x"
        for _ in range(depth - 1):
            outer = Dataset()
            outer.ContentSequence = Sequence([inner])
            inner = outer
        ds.ContentSequence = Sequence([inner])
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
@pytest.mark.parametrize("depth", [0, 1, 3, 17, 60])
def test_the_depth_is_read_from_the_headers(depth, implicit):
    assert nesting_depth(nested(depth, implicit)) == depth


def test_real_objects_are_far_below_the_limit():
    for name in ("rtstruct.dcm", "CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"):
        data = open(pydicom.data.get_testdata_file(name), "rb").read()
        assert nesting_depth(data) <= 4, name


def test_the_filter_refuses_unknown_callers_and_deep_instances():
    admission = Admission(CallerPolicy("KnownModalities", {"CT1": ("127.0.0.1",)}))
    assert admission.refuse("CT1", lambda: nested(3)) is None
    assert admission.refuse("STRANGER", lambda: nested(0))[0] == 0x0124
    status, reason = admission.refuse("CT1", lambda: nested(MAX_DEPTH + 1))
    assert status == 0xC000 and "nested 17 deep" in reason
    assert Admission(CallerPolicy("Any", {})).refuse("anyone", lambda: nested(2)) is None


def test_accepted_sop_classes_refuse_the_others_by_name_in_the_reason():
    from courier.config.sop_classes import parse_sop_classes
    accepted = parse_sop_classes(["CT Image Storage", "1.2.840.10008.5.1.4.1.1.88.22"])
    admission = Admission(CallerPolicy("Any", {}), accepted_sop_classes=accepted)
    ct = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    mr = open(pydicom.data.get_testdata_file("MR_small.dcm"), "rb").read()
    out = io.BytesIO()
    ct.save_as(out, enforce_file_format=True)
    assert admission.refuse("CT1", lambda: out.getvalue()) is None
    status, reason = admission.refuse("CT1", lambda: mr)
    assert status == 0x0122 and reason == "SOP class MR Image Storage is not in Courier.AcceptedSopClasses"


def test_accepted_sop_classes_are_checked_naming_the_entry():
    from courier.config.sop_classes import parse_sop_classes
    from courier.errors import ConfigError
    assert parse_sop_classes(None) is None
    assert parse_sop_classes(["CTImageStorage"]) == {"1.2.840.10008.5.1.4.1.1.2"}
    with pytest.raises(ConfigError, match=r"AcceptedSopClasses\[1\]: unknown SOP class 'CT Imag Storage'.*CT Image Storage"):
        parse_sop_classes(["MR Image Storage", "CT Imag Storage"])
    with pytest.raises(ConfigError, match=r"AcceptedSopClasses: expected a non-empty list"):
        parse_sop_classes([])
