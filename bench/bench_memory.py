"""make bench: the router's resident memory while 20,000 instances stream through it.

A pass-through Instance route, then a pseudonymizing one, each on a fresh router: storescu sends
N small CT instances (64x64, so that the run is about the number of instances, not bytes) and
the router's RSS (Orthanc with Courier inside, and anything it started) is printed after 1,000,
10,000 and N instances have reached the destination. Flat means bounded queues and caches:
the growth from the first to the last reading should stay within 50 MB.

Orthanc 1.10 keeps up to `MaximumStorageCacheSize` (default 128 MB) of files it read in RAM; its
store jobs read every routed file, so on a default router that cache alone grows by 128 MB and
then stays there (measured: +142 MB pass-through, flat from 10k on pseudonymizing). The routers
here set it to 0 so that what is printed is Courier's part; the destination, a plain Orthanc that
only ingests, is printed alongside for reference.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]

from bench_routing import has, instance_router  # noqa: E402
from factory import write_instances  # noqa: E402
from harness import Orthanc  # noqa: E402
from measure import rss_mb  # noqa: E402


def stream(work: Path, files: Path, n: int, name: str, pseudonymize: bool, marks: list[int]) -> list[tuple[int, float, float]]:
    dest = Orthanc(work, f"{name}-dest").start()
    router = instance_router(work, name, dest, pseudonymize, extra={"MaximumStorageCacheSize": 0}).start()
    readings: list[tuple[int, float, float]] = []
    try:
        sender = threading.Thread(target=subprocess.run, daemon=True, kwargs={
            "args": ["storescu", "-aet", "BENCH", "-aec", "ANY", "+sd", "+r", "127.0.0.1", str(router.dicom_port),
                     str(files)], "capture_output": True, "timeout": 3600})
        sender.start()
        deadline = time.monotonic() + 3600
        for mark in marks:
            while not has(dest, mark):
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name}: not {mark} instances after an hour")
                time.sleep(0.5)
            readings.append((mark, rss_mb(router.process.pid), rss_mb(dest.process.pid)))
        sender.join()
        return readings
    finally:
        router.stop()
        dest.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20000, help="instances (default 20000)")
    args = parser.parse_args()
    marks = sorted({min(1000, args.n), min(10000, args.n), args.n})
    with tempfile.TemporaryDirectory(prefix="courier-bench-memory-") as tmp:
        work = Path(tmp)
        files = work / "files"
        for start in range(0, args.n, 1000):             # folders of 1000, each a study
            write_instances(files / f"{start:06d}", min(1000, args.n - start), size=64, patient_id=f"M{start}")
        print(f"{args.n} CT instances of 64x64 streamed through a router; its resident memory (MB) at")
        for name, pseudonymize in (("pass-through", False), ("pseudonymizing", True)):
            readings = stream(work, files, args.n, name, pseudonymize, marks)
            shown = ", ".join(f"{mark}: {rss:.0f}" for mark, rss, _ in readings)
            growth = readings[-1][1] - readings[0][1]
            plain = readings[-1][2] - readings[0][2]
            print(f"  {name:<15} {shown}   growth {growth:+.0f} MB (target within 50; "
                  f"the plain Orthanc it sends to: {plain:+.0f} MB)")


if __name__ == "__main__":
    main()
