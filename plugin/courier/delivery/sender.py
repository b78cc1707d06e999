"""What every sender is: for each instance, None (acknowledged by the destination) or a Failed
saying why not and whether trying again can help. A sender never decides retries
(courier.engine.policy does), and it stops when `cancelled()` says so.

`send(items, cancelled)` sends instances stored in Orthanc, by Orthanc ID. `send_files(files,
cancelled)` sends bytes Courier made (pseudonymized instances), which Orthanc never stores; a
sender may also have `open_files`, which takes each file as it is made and starts sending them
while the caller makes the next ones (see `open_files` here).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol, Sequence, TypeVar

from courier.deid.pixel_tail import Parts, joined
from courier.errors import Cancelled, DeliveryError, Refused
from courier.store.records import ManifestItem

FileItem = tuple[ManifestItem, bytes]
Check = Callable[[], bool]                 # True when the sending should stop (task cancelled, router stopping)


@dataclass(frozen=True)
class Failed:
    reason: str
    permanent: bool = False                # refused for good (or quarantined): retrying cannot help
    interrupted: bool = False              # not tried: cancelled or stopping
    down: bool = False                     # the destination did not answer: sending more now is pointless


Report = dict[str, Optional[Failed]]       # Orthanc instance ID -> None if delivered
Started = Callable[[], Report]             # a send in flight: called once, it waits and gives the report


class Sender(Protocol):
    def send(self, items: Sequence[ManifestItem], cancelled: Check) -> Report: ...

    def send_files(self, files: Sequence[FileItem], cancelled: Check) -> Report: ...


class Files(Protocol):
    """Courier's bytes for one send, given one file at a time as they are made (`add`), then sent
    (`start`) or dropped (`discard`: the attempt ended before they could go)."""
    items: list[ManifestItem]

    def __len__(self) -> int: ...

    def add(self, item: ManifestItem, parts: Parts) -> None: ...

    def start(self) -> Started: ...

    def discard(self) -> None: ...


class Collected:
    """Files kept in memory, each joined, until `start` sends them all at once with `send(files)`
    (and reports at once: nothing is left in flight)."""

    def __init__(self, send: Callable[[Sequence[FileItem]], Report]) -> None:
        self.send = send
        self.files: list[FileItem] = []

    @property
    def items(self) -> list[ManifestItem]:
        return [item for item, _ in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def add(self, item: ManifestItem, parts: Parts) -> None:
        self.files.append((item, joined(parts)))

    def start(self) -> Started:
        report = self.send(self.files)
        return lambda: report

    def discard(self) -> None:
        self.files = []


class Fillable(Protocol):
    def add(self, item: ManifestItem, parts: Parts) -> None: ...

    def discard(self) -> None: ...


F = TypeVar("F", bound=Fillable)


def filled(files: F, contents: Sequence[FileItem]) -> F:
    """`files` with each file of `contents` added (and dropped if adding one fails)."""
    try:
        for item, data in contents:
            files.add(item, (data,))
    except BaseException:
        files.discard()
        raise
    return files


def open_files(sender: Sender, items: Sequence[ManifestItem], cancelled: Check) -> Files:
    """Where the files made for `items` go as they are made: the sender's own `open_files` if it
    has one (DICOM with storescu: straight to its scratch folder), else kept in memory."""
    begin = getattr(sender, "open_files", None)
    if begin is not None:
        return begin(items, cancelled)
    return Collected(lambda files: sender.send_files(files, cancelled))


def never() -> bool:
    return False


def failure(exc: DeliveryError) -> Failed:
    if isinstance(exc, Cancelled):
        return Failed(str(exc), interrupted=True)
    return Failed(str(exc), permanent=not exc.retriable)


def send_bisecting(ids: Sequence[str], send_batch: Callable[[Sequence[str]], None], cancelled: Check) -> Report:
    """Send all ids in one batch (one association); when the destination refuses an instance of it,
    send each half again, down to the refused instances, so that everything else is delivered and
    exactly the refused ones are reported, wherever they are in the batch. A destination that is
    down (connection refused, timeout, association rejected) ends the attempt at once: the rest is
    reported "not sent" without N more timeouts."""
    report: Report = {}
    pending: list[list[str]] = [list(ids)]
    stop: Optional[Failed] = None
    while pending:
        batch = pending.pop(0)
        if stop is None and cancelled():
            stop = Failed("not sent: cancelled", interrupted=True)
        if stop is not None:
            report.update({i: stop for i in batch})
            continue
        try:
            send_batch(batch)
            report.update({i: None for i in batch})
        except Refused as exc:
            if len(batch) == 1:
                report[batch[0]] = failure(exc)
            else:
                middle = len(batch) // 2
                pending[:0] = [batch[:middle], batch[middle:]]
        except Cancelled:
            stop = Failed("not sent: cancelled", interrupted=True)
            report.update({i: stop for i in batch})
        except DeliveryError as exc:
            report[batch[0]] = Failed(str(exc), permanent=not exc.retriable, down=True)
            stop = Failed(f"not sent, destination down: {exc}", down=True)
            report.update({i: stop for i in batch[1:]})
    return report


def send_each(files: Sequence[FileItem], send_one: Callable[[bytes], object], cancelled: Check,
              read: Optional[Callable[[ManifestItem], bytes]] = None) -> Report:
    """One instance at a time (Courier's own bytes, or with `read` the bytes of each item read just
    before it is sent, so that a chunk is never all in memory): a refusal skips that instance, a
    destination down or a cancel ends the attempt; an item that cannot be read fails alone."""
    report: Report = {}
    stop: Optional[Failed] = None
    for item, data in files:
        if stop is None and cancelled():
            stop = Failed("not sent: cancelled", interrupted=True)
        if stop is not None:
            report[item.instance_id] = stop
            continue
        if read is not None:
            try:
                data = read(item)
            except DeliveryError as exc:        # Orthanc's side: this instance only
                report[item.instance_id] = failure(exc)
                continue
        try:
            send_one(data)
            report[item.instance_id] = None
        except Refused as exc:
            report[item.instance_id] = failure(exc)
        except Cancelled:
            stop = Failed("not sent: cancelled", interrupted=True)
            report[item.instance_id] = stop
        except DeliveryError as exc:
            report[item.instance_id] = Failed(str(exc), permanent=not exc.retriable, down=True)
            stop = Failed(f"not sent, destination down: {exc}", down=True)
    return report
