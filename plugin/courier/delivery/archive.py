"""Encrypted 7-Zip archive destinations (py7zr: AES-256 with encrypted headers)."""
from __future__ import annotations

import os
import tempfile
from typing import Optional, Sequence

from courier.config.destinations import Archive
from courier.delivery.layout import layout_tags, relative_path, safe_component
from courier.delivery.nifti import Converter, by_series
from courier.delivery.sender import Check, Failed, FileItem, Report, never
from courier.store.records import ManifestItem


class ArchiveSender:
    """Encrypted 7-Zip archives (AES-256, encrypted headers: file names are hidden too), one per
    study and batch, under <Path>/<subfolder>/<StudyInstanceUID>[-N].7z, written to a temporary
    file and renamed, so a reader never sees half an archive. Needs the bytes (send_files)."""

    per_task = True               # the Deliverer gives it a whole task (a study) at a time

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.converter = Converter(f"Courier.Archives.{archive.id}") if archive.convert == "NIfTI" else None

    def send(self, items: Sequence[ManifestItem], cancelled: Check = never) -> Report:
        return {item.instance_id: Failed("an archive needs the instances' bytes", permanent=True) for item in items}

    def send_files(self, files: Sequence[FileItem], cancelled: Check = never, subfolder: str = "routes",
                   password: Optional[str] = None) -> Report:
        import py7zr

        password = password or self.archive.password
        if not password:
            return {item.instance_id: Failed(f"archive {self.archive.id}: no password"
                                             " (set PasswordFile/PasswordEnv or the job's ArchivePassword)", permanent=True)
                    for item, _ in files}
        studies: dict[str, list[tuple[ManifestItem, bytes, str]]] = {}
        report: Report = {}
        if self.converter is not None:                # each series as what dcm2niix made of it
            for uid, members in by_series(files).items():
                converted = self.converter.convert(uid, [data for _, data, _ in members])
                if isinstance(converted, Failed):
                    report.update({item.instance_id: converted for item, _, _ in members})
                    continue
                name = relative_path(self.archive.layout, members[0][2])
                entries = [(item, b"", "") for item, _, _ in members[1:]]      # acknowledged with the series
                entries += [(members[0][0], data, name + suffix) for suffix, data in converted.items()]
                studies.setdefault(members[0][2].get("StudyInstanceUID", "unknown"), []).extend(entries)
        else:
            for item, data in files:
                tags = layout_tags(data)
                studies.setdefault(tags.get("StudyInstanceUID", "unknown"), []).append(
                    (item, data, relative_path(self.archive.layout, tags)))
        for study, members in studies.items():
            if cancelled():
                report.update({item.instance_id: Failed("not written: cancelled", interrupted=True) for item, _, _ in members})
                continue
            try:
                folder = os.path.join(self.archive.path, safe_component(subfolder))   # one safe component
                os.makedirs(folder, exist_ok=True)
                target = os.path.join(folder, safe_component(study) + ".7z")
                part = 1
                while os.path.exists(target):
                    part += 1
                    target = os.path.join(folder, f"{safe_component(study)}-{part}.7z")
                handle, temporary = tempfile.mkstemp(dir=folder, prefix=".courier-", suffix=".7z")
                os.close(handle)
                with py7zr.SevenZipFile(temporary, "w", password=password, header_encryption=True) as archive:
                    for _, data, name in members:
                        if name:
                            archive.writestr(data, name)
                os.replace(temporary, target)
                report.update({item.instance_id: None for item, _, _ in members})
            except (OSError, ValueError) as exc:
                report.update({item.instance_id: Failed(f"archive {self.archive.id}: {exc}") for item, _, _ in members})
        return report
