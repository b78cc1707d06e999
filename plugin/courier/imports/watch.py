"""Watched folders: files dropped below `Courier.Imports.{id}.Path` are imported once the folder
they came in is complete, then kept, moved or deleted; what cannot be imported goes to the
rejected folder with a `.reason` file beside it.

A unit is a folder directly below Path (everything under it, with Recursive), or the files lying
in Path itself, together. It is complete when it is `Renamed` (Sendit's rule: a folder whose name still ends
in `.tmp...` is being written) or when none of its files changed for `QuietSeconds`. File events
(watchdog) wake the thread; a rescan every `RescanSeconds` is the safety net, since events are
lost on network mounts. Nothing is moved or deleted before Orthanc stored it and its unit was
routed; a router killed at any point redoes at its next start only what is not recorded as done.
One router at a time watches a folder (a lock for the life of the process, on the store); the
others try again every CLAIM_SECONDS, so when it dies another takes the folder over.
"""
from __future__ import annotations

import fnmatch
import logging
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from courier import threads
from courier.config.imports import ImportFolder
from courier.config.routes import Route
from courier.errors import DeliveryError
from courier.imports.importer import Importer, target_of
from courier.store.imports import REJECTED, ROUTED
from courier.store.store import Store

log = logging.getLogger("courier.imports")

WRITING = re.compile(r"\.tmp[^/]*$")
LOOSE = "."                                     # the unit of the files lying in Path itself
CLAIM_SECONDS = 10.0                            # how often a folder another router watches is tried again


@dataclass(frozen=True)
class Unit:
    name: str                                   # the folder's (or the file's) name below Path
    files: tuple[tuple[str, int, float], ...]   # (path relative to Path, size, mtime)
    complete: bool


def units(folder: ImportFolder, now: float) -> list[Unit]:
    """The units under the folder's Path, oldest change first (the moved and rejected folders left out)."""
    root = folder.path
    skip = {os.path.realpath(folder.move_to), os.path.realpath(folder.rejected)}
    found: dict[str, list[tuple[str, int, float]]] = {}
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    for entry in entries:
        if os.path.realpath(entry.path) in skip or entry.name.startswith("."):
            continue
        if entry.is_file(follow_symlinks=False) and fnmatch.fnmatch(entry.name, folder.pattern):
            if folder.complete_when == "Renamed" and WRITING.search(entry.name):
                continue                            # a file still being written under its temporary name
            info = entry.stat()
            found.setdefault(LOOSE, []).append((entry.name, info.st_size, info.st_mtime))
        elif entry.is_dir(follow_symlinks=False) and folder.recursive:
            files = []
            for base, dirs, names in os.walk(entry.path):
                dirs[:] = sorted(d for d in dirs if os.path.realpath(os.path.join(base, d)) not in skip)
                for name in sorted(names):
                    full = os.path.join(base, name)
                    if fnmatch.fnmatch(name, folder.pattern) and not name.endswith(".reason") and not os.path.islink(full):
                        info = os.stat(full)
                        files.append((os.path.relpath(full, root), info.st_size, info.st_mtime))
            found[entry.name] = files
    result = []
    for name, files in found.items():
        if folder.complete_when == "Renamed":
            complete = name == LOOSE or not WRITING.search(name)
        else:
            complete = bool(files) and now - max(m for _, _, m in files) >= folder.quiet_seconds
        result.append(Unit(name, tuple(files), complete))
    return sorted(result, key=lambda u: max((m for _, _, m in u.files), default=0))


