"""Courier's threads, named in the operating system as they are in Python.

`top -H -p <Orthanc's pid>`, `ps -L`, /proc/<pid>/task/*/comm and py-spy then tell Courier's
threads (courier-changes, c-worker-0, ...) from Orthanc's own, which are all called "Orthanc"
(and civetweb-worker for its HTTP server); `make bench` reads them to say how much of a router's
CPU is Courier's. Linux keeps 15 characters of a name: a longer one is shown with "courier-"
shortened to "c-" (courier-worker-0 as c-worker-0), then cut.
"""
from __future__ import annotations

import ctypes
import threading

PR_SET_NAME = 15                 # prctl(2)
LIMIT = 15                       # characters Linux keeps of a thread's name


def os_name(name: str) -> str:
    """What the operating system shows for a thread called `name`."""
    if len(name) > LIMIT and name.startswith("courier-"):
        name = "c-" + name[len("courier-"):]
    return name[:LIMIT]


def name_this_thread(name: str) -> None:
    """Give the calling thread `name` in the operating system (nothing where prctl is missing)."""
    try:
        ctypes.CDLL(None).prctl(PR_SET_NAME, os_name(name).encode("ascii", "replace"), 0, 0, 0)
    except (AttributeError, OSError):
        pass


class Thread(threading.Thread):
    """threading.Thread whose name is also the thread's name in the operating system."""

    def run(self) -> None:
        name_this_thread(self.name)
        super().run()
