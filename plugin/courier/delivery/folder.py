"""Folder destinations: each instance written under the folder at the path its layout gives, atomically."""
from __future__ import annotations

import os
import tempfile
from typing import Optional, Sequence

from courier.config.destinations import Folder
from courier.delivery.layout import contained_path, layout_tags, relative_path
from courier.delivery.sender import Check, Failed, FileItem, Report, failure, never
from courier.errors import DeliveryError
from courier.orthanc_rest import OrthancRest
from courier.store.records import ManifestItem


class FolderSender:
    """Writes each instance under the folder, at the path its layout gives, atomically."""

    def __init__(self, rest: OrthancRest, folder: Folder) -> None:
        self.rest, self.folder = rest, folder

    def _write(self, item: ManifestItem, data: Optional[bytes] = None) -> None:

        if data is None:
            data = self.rest.instance_file(item.instance_id, item.size)
        tags = layout_tags(data)
        try:
            target = contained_path(self.folder.path, relative_path(self.folder.layout, tags))
        except ValueError as exc:
            raise DeliveryError(str(exc), retriable=False) from None
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".courier-")
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temporary, target)
        except OSError as exc:
            raise DeliveryError(f"cannot write to folder {self.folder.id!r}: {exc.strerror}") from None

    def send(self, items: Sequence[ManifestItem], cancelled: Check = never) -> Report:
        return self.send_files([(item, b"") for item in items], cancelled)

    def send_files(self, files: Sequence[FileItem], cancelled: Check = never) -> Report:
        report: Report = {}
        for item, data in files:
            if cancelled():
                report[item.instance_id] = Failed("not written: cancelled", interrupted=True)
                continue
            try:
                self._write(item, data or None)
                report[item.instance_id] = None
            except DeliveryError as exc:
                report[item.instance_id] = failure(exc)
        return report
