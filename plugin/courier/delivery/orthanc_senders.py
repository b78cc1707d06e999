"""DICOM (C-STORE), DICOMweb (STOW-RS) and Orthanc peers.

Stored instances go through Orthanc's own REST routes in one batch (one association / one STOW
request for many instances), run as an asynchronous Orthanc job so that a cancel or a stop ends
it between instances. Orthanc answers a failed batch with a single error: a refusal sends the
halves again down to the refused instances (sender.send_bisecting), a destination that is down
ends the attempt. Never `"Permissive": true`: Orthanc 1.10.1 then reports FailedInstancesCount 0
for instances the destination refused (measured) and for a peer that refused the connection.

Courier's own bytes (pseudonymized instances, which Orthanc never stores): C-STORE of a batch on
one association with DCMTK's storescu (delivery.dcmtk_store), then whatever it did not deliver
through Orthanc's `/modalities/{id}/store-straight` one instance at a time (Orthanc's C++ DICOM
client, one association each; its answers and errors decide). Neither holds the GIL while the
worker waits, so workers overlap (pynetdicom in the worker: 110 instances/s against 175). STOW-RS
and peer uploads with requests.
"""
from __future__ import annotations

import io
import uuid
from typing import Optional, Sequence

import requests

from courier.config.nodes import Node
from courier.deid.pixel_tail import Parts
from courier.delivery import dcmtk_store
from courier.delivery.sender import (
    Check,
    Collected,
    Failed,
    FileItem,
    Files,
    Report,
    Started,
    filled,
    never,
    send_bisecting,
    send_each,
)
from courier.errors import DeliveryError, Refused, store_failure
from courier.orthanc_rest import JobFailed, OrthancHttpError, OrthancRest
from courier.store.records import ManifestItem
from courier.tokens import Tokens, unauthorized


class OrthancRouteSender:
    """DICOM (C-STORE), DICOMweb (STOW-RS) and Orthanc peers: stored instances through Orthanc's
    REST API as one asynchronous job per batch (cancellable), Courier's own bytes directly."""

    PATHS = {"dicom": "/modalities/{}/store", "dicomweb": "/dicom-web/servers/{}/stow", "peer": "/peers/{}/store"}
    stored_in_one_call = True       # a batch of stored instances is one Orthanc job: worth making larger

    def __init__(self, rest: OrthancRest, node: Node, local_aet: str, timeout: float,
                 tokens: Optional[Tokens] = None) -> None:
        self.rest, self.node, self.local_aet, self.timeout, self.tokens = rest, node, local_aet, timeout, tokens
        self.path = self.PATHS[node.kind].format(node.id)
        self.batches = node.kind == "dicom" and not node.tls and dcmtk_store.available()

    def _send_batch(self, ids: Sequence[str], cancelled: Check) -> None:
        try:
            self.rest.run_job(self.path, {"Resources": list(ids)}, cancelled)
        except JobFailed as exc:
            if self.node.kind == "dicomweb" and self._refuses_credentials():
                raise DeliveryError(unauthorized(self.node.id)) from None
            raise store_failure(self.node.kind, exc.details) from None
        except OrthancHttpError as exc:
            if exc.status == 404:
                raise Refused(f"{exc}: the instance is no longer in Orthanc", retriable=False) from None
            raise

    def _refuses_credentials(self) -> bool:
        """After a failed STOW job (orthanc-dicomweb gives no reason): does the server answer 401?
        Then a token from an endpoint is renewed at once."""
        try:
            self.rest.post_json(f"/dicom-web/servers/{self.node.id}/get",
                                {"Uri": "/studies", "Arguments": {"limit": "1"}}, timeout=60)
        except OrthancHttpError as exc:
            if exc.status == 401:
                if self.tokens is not None:
                    self.tokens.refused(self.node.id)
                return True
        except DeliveryError:
            pass
        return False

    def send(self, items: Sequence[ManifestItem], cancelled: Check = never) -> Report:
        return send_bisecting([i.instance_id for i in items], lambda ids: self._send_batch(ids, cancelled), cancelled)

    def send_files(self, files: Sequence[FileItem], cancelled: Check = never) -> Report:
        return filled(self._files(len(files), sum(len(data) for _, data in files), cancelled), files).start()()

    def open_files(self, items: Sequence[ManifestItem], cancelled: Check = never) -> Files:
        """Where Courier's bytes for `items` go as they are made (decided by the originals' sizes)."""
        return self._files(len(items), sum(item.size for item in items), cancelled)

    def _files(self, count: int, size: int, cancelled: Check) -> Files:
        """A DICOM batch worth it (dcmtk_store.worth_a_batch) straight to storescu's scratch folder,
        sent on one association while the caller makes the next; anything else kept in memory and
        sent at once."""
        if self.batches and not cancelled() and dcmtk_store.worth_a_batch(count, size):
            return StorescuFiles(self, dcmtk_store.Writing(), cancelled)
        return Collected(lambda files: self._send_files_now(files, cancelled))

    def _send_files_now(self, files: Sequence[FileItem], cancelled: Check) -> Report:
        if self.node.kind == "dicom":
            return send_each(files, self._store_straight, cancelled)
        if self.node.kind == "peer":
            return send_each(files, lambda data: self._post(self.node.url.rstrip("/") + "/instances", data,
                                                             "application/dicom"), cancelled)
        if cancelled():
            return {item.instance_id: Failed("not sent: cancelled", interrupted=True) for item, _ in files}
        try:
            headers = self.tokens.headers(self.node.id) if self.tokens is not None else {}
        except DeliveryError as exc:
            return {item.instance_id: Failed(str(exc), down=True) for item, _ in files}
        report = stow_files(self.node, files, self.timeout, headers)
        if self.tokens is not None and any(f is not None and "HTTP 401" in f.reason for f in report.values()):
            self.tokens.refused(self.node.id)
        return report

    def _store_straight(self, data: bytes) -> None:
        try:
            self.rest.post_bytes(f"/modalities/{self.node.id}/store-straight", data)
        except OrthancHttpError as exc:
            raise store_failure("dicom", str(exc)) from None

    def _post(self, url: str, data: bytes, content_type: str) -> requests.Response:
        auth = (self.node.username, self.node.password) if self.node.username else None
        try:
            response = requests.post(url, data=data, headers={"Content-Type": content_type}, auth=auth,
                                     timeout=self.timeout)
        except requests.RequestException as exc:
            raise DeliveryError(f"{self.node.id}: {type(exc).__name__}") from None
        if response.status_code >= 500:
            raise DeliveryError(f"{self.node.id}: HTTP {response.status_code}")
        if response.status_code >= 300:
            raise Refused(f"{self.node.id}: HTTP {response.status_code}", retriable=False)
        return response


