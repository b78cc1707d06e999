"""What every sender is: for each instance, None (acknowledged by the destination) or the error
that kept it from being delivered. A sender never decides retries (courier.engine.policy does).

`send(items)` sends instances stored in Orthanc, by Orthanc ID. `send_files(files)` sends bytes
Courier made (pseudonymized instances), which Orthanc never stores.
"""
from __future__ import annotations

from typing import Optional, Protocol, Sequence

from courier.store.records import ManifestItem

Report = dict[str, Optional[str]]   # Orthanc instance ID -> None if delivered, else the error
FileItem = tuple[ManifestItem, bytes]


class Sender(Protocol):
    def send(self, items: Sequence[ManifestItem]) -> Report: ...

    def send_files(self, files: Sequence[FileItem]) -> Report: ...
