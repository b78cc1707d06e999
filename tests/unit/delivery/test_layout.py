"""Folder paths built from tags stay inside the folder."""
import os

import pytest

from courier.delivery.layout import contained_path, relative_path, safe_component


@pytest.mark.parametrize("value", ["../../etc", "..", "a/../../b", "/abs/path", "\\..\\x", "", None, "."])
def test_tag_values_never_leave_the_folder(tmp_path, value):
    rel = relative_path("{PatientID}/{StudyID}/{SOPInstanceUID}.dcm",
                        {"PatientID": value, "StudyID": value, "SOPInstanceUID": "1.2.3"})
    target = contained_path(str(tmp_path), rel)
    assert os.path.commonpath([str(tmp_path), target]) == str(tmp_path)
    assert rel.count("/") == 2


def test_layout_fills_tags_and_marks_missing_ones():
    rel = relative_path("{PatientID}/{Modality}_{SeriesNumber}/{SOPInstanceUID}.dcm",
                        {"PatientID": "P 1", "Modality": "CT", "SOPInstanceUID": "1.2"})
    assert rel == "P 1/CT_UNKNOWN/1.2.dcm"
    assert safe_component("Doe^Jane") == "Doe^Jane"


def test_contained_path_refuses_an_escaping_layout(tmp_path):
    with pytest.raises(ValueError):
        contained_path(str(tmp_path / "base"), "../outside.dcm")
