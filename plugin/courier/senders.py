"""One sender per destination kind. A sender returns, for each instance, None (acknowledged by
the destination) or the error that kept it from being delivered; it never decides retries.

DICOM, DICOMweb and peer sends go through Orthanc's own REST routes in one batch (one
association / one STOW request for many instances). Orthanc answers a batch with a single
error, so when a batch fails the sender retries its instances one by one to learn exactly
which were acknowledged, and stops early when the destination is plainly down.
Never `"Permissive": true`: Orthanc 1.10.1 then reports FailedInstancesCount 0 for a peer
that refused the connection.
"""
from __future__ import annotations

import io
import os
import tempfile
from typing import Callable, Mapping, Optional, Protocol, Sequence

from .config import Folder
from .errors import DeliveryError
from .layout import contained_path, relative_path
from .orthanc_rest import OrthancRest
from .store import ManifestItem

Report = dict[str, Optional[str]]   # Orthanc instance ID -> None if delivered, else the error


class Sender(Protocol):
    def send(self, items: Sequence[ManifestItem]) -> Report: ...


def batch_then_each(ids: Sequence[str], send: Callable[[Sequence[str]], None], give_up_after: int = 2) -> Report:
    """Send all ids at once; on failure, one by one, giving up after `give_up_after` failures
    in a row with nothing delivered (the destination is down: no point in N timeouts)."""
    try:
        send(ids)
        return {i: None for i in ids}
    except DeliveryError as exc:
        if len(ids) == 1:
            return {ids[0]: str(exc)}
        first_error = str(exc)
    report: Report = {}
    failures_in_a_row = 0
    for instance_id in ids:
        if failures_in_a_row >= give_up_after and None not in report.values():
            report[instance_id] = f"not sent, destination failing: {first_error}"
            continue
        try:
            send([instance_id])
            report[instance_id] = None
            failures_in_a_row = 0
        except DeliveryError as exc:
            report[instance_id] = str(exc)
            failures_in_a_row += 1
    return report


class OrthancRouteSender:
    """DICOM (C-STORE), DICOMweb (STOW-RS) and Orthanc peers, through Orthanc's REST API."""

    PATHS = {"dicom": "/modalities/{}/store", "dicomweb": "/dicom-web/servers/{}/stow", "peer": "/peers/{}/store"}

    def __init__(self, rest: OrthancRest, kind: str, node_id: str) -> None:
        self.rest, self.path = rest, self.PATHS[kind].format(node_id)

    def _send(self, ids: Sequence[str]) -> None:
        self.rest.post_json(self.path, {"Resources": list(ids), "Synchronous": True})

    def send(self, items: Sequence[ManifestItem]) -> Report:
        return batch_then_each([i.instance_id for i in items], self._send)


class FolderSender:
    """Writes each instance under the folder, at the path its layout gives, atomically."""

    def __init__(self, rest: OrthancRest, folder: Folder) -> None:
        self.rest, self.folder = rest, folder

    def _write(self, item: ManifestItem) -> None:
        import pydicom

        data = self.rest.get_bytes(f"/instances/{item.instance_id}/file")
        dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        tags = {element.keyword: str(element.value) for element in dataset if element.keyword and element.VR != "SQ"}
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

    def send(self, items: Sequence[ManifestItem]) -> Report:
        report: Report = {}
        for item in items:
            try:
                self._write(item)
                report[item.instance_id] = None
            except DeliveryError as exc:
                report[item.instance_id] = str(exc)
        return report


def build_senders(rest: OrthancRest, destinations: Mapping[str, str], folders: Mapping[str, Folder]) -> dict[str, Sender]:
    return {node_id: FolderSender(rest, folders[node_id]) if kind == "folder" else OrthancRouteSender(rest, kind, node_id)
            for node_id, kind in destinations.items()}
