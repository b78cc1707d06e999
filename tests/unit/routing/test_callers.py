"""Who may send DICOM to Courier."""
from courier.routing.callers import CallerPolicy


def test_known_modalities_policy():
    policy = CallerPolicy("KnownModalities", {"CT1": ("127.0.0.1",), "MR1": ("localhost",)})
    assert policy.refuse_aet("CT1") is None
    assert "STRANGER" in policy.refuse_aet("STRANGER")
    assert policy.refuse_ip("CT1", "127.0.0.1") is None
    assert policy.refuse_ip("MR1", "127.0.0.1") is None          # host names are resolved
    assert "127.0.0.9" in policy.refuse_ip("CT1", "127.0.0.9")
    anyone = CallerPolicy("Any", {})
    assert anyone.refuse_aet("X") is None and anyone.refuse_ip("X", "127.0.0.9") is None
