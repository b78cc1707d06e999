"""Small synthetic DICOM instances (pydicom) for tests and benchmarks."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

SOP_CLASS = {"CT": CTImageStorage, "MR": MRImageStorage}


def make_instance(modality: str = "CT", patient_id: str = "PAT1", patient_name: str = "Doe^Jane",
                  study_uid: Optional[str] = None, series_uid: Optional[str] = None, size: int = 16,
                  instance_number: int = 1, **tags) -> Dataset:
    """A valid image instance; `size` x `size` 16-bit pixels (512 gives a 0.5 MB CT)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SOP_CLASS.get(modality, CTImageStorage)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.PatientID, ds.PatientName = patient_id, patient_name
    ds.PatientBirthDate, ds.PatientSex = "19700101", "F"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20240115", "101500", "ACC1"
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, instance_number
    ds.Modality = modality
    ds.StudyDescription, ds.SeriesDescription = "Test study", f"{modality} series"
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = bytes(size * size * 2)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    return ds


def write_instances(folder: Path, count: int = 1, **kwargs) -> list[Path]:
    """`count` instances of one series (same study/series UIDs unless given) as files."""
    folder.mkdir(parents=True, exist_ok=True)
    kwargs.setdefault("study_uid", generate_uid())
    kwargs.setdefault("series_uid", generate_uid())
    paths = []
    for number in range(1, count + 1):
        ds = make_instance(instance_number=number, **kwargs)
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def file_bytes(ds: Dataset, preamble: Optional[bytes] = None) -> bytes:
    """`ds` as the bytes of a DICOM file (with `preamble`, 128 bytes, if given)."""
    import io
    if preamble is not None:
        ds.preamble = preamble
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def encoded_against_its_header(ds: Dataset) -> bytes:
    """A malformed file: its header says Explicit VR Little Endian, its data set is Implicit VR
    (pydicom reads it, warning; DCMTK, so Orthanc, does not)."""
    import io

    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    header = io.BytesIO()
    header.write(b"\x00" * 128 + b"DICM")
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    write_file_meta_info(header, ds.file_meta)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, True
    write_dataset(body, ds)
    return header.getvalue() + body.getvalue()
