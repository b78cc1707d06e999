"""NIfTI destinations: a CT series routed to a folder with Convert NIfTI becomes one .nii.gz and
its BIDS .json by Debian's dcm2niix, pseudonymized first and with no patient data in the
sidecar; a series dcm2niix cannot convert is reported on its task."""
import gzip
import json
import struct

from pydicom.uid import generate_uid

from factory import make_instance, write_instances
from harness import storescu, wait_until

FAST_RETRY = {"MaxAttempts": 2, "InitialDelaySeconds": 0.2, "MaxDelaySeconds": 1}


def ct_series(folder, count=6):
    folder.mkdir(parents=True)
    series, study, paths = generate_uid(), generate_uid(), []
    for index in range(count):
        ds = make_instance(series_uid=series, study_uid=study, instance_number=index + 1, size=32, patient_id="NIFTI-PID",
                           patient_name="Secret^Name", ImagePositionPatient=[0, 0, float(index)],
                           ImageOrientationPatient=[1, 0, 0, 0, 1, 0], PixelSpacing=[0.5, 0.5], SliceThickness=1.0)
        paths.append(folder / f"{ds.SOPInstanceUID}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    return series, paths


def nifti_dims(path):
    header = gzip.open(path).read(348)
    assert struct.unpack_from("<i", header, 0)[0] == 348                   # a NIfTI-1 header
    return struct.unpack_from("<8h", header, 40)


def test_a_ct_series_becomes_one_pseudonymized_nifti_and_an_unconvertible_series_is_reported(cluster, tmp_path):
    (tmp_path / "key").write_text("nifti-key-0123456789abcdef")
    out = tmp_path / "nifti"
    node = cluster.orthanc("router", courier={
        "Retry": FAST_RETRY, "AllowedCallers": "Any",
        "Pseudonymization": {"research": {"SecretFile": str(tmp_path / "key")}},
        "Folders": {"nifti": {"Path": str(out), "Convert": "NIfTI", "Layout": "{PatientID}/{SeriesInstanceUID}"}},
        "Routes": [{"Name": "to-nifti", "Trigger": "StableSeries", "StableAfterSeconds": 1, "Pseudonymize": "research",
                    "Destinations": ["nifti"]}]})
    series, files = ct_series(tmp_path / "ct")
    storescu(node.dicom_port, files)
    task = wait_until(lambda: [t for t in node.get("/courier/tasks")["tasks"] if t["state"] == "SUCCESS"], 40,
                      what="the task delivered")[0]
    assert task["delivered"] == 6
    written = sorted(p.name for p in out.rglob("*") if p.is_file())
    [patient] = [p for p in out.iterdir() if p.is_dir()]
    assert patient.name != "NIFTI-PID"                                     # pseudonymized before the conversion
    assert len(written) == 2 and written[0].endswith(".json") and written[1].endswith(".nii.gz")
    image = next(patient.glob("*.nii.gz"))
    dims = nifti_dims(image)
    assert dims[0] == 3 and dims[1:4] == (32, 32, 6)                        # one volume of the six slices
    sidecar = json.loads(next(patient.glob("*.json")).read_text())
    assert sidecar["Modality"] == "CT" and "PatientName" not in sidecar and "PatientID" not in sidecar
    assert "Secret" not in json.dumps(sidecar) and not list(out.rglob(".courier-*"))

    no_pixels = write_instances(tmp_path / "sr", 2, modality="SR", size=8)       # dcm2niix finds no image in it
    import pydicom
    for path in no_pixels:
        ds = pydicom.dcmread(path)
        for keyword in ("PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
                        "SamplesPerPixel", "PhotometricInterpretation"):
            delattr(ds, keyword)
        ds.save_as(path, enforce_file_format=True)
    storescu(node.dicom_port, no_pixels)
    failed = wait_until(lambda: [t for t in node.get("/courier/tasks")["tasks"] if t["state"] == "FAILURE"], 40,
                        what="the unconvertible series reported")
    assert "dcm2niix could not convert series" in failed[0]["last_error"], failed[0]
    assert failed[0]["attempts"] == 1                                       # permanent: not retried


def test_an_archive_with_convert_nifti_holds_the_series_as_nifti(cluster, tmp_path):
    import py7zr
    (tmp_path / "password").write_text("zip-secret-123")
    node = cluster.orthanc("router", courier={
        "Retry": FAST_RETRY, "AllowedCallers": "Any",
        "Archives": {"zipped": {"Path": str(tmp_path / "zips"), "PasswordFile": str(tmp_path / "password"),
                                "Convert": "NIfTI"}},
        "Routes": [{"Name": "zip", "Trigger": "StableSeries", "StableAfterSeconds": 1, "Destinations": ["zipped"]}]})
    series, files = ct_series(tmp_path / "ct", count=4)
    storescu(node.dicom_port, files)
    wait_until(lambda: [t for t in node.get("/courier/tasks")["tasks"] if t["state"] == "SUCCESS"], 40,
               what="the archive written")
    [archive] = [p for p in (tmp_path / "zips").rglob("*.7z") if not p.name.startswith(".")]
    with py7zr.SevenZipFile(archive, "r", password="zip-secret-123") as opened:
        names = sorted(opened.getnames())
        opened.extractall(path=tmp_path / "opened")
    assert [n.rsplit("/", 1)[-1] for n in names if "." in n.rsplit("/", 1)[-1]] == [f"{series}.json", f"{series}.nii.gz"]
    assert nifti_dims(next((tmp_path / "opened").rglob("*.nii.gz")))[1:4] == (32, 32, 4)


def test_a_bucket_with_convert_nifti_gets_the_series_as_nifti_objects(cluster, tmp_path, s3, s3_bucket):
    import gzip as gz
    access, secret = s3.write_keys(tmp_path / "keys")
    node = cluster.orthanc("router", courier={
        "Retry": FAST_RETRY, "AllowedCallers": "Any",
        "Buckets": {"s3": {"Endpoint": s3.url, "Bucket": s3_bucket, "Prefix": "nifti", "Convert": "NIfTI",
                           "AccessKeyFile": access, "SecretKeyFile": secret}},
        "Routes": [{"Name": "up", "Trigger": "StableSeries", "StableAfterSeconds": 1, "Destinations": ["s3"]}]})
    series, files = ct_series(tmp_path / "ct", count=3)
    storescu(node.dicom_port, files)
    wait_until(lambda: [t for t in node.get("/courier/tasks")["tasks"] if t["state"] == "SUCCESS"], 40,
               what="the series uploaded")
    objects = s3.objects(s3_bucket)
    study = next(iter(objects)).split("/")[1]
    assert set(objects) == {f"nifti/{study}/{series}.nii.gz", f"nifti/{study}/{series}.json"}
    header = gz.decompress(objects[f"nifti/{study}/{series}.nii.gz"])[:348]
    assert struct.unpack_from("<8h", header, 40)[1:4] == (32, 32, 3)
    assert json.loads(objects[f"nifti/{study}/{series}.json"])["Modality"] == "CT"