class StorescuFiles:
    """A DICOM batch of Courier's bytes written to storescu's scratch folder as they are made, sent
    on one association; what the destination did not acknowledge then goes through store-straight,
    one instance at a time (Orthanc's answers and errors decide)."""

    def __init__(self, sender: OrthancRouteSender, writing: dcmtk_store.Writing, cancelled: Check) -> None:
        self.sender, self.writing, self.cancelled = sender, writing, cancelled

    @property
    def items(self) -> list[ManifestItem]:
        return self.writing.items

    def __len__(self) -> int:
        return len(self.writing)

    def add(self, item: ManifestItem, parts: Parts) -> None:
        self.writing.add(item, parts)

    def start(self) -> Started:
        node = self.sender.node
        batch = self.writing.start(node, node.local_aet or self.sender.local_aet, self.sender.timeout, self.cancelled)

        def finish() -> Report:
            done = batch.wait()
            report: Report = {instance_id: None for instance_id in done}
            report.update(send_each(batch.left, self.sender._store_straight, self.cancelled))
            return report
        return finish

    def discard(self) -> None:
        self.writing.discard()


def stow_files(node: Node, files: Sequence[FileItem], timeout: float, headers: Optional[dict] = None) -> Report:
    """One STOW-RS request (with `headers`: the server's Authorization); instances listed in
    FailedSOPSequence (0008,1198) failed."""
    from pydicom import dcmread

    boundary = uuid.uuid4().hex
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n"
                    for _, data in files) + b"--" + boundary.encode() + b"--\r\n"
    by_uid = {str(dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID): item
              for item, data in files}
    auth = (node.username, node.password) if node.username else None
    try:
        response = requests.post(node.url.rstrip("/") + "/studies", data=body, auth=auth, timeout=timeout,
                                 headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                                          "Accept": "application/dicom+json", **(headers or {})})
    except requests.RequestException as exc:
        return {item.instance_id: Failed(f"{node.id}: {type(exc).__name__}") for item, _ in files}
    if response.status_code == 401:
        return {item.instance_id: Failed(unauthorized(node.id), down=True) for item, _ in files}
    if response.status_code not in (200, 202):
        return {item.instance_id: Failed(f"{node.id}: STOW-RS HTTP {response.status_code}") for item, _ in files}
    report: Report = {item.instance_id: None for item, _ in files}
    try:
        failed = (response.json() or {}).get("00081198", {}).get("Value", [])
    except ValueError:
        failed = []
    for entry in failed:
        uid = entry.get("00081155", {}).get("Value", [None])[0]
        if uid in by_uid:
            report[by_uid[uid].instance_id] = Failed(f"{node.id}: STOW-RS refused the instance", permanent=True)
    return report
