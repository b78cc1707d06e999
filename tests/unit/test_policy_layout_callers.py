import os

import pytest

from courier.callers import CallerPolicy
from courier.policy import RetryPolicy
from courier.layout import contained_path, relative_path, safe_component
from courier.policy import FAILURE, PENDING, SUCCESS, WARNING, decide, retry_delay

POLICY = RetryPolicy(max_attempts=4, initial_delay=10, multiplier=3, max_delay=60)


def test_backoff_grows_exponentially_up_to_the_cap():
    assert [retry_delay(POLICY, n) for n in range(1, 6)] == [10, 30, 60, 60, 60]
    assert retry_delay(RetryPolicy(max_attempts=5, initial_delay=1, multiplier=10, max_delay=5), 10**6) == 5


@pytest.mark.parametrize("expected,delivered,attempts,state", [
    (3, 3, 1, SUCCESS), (3, 2, 1, PENDING), (3, 0, 3, PENDING),
    (3, 2, 4, WARNING), (3, 0, 4, FAILURE), (0, 0, 1, FAILURE),
])
def test_outcome(expected, delivered, attempts, state):
    outcome = decide(expected, delivered, attempts, POLICY)
    assert outcome.state == state
    assert (outcome.retry_in is not None) == (state == PENDING)


def test_non_retriable_errors_end_at_once():
    assert decide(2, 0, 1, POLICY, retriable=False).state == FAILURE


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


def test_known_modalities_policy():
    policy = CallerPolicy("KnownModalities", {"CT1": ("127.0.0.1",), "MR1": ("localhost",)})
    assert policy.refuse_aet("CT1") is None
    assert "STRANGER" in policy.refuse_aet("STRANGER")
    assert policy.refuse_ip("CT1", "127.0.0.1") is None
    assert policy.refuse_ip("MR1", "127.0.0.1") is None          # host names are resolved
    assert "127.0.0.9" in policy.refuse_ip("CT1", "127.0.0.9")
    anyone = CallerPolicy("Any", {})
    assert anyone.refuse_aet("X") is None and anyone.refuse_ip("X", "127.0.0.9") is None
