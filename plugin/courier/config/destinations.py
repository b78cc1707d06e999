"""Courier's own destinations: "Courier.Folders" (files) and "Courier.Archives" (encrypted 7-Zip)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from courier.config.reader import Section, resolve, type_name
from courier.config.secrets import read_secret
from courier.errors import ConfigError

DEFAULT_LAYOUT = "{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm"
NIFTI_LAYOUT = "{StudyInstanceUID}/{SeriesInstanceUID}"      # of a series; dcm2niix's extensions are added


@dataclass(frozen=True)
class Folder:
    id: str
    path: str
    layout: str
    enabled: bool = True          # false: its tasks wait
    convert: Optional[str] = None     # "NIfTI": each series written as .nii.gz + BIDS .json by dcm2niix


@dataclass(frozen=True)
class Archive:
    """Encrypted 7-Zip archives (one per study) under a folder."""
    id: str
    path: str
    layout: str
    password: Optional[str] = field(default=None, repr=False)   # default password; a job may give its own
    enabled: bool = True
    convert: Optional[str] = None     # "NIfTI": the archive holds each series as .nii.gz + .json


_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9]+)\}")


def _check_layout(layout: str, path: str) -> None:
    from pydicom.datadict import tag_for_keyword

    for keyword in _PLACEHOLDER.findall(layout):
        if tag_for_keyword(keyword) is None:
            raise ConfigError(path, f"{{{keyword}}} is not a DICOM keyword",
                              "placeholders are keywords such as {PatientID} or {SeriesNumber}")
    if not layout.strip("/") or layout.endswith("/"):
        raise ConfigError(path, "the layout must end with a file name")


def _destination_sections(raw: Any, name: str, taken: Mapping[str, str]):
    """(id, JSON path, section) of each entry of Courier.Folders or Courier.Archives."""
    if not isinstance(raw, dict):
        raise ConfigError(f"Courier.{name}", f"expected an object, got {type_name(raw)}")
    for entry_id, spec in raw.items():
        path = f"Courier.{name}.{entry_id}"
        if entry_id in taken:
            raise ConfigError(path, f"the id is also used by a {taken[entry_id]} destination",
                              "destination ids must be unique across registries")
        yield entry_id, path, Section(spec, path, f"Courier.{name}.{{id}}")


def _convert(section: Section, path: str) -> Optional[str]:
    convert = section.get("Convert", str, None)
    if convert is not None and convert != "NIfTI":
        raise ConfigError(f"{path}.Convert", f"unknown conversion {convert!r}", "NIfTI, or leave it out for DICOM files")
    return convert


def parse_folders(raw: Any, base_dir: str, taken: Mapping[str, str]) -> dict[str, Folder]:
    folders = {}
    for folder_id, path, section in _destination_sections(raw, "Folders", taken):
        target = section.get("Path", str)
        convert = _convert(section, path)
        layout = section.get("Layout", str, NIFTI_LAYOUT if convert else DEFAULT_LAYOUT)
        _check_layout(layout, f"{path}.Layout")
        folders[folder_id] = Folder(folder_id, resolve(target, base_dir), layout, section.get("Enabled", bool, True),
                                    convert)
    return folders


def parse_archives(raw: Any, base_dir: str, taken: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, Archive]:
    archives = {}
    for archive_id, path, section in _destination_sections(raw, "Archives", taken):
        convert = _convert(section, path)
        layout = section.get("Layout", str, NIFTI_LAYOUT if convert else DEFAULT_LAYOUT)
        _check_layout(layout, f"{path}.Layout")
        password = None
        if "PasswordFile" in section.data or "PasswordEnv" in section.data:
            password = read_secret(section, path, base_dir, environ, names=("PasswordFile", "PasswordEnv"),
                                   minimum=8).decode()
        archives[archive_id] = Archive(archive_id, resolve(section.get("Path", str), base_dir), layout, password,
                                       section.get("Enabled", bool, True), convert)
    return archives
