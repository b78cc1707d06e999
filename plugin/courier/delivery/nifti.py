"""Folder destinations with `Convert: "NIfTI"`: each series of a task converted by Debian's
dcm2niix (gzip, BIDS sidecar, dcm2niix's own anonymization on) and written under the folder at the
path its layout gives (`<Layout>.nii.gz`, `<Layout>.json`, and what dcm2niix adds: `_e2`, `.bval`,
`.bvec`...). What is converted is what Courier was to send (pseudonymized first when the route or
job says so). A series dcm2niix cannot convert is a permanent failure of its instances, with
dcm2niix's reason, on the task: never dropped silently."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import Optional, Sequence, Union

from courier.config.destinations import Folder
from courier.delivery.dcmtk_store import PREFIX, scratch_root
from courier.delivery.layout import contained_path, layout_tags, relative_path
from courier.delivery.sender import Check, Failed, FileItem, Report, never
from courier.errors import ConfigError
from courier.store.records import ManifestItem

TIMEOUT = 600.0


class Converter:
    """Runs dcm2niix on the instances of one series, in a temporary folder of the scratch space
    (RAM when there is /dev/shm; a folder a router killed meanwhile left is removed at start-up,
    with storescu's: dcmtk_store.remove_leftovers), never beside the destination's files."""

    def __init__(self, path: str) -> None:
        self.program = shutil.which("dcm2niix")
        if self.program is None:
            raise ConfigError(f"{path}.Convert", "dcm2niix is not installed",
                              "install Debian's dcm2niix package (make install does)")

    def convert(self, uid: str, datas: Sequence[bytes]) -> Union[dict, Failed]:
        """{suffix: bytes} (".nii.gz", ".json", "_e2.nii.gz"...), or Failed with dcm2niix's reason."""
        try:
            with tempfile.TemporaryDirectory(dir=scratch_root(), prefix=f"{PREFIX}{os.getpid()}-nifti-") as work:
                source, output = os.path.join(work, "dicom"), os.path.join(work, "out")
                os.mkdir(source)
                os.mkdir(output)
                for index, data in enumerate(datas):
                    with open(os.path.join(source, f"{index:06d}.dcm"), "wb") as handle:
                        handle.write(data)
                try:
                    ran = subprocess.run([self.program, "-z", "y", "-b", "y", "-ba", "y", "-f", "series", "-o", output,
                                          source], capture_output=True, text=True, timeout=TIMEOUT)
                except subprocess.TimeoutExpired:
                    return Failed(f"dcm2niix did not convert series {uid} within {TIMEOUT:g} s", permanent=True)
                made = sorted(os.listdir(output))
                if ran.returncode != 0 or not any(name.endswith((".nii", ".nii.gz")) for name in made):
                    return Failed(f"dcm2niix could not convert series {uid}: {_reason(ran)}", permanent=True)
                converted = {}
                for name in made:                      # series.nii.gz, series.json, series_e2.nii.gz ...
                    with open(os.path.join(output, name), "rb") as handle:
                        converted[name[len("series"):]] = handle.read()
                return converted
        except OSError as exc:
            return Failed(f"cannot convert series {uid}: {exc.strerror}")


def by_series(files: Sequence[FileItem]) -> dict[str, list[tuple[ManifestItem, bytes, dict]]]:
    """The files of a task by SeriesInstanceUID, each with its top-level tags (for the layout)."""

    series: dict[str, list[tuple[ManifestItem, bytes, dict]]] = {}
    for item, data in files:
        tags = layout_tags(data)
        series.setdefault(tags.get("SeriesInstanceUID", ""), []).append((item, data, tags))
    return series


class NiftiSender:
    """One call per task (as archives): a series is converted whole, never cut in chunks."""

    per_task = True

    def __init__(self, folder: Folder) -> None:
        self.folder = folder
        self.converter = Converter(f"Courier.Folders.{folder.id}")

    def send(self, items: Sequence[ManifestItem], cancelled: Check = never) -> Report:
        return {item.instance_id: Failed("a NIfTI conversion needs the instances' bytes", permanent=True) for item in items}

    def send_files(self, files: Sequence[FileItem], cancelled: Check = never, subfolder: str = "",
                   password: Optional[str] = None) -> Report:
        report: Report = {}
        for uid, members in by_series(files).items():
            if cancelled():
                report.update({item.instance_id: Failed("not converted: cancelled", interrupted=True)
                               for item, _, _ in members})
                continue
            outcome = self._write(uid, members)
            report.update({item.instance_id: outcome for item, _, _ in members})
        return report

    def _write(self, uid: str, members: list) -> Optional[Failed]:
        try:
            base = contained_path(self.folder.path, relative_path(self.folder.layout, members[0][2]))
        except ValueError as exc:
            return Failed(str(exc), permanent=True)
        try:
            os.makedirs(os.path.dirname(base), exist_ok=True)
            converted = self.converter.convert(uid, [data for _, data, _ in members])
            if isinstance(converted, Failed):
                return converted
            for suffix, data in converted.items():      # each written aside, then renamed
                handle, temporary = tempfile.mkstemp(dir=os.path.dirname(base), prefix=".courier-")
                try:
                    with os.fdopen(handle, "wb") as out:
                        out.write(data)
                    os.replace(temporary, base + suffix)
                except OSError:
                    if os.path.exists(temporary):
                        os.unlink(temporary)
                    raise
        except OSError as exc:
            return Failed(f"cannot write to folder {self.folder.id!r}: {exc.strerror}")
        return None


def _reason(ran: subprocess.CompletedProcess) -> str:
    """dcm2niix's own words: its last error or warning line."""
    lines = [line.strip() for line in (ran.stdout + "\n" + ran.stderr).splitlines() if line.strip()]
    wanted = [line for line in lines if line.lower().startswith(("error", "warning"))]
    return (wanted or lines or [f"exit status {ran.returncode}"])[-1][:300]
