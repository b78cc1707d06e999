"""make bench: routing throughput and latency, as ratios against a baseline of the same run.

1. baseline: storescu sends N synthetic 512x512 CT instances straight to a destination Orthanc;
2. courier: the same files to Courier with a pass-through Instance route to a fresh destination;
   throughput counts until the destination holds all N;
3. latency of Instance tasks: task creation (receipt) -> acknowledged delivery, p50 / p95.

Only loopback; every process is stopped at the end.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from factory import write_instances  # noqa: E402
from harness import Orthanc, wait_until  # noqa: E402


def has(node: Orthanc, n: int) -> bool:
    """True once the node holds n instances (a cheap index query; /statistics is not cheap)."""
    return len(node.get("/instances", since=n - 1, limit=1)) == 1


def send(port: int, folder: Path) -> None:
    subprocess.run(["storescu", "-aet", "BENCH", "-aec", "ANY", "+sd", "+r", "127.0.0.1", str(port), str(folder)],
                   check=True, capture_output=True, timeout=1800)


def baseline(work: Path, files_dir: Path, n: int) -> float:
    dest = Orthanc(work, "baseline-dest").start()
    try:
        started = time.perf_counter()
        send(dest.dicom_port, files_dir)
        wait_until(lambda: has(dest, n), 600, 0.05, "baseline instances")
        return n / (time.perf_counter() - started)
    finally:
        dest.stop()


def through_courier(work: Path, files_dir: Path, n: int, workers: int) -> tuple[float, list[float]]:
    dest = Orthanc(work, "dest").start()
    router = Orthanc(work, "router", courier={
        "AllowedCallers": "Any", "Workers": workers,
        "Routes": [{"Name": "pass-through", "Trigger": "Instance", "Destinations": ["dest"]}]},
        extra={"DicomModalities": {"dest": dest.as_modality()}})
    try:
        router.start()
        started = time.perf_counter()
        send(router.dicom_port, files_dir)
        received = time.perf_counter() - started
        wait_until(lambda: has(dest, n), 900, 0.05, "routed instances")
        elapsed = time.perf_counter() - started
        tasks = router.get("/courier/tasks", limit=1000)["tasks"]
        while len(tasks) < n:
            tasks += router.get("/courier/tasks", limit=1000, offset=len(tasks))["tasks"]
        latencies = [t["finished_at"] - t["created_at"] for t in tasks if t["state"] == "SUCCESS"]
        print(f"  router received all in {received:.1f} s; destination complete after {elapsed:.1f} s")
        return n / elapsed, latencies
    finally:
        router.stop()
        dest.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=1000, help="instances (default 1000)")
    parser.add_argument("--size", type=int, default=512, help="rows and columns (default 512: 0.5 MB)")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="courier-bench-") as tmp:
        work = Path(tmp)
        files_dir = work / "files"
        write_instances(files_dir, args.n, size=args.size)
        megabytes = sum(p.stat().st_size for p in files_dir.iterdir()) / 1e6
        print(f"{args.n} CT instances of {args.size}x{args.size} ({megabytes:.0f} MB), {args.workers} Courier workers")
        direct = baseline(work, files_dir, args.n)
        print(f"storescu -> Orthanc directly:          {direct:7.1f} instances/s")
        routed, latencies = through_courier(work, files_dir, args.n, args.workers)
        print(f"storescu -> Courier -> Orthanc:        {routed:7.1f} instances/s")
        print(f"ratio courier/direct:                  {routed / direct:7.2f}")
        if latencies:
            q = statistics.quantiles(latencies, n=20)
            print(f"latency receipt -> delivered (Instance route): p50 {statistics.median(latencies) * 1000:.0f} ms,"
                  f" p95 {q[18] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
