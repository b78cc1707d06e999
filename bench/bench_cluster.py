"""make bench: what a shared PostgreSQL costs, as ratios from one run.

1. one router on SQLite (Orthanc's own index and Courier's store), a pass-through Instance route;
2. one router on PostgreSQL (Orthanc's index and storage through orthanc-postgresql, Courier's
   store beside them), the same route;
3. two routers on that PostgreSQL, the files sent half to each at once;
and, to tell whose cost it is, Orthanc on PostgreSQL with Courier's store still on SQLite, and
Orthanc's index in PostgreSQL with its files on disk (what a shared filesystem would give).

Throughput counts until the destination holds every instance. On a 2-core machine two routers
cannot be faster than one (they share the cores): the figures show the cost of the shared
database, not the gain of a second machine. Only loopback; everything is stopped at the end.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from factory import write_instances  # noqa: E402
from harness import Orthanc, wait_until  # noqa: E402
from postgres import PostgresServer  # noqa: E402


def has(node: Orthanc, n: int) -> bool:
    return len(node.get("/instances", since=n - 1, limit=1)) == 1


def send(port: int, files: list[Path]) -> None:
    subprocess.run(["storescu", "-aet", "BENCH", "-aec", "ANY", "127.0.0.1", str(port), *map(str, files)],
                   check=True, capture_output=True, timeout=1800)


def routers(work: Path, name: str, count: int, dest: Orthanc, postgres: PostgresServer | None,
            courier_on_postgres: bool = True, files_on_disk: bool = False) -> list[Orthanc]:
    orthanc_db = postgres.create_database() if postgres else None
    courier_db = postgres.create_database() if postgres and courier_on_postgres else None
    nodes = []
    for index in range(count):
        courier = {"AllowedCallers": "Any", "Workers": 4, "RouterName": f"{name}-{index}",
                   "Routes": [{"Name": "pass-through", "Destinations": ["dest"]}]}
        if courier_db:
            courier["Database"] = {"Url": courier_db}
        node = Orthanc(work, f"{name}-{index}", courier=courier, postgresql=orthanc_db,
                       extra={"DicomModalities": {"dest": dest.as_modality()}})
        if files_on_disk:                      # the index in PostgreSQL, the files in StorageDirectory
            node.config["PostgreSQL"]["EnableStorage"] = False
        nodes.append(node.start())
    return nodes


def run(work: Path, name: str, files: list[Path], count: int, postgres: PostgresServer | None,
        courier_on_postgres: bool = True, files_on_disk: bool = False) -> float:
    dest = Orthanc(work, f"{name}-dest").start()
    nodes = routers(work, name, count, dest, postgres, courier_on_postgres, files_on_disk)
    try:
        shares = [files[i::count] for i in range(count)]
        started = time.perf_counter()
        senders = [threading.Thread(target=send, args=(node.dicom_port, share))
                   for node, share in zip(nodes, shares, strict=True)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        wait_until(lambda: has(dest, len(files)), 900, 0.05, f"{name}: every instance delivered")
        return len(files) / (time.perf_counter() - started)
    finally:
        for node in nodes + [dest]:
            node.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=600, help="instances (default 600)")
    parser.add_argument("--size", type=int, default=512, help="rows and columns (default 512: 0.5 MB)")
    args = parser.parse_args()
    postgres = PostgresServer()
    try:
        with tempfile.TemporaryDirectory(prefix="courier-bench-cluster-") as tmp:
            work = Path(tmp)
            files = write_instances(work / "files", args.n, size=args.size)
            print(f"{args.n} CT instances of {args.size}x{args.size}, pass-through Instance route, 4 workers per router")
            sqlite = run(work, "sqlite", files, 1, None)
            print(f"one router on SQLite:                  {sqlite:7.1f} instances/s")
            orthanc_only = run(work, "pg0", files, 1, postgres, courier_on_postgres=False)
            print(f"Orthanc on PostgreSQL, Courier SQLite: {orthanc_only:7.1f} instances/s   ratio to SQLite "
                  f"{orthanc_only / sqlite:5.2f}")
            one = run(work, "pg1", files, 1, postgres)
            print(f"one router on PostgreSQL:              {one:7.1f} instances/s   ratio to SQLite {one / sqlite:5.2f}"
                  f"   (Courier's share {one / orthanc_only:5.2f})")
            disk = run(work, "pgd", files, 1, postgres, files_on_disk=True)
            print(f"the same, Orthanc's files on disk:     {disk:7.1f} instances/s   ratio to SQLite {disk / sqlite:5.2f}")
            two = run(work, "pg2", files, 2, postgres)
            print(f"two routers on one PostgreSQL:         {two:7.1f} instances/s   ratio to one    {two / one:5.2f}")
    finally:
        postgres.stop()


if __name__ == "__main__":
    main()
