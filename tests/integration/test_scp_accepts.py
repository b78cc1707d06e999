"""What Courier's Orthanc accepts over DICOM: Orthanc's own settings decide the association and
its presentation contexts (Courier never hears of what they refuse); Courier's C-STORE filter then
decides each instance (AllowedCallers, AcceptedSopClasses), and records what it refuses."""
import pydicom
from pydicom.uid import generate_uid

from factory import write_instances
from harness import storescu, wait_until

MODALITY = {"AET": "MODALITY", "Host": "127.0.0.1", "Port": 1}


def refusals(node):
    return node.get("/courier/traffic", status="refused")["entries"]


def test_accepted_sop_classes_refuse_mr_with_0122_and_record_it(cluster, tmp_path):
    node = cluster.orthanc("router", courier={"AcceptedSopClasses": ["CT Image Storage"], "Routes": []},
                           extra={"DicomModalities": {"modality": MODALITY}})
    ct = write_instances(tmp_path / "ct", 1, modality="CT")
    storescu(node.dicom_port, ct, calling="MODALITY")
    mr = write_instances(tmp_path / "mr", 1, modality="MR")
    sent = storescu(node.dicom_port, mr, calling="MODALITY", check=False, options=["-v"])
    assert "Received Store Response (Refused: SOPClassNotSupported)" in sent.stderr, sent.stderr      # 0x0122
    assert node.sop_uids() == {ct[0].stem}
    [row] = wait_until(lambda: refusals(node), 20, what="the refusal in the traffic log")
    assert (row["CallingAet"], row["Service"]) == ("MODALITY", "C-STORE")
    assert row["Detail"] == "SOP class MR Image Storage is not in Courier.AcceptedSopClasses"
    audit = node.get("/courier/audit", action="instance-rejected")["entries"]
    assert audit and audit[0]["detail"]["reason"] == row["Detail"]


def test_what_orthanc_refuses_itself_never_reaches_courier(cluster, tmp_path):
    node = cluster.orthanc("router", courier={"AllowedCallers": "Any", "Routes": []},
                           extra={"DicomModalities": {"modality": MODALITY}, "DicomAlwaysAllowStore": False,
                                  "AcceptedTransferSyntaxes": ["1.2.840.10008.1.2.1"],
                                  "UnknownSopClassAccepted": False})
    files = write_instances(tmp_path / "ct", 1)
    stranger = storescu(node.dicom_port, files, calling="STRANGER", check=False)   # not in DicomModalities
    assert stranger.returncode != 0 and node.instances() == []
    implicit = storescu(node.dicom_port, files, calling="MODALITY", check=False, options=["-xi"])   # implicit VR only
    assert implicit.returncode != 0 and node.instances() == []
    private = tmp_path / "private.dcm"
    ds = pydicom.dcmread(files[0])
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.826.0.1.3680043.9.9999.1"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(private, enforce_file_format=True)
    unknown = storescu(node.dicom_port, [private], calling="MODALITY", check=False, options=["-R"])
    assert unknown.returncode != 0 and node.instances() == []
    storescu(node.dicom_port, files, calling="MODALITY")                             # what they allow still works
    assert len(node.instances()) == 1
    assert refusals(node) == []                                     # none of those refusals was Courier's to record
