"""Courier's own destinations: "Courier.Folders" (files), "Courier.Archives" (encrypted 7-Zip) and
"Courier.Buckets" (S3-compatible object storage)."""
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


@dataclass(frozen=True)
class Bucket:
    """An S3-compatible bucket (AWS S3, MinIO, Ceph, GCS's S3 interoperability): one object per
    instance at <Prefix><Layout>. The keys are read from a file or an environment variable; only
    `credential_sources` (the file paths and variable names) may be shown, never the keys."""
    id: str
    bucket: str
    layout: str
    endpoint: Optional[str] = None            # None: AWS S3 of the region
    region: Optional[str] = None
    prefix: str = ""
    access_key: Optional[str] = field(default=None, repr=False)
    secret_key: Optional[str] = field(default=None, repr=False)
    multipart_threshold: int = 8 * 1024 * 1024   # bytes; at or above: multipart upload
    enabled: bool = True
    credential_sources: tuple[str, ...] = ()     # files and variables the keys come from
    convert: Optional[str] = None                # "NIfTI": each series as .nii.gz + .json objects


MULTIPART_MINIMUM_MB = 5          # S3's smallest part (but the last)
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,253}[a-z0-9]$", re.IGNORECASE)
_ENDPOINT = re.compile(r"^https?://[^/@\s]+(/[^@\s]*)?$")


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


def _bucket_prefix(prefix: str, path: str) -> str:
    """The prefix, without a leading "/", ending with "/" when it is not empty; no "." or ".."
    components (an object key is not a path, but many tools map it to one)."""
    parts = [p for p in prefix.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ConfigError(path, "the prefix may not hold '.' or '..' components")
    return "".join(f"{p}/" for p in parts)


def _bucket_credentials(section: Section, path: str, base_dir: str,
                        environ: Mapping[str, str]) -> tuple[Optional[str], Optional[str], tuple[str, ...]]:
    """The access key and secret key, both from a file or a variable, or neither (then boto3's
    own chain: AWS_* variables, ~/.aws, an instance role)."""
    access_named = any(k in section.data for k in ("AccessKeyFile", "AccessKeyEnv"))
    secret_named = any(k in section.data for k in ("SecretKeyFile", "SecretKeyEnv"))
    if not access_named and not secret_named:
        return None, None, ()
    if access_named != secret_named:
        missing = "SecretKeyFile or SecretKeyEnv" if access_named else "AccessKeyFile or AccessKeyEnv"
        raise ConfigError(path, f"set {missing} too", "give both keys, or neither for boto3's own credentials")
    access = read_secret(section, path, base_dir, environ, names=("AccessKeyFile", "AccessKeyEnv"), minimum=1)
    secret = read_secret(section, path, base_dir, environ, names=("SecretKeyFile", "SecretKeyEnv"), minimum=1)
    sources = tuple(resolve(section.data[k], base_dir) if k.endswith("File") else section.data[k]
                    for k in ("AccessKeyFile", "AccessKeyEnv", "SecretKeyFile", "SecretKeyEnv") if k in section.data)
    try:
        return access.decode("ascii"), secret.decode("ascii"), sources
    except UnicodeDecodeError:
        raise ConfigError(path, "the access key and secret key must be ASCII text") from None


def parse_buckets(raw: Any, base_dir: str, taken: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, Bucket]:
    buckets = {}
    for bucket_id, path, section in _destination_sections(raw, "Buckets", taken):
        name = section.get("Bucket", str)
        if not _BUCKET_NAME.match(name):
            raise ConfigError(f"{path}.Bucket", f"{name!r} is not a bucket name", "3 to 255 letters, digits, '.', '-', '_'")
        endpoint = section.get("Endpoint", str, None)
        if endpoint is not None and not _ENDPOINT.match(endpoint):
            raise ConfigError(f"{path}.Endpoint", "expected an http:// or https:// URL without credentials",
                              "for example http://127.0.0.1:9000 (MinIO) or https://storage.googleapis.com")
        region = section.get("Region", str, None)
        if endpoint is None and region is None:
            raise ConfigError(path, "set Endpoint (any S3-compatible store) or Region (AWS S3)")
        convert = _convert(section, path)
        layout = section.get("Layout", str, NIFTI_LAYOUT if convert else DEFAULT_LAYOUT)
        _check_layout(layout, f"{path}.Layout")
        threshold = section.get("MultipartThresholdMB", float, 8)
        if threshold < MULTIPART_MINIMUM_MB:
            raise ConfigError(f"{path}.MultipartThresholdMB", f"must be at least {MULTIPART_MINIMUM_MB}, got {threshold:g}",
                              "S3's parts are 5 MB or more")
        access, secret, sources = _bucket_credentials(section, path, base_dir, environ)
        buckets[bucket_id] = Bucket(bucket_id, name, layout, endpoint.rstrip("/") if endpoint else None, region,
                                    _bucket_prefix(section.get("Prefix", str, ""), f"{path}.Prefix"), access, secret,
                                    int(threshold * 1024 * 1024), section.get("Enabled", bool, True), sources, convert)
    return buckets