class FolderWatcher:
    """One thread for every watched folder of this router."""

    def __init__(self, folders: Mapping[str, ImportFolder], routes: Sequence[Route], store: Store, importer: Importer,
                 on_tasks=lambda: None) -> None:
        self.folders, self.routes, self.store, self.importer = dict(folders), tuple(routes), store, importer
        self.on_tasks = on_tasks
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._observer = None
        self._handler = None
        self._claimed_at = 0.0
        self._told: set[str] = set()
        self.watching: list[str] = []
        self.running = False

    def start(self) -> None:
        if not self.folders:
            return
        for folder in self.folders.values():
            os.makedirs(folder.path, exist_ok=True)
        self._observe()
        self._claim_free()
        self._thread = threads.Thread(target=self._loop, name="courier-imports", daemon=True)
        self._thread.start()
        self.running = True

    def _claim_free(self) -> None:
        """Watch the folders no other live router watches (at start, and again later: a router
        that held one and died lets it go with its process)."""
        self._claimed_at = time.monotonic()
        for folder_id, folder in self.folders.items():
            if folder_id in self.watching:
                continue
            if self.store.database.hold(f"import:{folder_id}"):
                self.watching.append(folder_id)
                if self._observer is not None:
                    self._observer.schedule(self._handler, folder.path, recursive=True)
                log.warning("import %s: watching %s", folder_id, folder.path)
            elif folder_id not in self._told:
                self._told.add(folder_id)
                log.warning("import %s: another router watches %s", folder_id, folder.path)

    def _observe(self) -> None:
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:                         # the rescan alone then
            return
        wake = self._wake

        class Wake(FileSystemEventHandler):
            def on_any_event(self, event) -> None:  # noqa: ANN001 - watchdog's event
                wake.set()
        observer = Observer()
        self._handler = Wake()
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        self.running = False
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
        if self._thread is not None:
            self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if len(self.watching) < len(self.folders) and time.monotonic() - self._claimed_at >= CLAIM_SECONDS:
                self._claim_free()
            waits = [CLAIM_SECONDS] if len(self.watching) < len(self.folders) else []
            for folder_id in list(self.watching):
                if not self.store.database.holds(f"import:{folder_id}"):    # its lock went (PostgreSQL restarted)
                    self.watching.remove(folder_id)
                    log.warning("import %s: lost the folder's lock; watching it again once it is free", folder_id)
                    waits.append(1.0)
                    continue
                try:
                    waits.append(self.scan(self.folders[folder_id]))
                except Exception:
                    log.exception("import %s: scan failed; retrying", folder_id)
                    waits.append(5.0)
            self._wake.wait(min(waits, default=30.0))
            self._wake.clear()
            self._stop.wait(0.2)                    # gather the events of a burst of writes

    def scan(self, folder: ImportFolder) -> float:
        """One pass over the folder; returns how long the thread may sleep before the next."""
        now = time.time()
        seen = self.store.imports.seen(folder.id)
        wait = folder.rescan_seconds
        for unit in units(folder, now):
            if self._stop.is_set():
                break
            if not unit.complete:
                if folder.complete_when == "QuietSeconds" and unit.files:
                    wait = min(wait, max(0.2, folder.quiet_seconds - (now - max(m for _, _, m in unit.files))))
                continue
            try:
                self._import(folder, unit, seen)
            except DeliveryError as exc:            # Orthanc unavailable: the files stay, tried again soon
                log.warning("import %s: a complete folder waits for Orthanc: %s", folder.id, exc)
                wait = min(wait, 5.0)
        return wait

    def _import(self, folder: ImportFolder, unit: Unit, seen: Mapping[str, dict]) -> None:
        for path, size, mtime in unit.files:
            row = seen.get(path)
            if row is not None and row["size"] == size and row["mtime"] == mtime and row["state"] != "storing":
                continue                            # this very file was dealt with
            full = os.path.join(folder.path, path)
            try:
                with open(full, "rb") as handle:
                    data = handle.read()
            except OSError as exc:
                self.store.imports.rejected(folder.id, path, unit.name, size, mtime, "unreadable", f"unreadable: {exc}")
                continue
            stored = self.importer.store_file(folder.id, path, unit.name, data, mtime)
            if not stored.ok:
                self._reject(folder, path, stored.reason)
        if self.importer.route(folder.id, unit.name, [target_of(folder, self.routes)]):
            self.on_tasks()
        self._after(folder, unit)

    def _reject(self, folder: ImportFolder, path: str, reason: str) -> None:
        """The file goes to the rejected folder (its relative path kept), its reason beside it."""
        target = os.path.join(folder.rejected, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.move(os.path.join(folder.path, path), target)
        with open(target + ".reason", "w", encoding="utf-8") as note:
            note.write(reason + "\n")

    def _after(self, folder: ImportFolder, unit: Unit) -> None:
        """Keep, move or delete the unit's files that are routed; then its emptied folders go."""
        rows = self.store.imports.seen(folder.id)
        routed = [p for p, _, _ in unit.files if rows.get(p, {}).get("state") == ROUTED]
        for path in routed:
            full = os.path.join(folder.path, path)
            if folder.after == "Delete" and os.path.exists(full):
                os.remove(full)
            elif folder.after == "Move" and os.path.exists(full):
                target = os.path.join(folder.move_to, path)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.move(full, target)
        if routed:
            self.store.imports.done(folder.id, routed)
        if folder.after != "Keep" or any(rows.get(p, {}).get("state") == REJECTED for p, _, _ in unit.files):
            top = os.path.join(folder.path, unit.name)
            if unit.name != LOOSE and os.path.isdir(top):
                for base, _dirs, _names in sorted(os.walk(top, topdown=False), key=lambda w: -len(w[0])):
                    try:
                        os.rmdir(base)              # only empty folders go
                    except OSError:
                        pass

    def status(self) -> list[dict]:
        return [{"Id": f.id, "Path": f.path, "Watching": f.id in self.watching, "After": f.after,
                 "CompleteWhen": f.complete_when, "Route": f.route, "Destinations": list(f.destinations),
                 **self.store.imports.summary(f.id)} for f in self.folders.values()]

