"""What the benchmarks measure besides time: CPU seconds (user + system) and resident memory of a
process and everything it started, read from /proc through psutil."""
from __future__ import annotations

import psutil


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(*pids: int) -> float:
    """User + system CPU of these processes, their live descendants and the children they reaped."""
    total = 0.0
    for pid in pids:
        for process in _tree(pid):
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system + times.children_user + times.children_system
    return total


def courier_threads(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each of Courier's threads in the Orthanc process `pid`, by
    the name it has in the operating system (courier/threads.py: courier-changes, c-worker-0, ...);
    Orthanc's own threads, all called "Orthanc" or civetweb-*, are left out."""
    seconds: dict[str, float] = {}
    try:
        for thread in psutil.Process(pid).threads():
            try:
                name = open(f"/proc/{pid}/task/{thread.id}/comm").read().strip()
            except OSError:                              # it ended meanwhile
                continue
            if name.startswith(("courier-", "c-")):
                seconds[name] = seconds.get(name, 0.0) + thread.user_time + thread.system_time
    except psutil.NoSuchProcess:
        pass
    return seconds


def rss_mb(*pids: int) -> float:
    """Resident memory of these processes and their descendants, in MB."""
    total = 0
    for pid in pids:
        for process in _tree(pid):
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
    return total / 1e6


def others_running(names: tuple = ("Orthanc", "storescu", "dcmqrscp")) -> list[psutil.Process]:
    """Processes of these programs that are already running: they share the cores with what a
    benchmark measures (an idle Orthanc left by an interrupted script skewed a whole run)."""
    found = []
    for process in psutil.process_iter(["name", "pid"]):
        if process.info["name"] in names:
            found.append(process)
    return found


if __name__ == "__main__":          # make bench runs this first
    import os
    others = others_running()
    if others:
        print(f"warning: {len(others)} Orthanc/DCMTK process(es) already running (pids "
              f"{', '.join(str(p.pid) for p in others)}): they share the cores with what is measured; "
              "stop them for figures worth comparing")
    print(f"load average before the benchmarks: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
