"""make bench: routing against Orthanc's own floor and against other routers, from one run.

The same N synthetic 512x512 CT files go, by storescu, through each path to a fresh destination
Orthanc; throughput counts until the destination holds all N, CPU is user + system seconds of the
receiving node (the router and whatever it started, or the destination alone for "direct"),
start-up excluded, per 1000 instances:

  direct          storescu -> destination (the destination's ingest only)
  floor           a plain Orthanc receives everything, then sends it in asynchronous store jobs of 100,
                  four at once: one ingest plus one send, about the least any router built on Orthanc
                  can spend (one job of everything costs far more: FLOOR_JOB)
  async forwarder a hand-written forwarder (bench/peers/async_forwarder.py): batches of 100 as
                  asynchronous Orthanc store jobs
  orthanc-tools   python-orthanc-tools' OrthancForwarder, NewInstance trigger, DICOM mode
  Courier         a pass-through Instance route, then the same route pseudonymizing (on send: the
                  original stays in Orthanc; then on ingest: only the pseudonymized copy is stored,
                  and Orthanc sends it as it is), then both with BatchLingerSeconds 0.2 (a burst in
                  fewer, larger associations)

Every path starts on a settled disk: what the paths before it stored is removed and written out
(os.sync), so that none pays for the writeback of another's.

Every Orthanc that routes (the floor's, the forwarders', Courier's) has the settings Courier ships
(harness.ROUTER_ORTHANC: no MD5 of each stored file); destinations have Orthanc's defaults.

Courier's pass-through and the async forwarder, the closest two, are then run in PAIRS adjacent
pairs, the order alternating, and compared by the median of the pairs' ratios.

Then the latency of Courier's Instance route (receipt -> acknowledged delivery, p50/p95) and of a
StableStudy route (how late after its quiet time a study is completed, and how long from
completion to its first instance at the destination). Only loopback; everything stops at the end.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench"), str(ROOT / "plugin")]

from factory import write_instances  # noqa: E402
from harness import ROUTER_ORTHANC, Orthanc, wait_until  # noqa: E402
from measure import courier_threads, cpu_seconds  # noqa: E402

BENCH_VENV = ROOT / ".venv-bench"
ASYNC_FORWARDER = [sys.executable, str(ROOT / "bench" / "peers" / "async_forwarder.py")]


def has(node: Orthanc, n: int) -> bool:
    """True once the node holds n instances (a cheap index query; /statistics is not cheap)."""
    return len(node.get("/instances", since=n - 1, limit=1)) == 1


def send(port: int, folder: Path) -> None:
    subprocess.run(["storescu", "-aet", "BENCH", "-aec", "ANY", "+sd", "+r", "127.0.0.1", str(port), str(folder)],
                   check=True, capture_output=True, timeout=1800)


def settled(work: Path) -> None:
    """Every path starts on the same disk: what the paths before it stored is removed and the
    kernel's writeback of it done (os.sync). Otherwise a path paid for the ones before it: measured,
    Courier's pass-through after the floor and both forwarders 201 instances/s without this, 225
    with it, and 245-250 run right after direct."""
    for storage in work.glob("*/storage"):
        shutil.rmtree(storage, ignore_errors=True)
    os.sync()


@dataclass
class Result:
    name: str
    rate: float                 # instances per second until the destination held all
    cpu: float                  # CPU seconds per 1000 instances of the receiving node
    note: str = ""


def _timed(n: int, files: Path, sender_port: int, dest: Orthanc, pids: Callable[[], list[int]]) -> tuple[float, float]:
    before = cpu_seconds(*pids())
    started = time.perf_counter()
    send(sender_port, files)
    wait_until(lambda: has(dest, n), 1800, 0.05, "every instance at the destination")
    elapsed = time.perf_counter() - started
    return n / elapsed, (cpu_seconds(*pids()) - before) * 1000 / n


def direct(work: Path, files: Path, n: int) -> Result:
    settled(work)
    dest = Orthanc(work, "direct-dest").start()
    try:
        rate, cpu = _timed(n, files, dest.dicom_port, dest, lambda: [dest.process.pid])
        return Result("direct (destination ingest only)", rate, cpu)
    finally:
        dest.stop()


FLOOR_JOB = 100      # instances a store job of the floor: Orthanc 1.10.1's store job costs more per instance as it
                     # grows (measured, router CPU per 1000 sent from a plain Orthanc: jobs of 16 to 100, 1.3-1.9 s;
                     # of 250, 2.2-2.4 s; one job of 1000, 5.3 s)


def floor(work: Path, files: Path, n: int) -> Result:
    settled(work)
    dest = Orthanc(work, "floor-dest").start()
    router = Orthanc(work, "floor", extra={"DicomModalities": {"dest": dest.as_modality()}, **ROUTER_ORTHANC}).start()
    try:
        before = cpu_seconds(router.process.pid)
        started = time.perf_counter()
        send(router.dicom_port, files)
        instances = router.instances()
        pending, running = [instances[i:i + FLOOR_JOB] for i in range(0, len(instances), FLOOR_JOB)], []
        deadline = time.monotonic() + 1800
        while pending or running:
            states = {job: router.get(f"/jobs/{job}")["State"] for job in running}
            if set(states.values()) - {"Pending", "Running", "Success"} or time.monotonic() > deadline:
                raise RuntimeError(f"the floor's store jobs: {sorted(set(states.values()))}")
            running = [job for job, state in states.items() if state != "Success"]
            while pending and len(running) < 4:
                running.append(router.post("/modalities/dest/store", {"Resources": pending.pop(0),
                                                                       "Asynchronous": True}).json()["ID"])
            time.sleep(0.1)          # as often as the async forwarder looks
        elapsed = time.perf_counter() - started
        cpu = (cpu_seconds(router.process.pid) - before) * 1000 / n
        return Result("floor (plain Orthanc: ingest, then jobs of 100)", n / elapsed, cpu, "one after the other")
    finally:
        router.stop()
        dest.stop()


def forwarder(work: Path, files: Path, n: int, name: str, command: list[str],
              environment: Optional[dict] = None) -> Optional[Result]:
    """A peer forwarder's run, tried twice: one whose sender (storescu) fails both times is reported
    as failed, and the bench goes on (seen once with orthanc-tools: storescu exited with 10).
    `environment`: changes to its Orthanc's environment (harness.Orthanc.environment)."""
    if not Path(command[0]).exists():
        return None
    for attempt in (1, 2):
        try:
            return _forwarder(work, files, n, name, command, attempt, environment or {})
        except subprocess.CalledProcessError as exc:
            failure = f"failed: the sender (storescu) exited with {exc.returncode}"
    return Result(name, 0.0, 0.0, failure)


def _forwarder(work: Path, files: Path, n: int, name: str, command: list[str], attempt: int,
               environment: dict) -> Result:
    settled(work)
    name_of_run = name if attempt == 1 else f"{name} (2)"
    dest = Orthanc(work, f"{name_of_run}-dest").start()
    router = Orthanc(work, name_of_run, extra={"DicomModalities": {"dest": dest.as_modality()}, **ROUTER_ORTHANC})
    router.environment.update(environment)
    router.start()
    log = open(work / f"{name_of_run}.log", "wb")
    process = subprocess.Popen([*command, router.url, "dest"], stdout=log, stderr=subprocess.STDOUT,
                               env=dict(os.environ, NO_PROXY="127.0.0.1"))
    try:
        time.sleep(1.0)                       # its start-up, excluded like Orthanc's
        rate, cpu = _timed(n, files, router.dicom_port, dest, lambda: [router.process.pid, process.pid])
        return Result(name, rate, cpu)
    finally:
        process.kill()
        process.wait()
        log.close()
        router.stop()
        dest.stop()


def bench_profiles(work: Path) -> dict:
    """The routers' Courier.Pseudonymization: the profile "bench", with a secret in a file."""
    key = work / "bench.key"
    key.write_text("bench-secret-0123456789")
    return {"bench": {"SecretFile": str(key), "BurnedInAnnotation": "Pass"}}


def instance_router(work: Path, name: str, dest: Orthanc, pseudonymize: bool, extra: Optional[dict] = None,
                    on: str = "Send", **settings) -> Orthanc:
    """A router (not started) with one Instance route to `dest`, pseudonymizing with the bench
    profile if asked (`on`: its PseudonymizeOn); `settings` are more Courier settings, `extra`
    more Orthanc ones."""
    route = {"Name": "r", "Trigger": "Instance", "Destinations": ["dest"]}
    if pseudonymize:
        route.update(Pseudonymize="bench", PseudonymizeOn=on)
    return Orthanc(work, name, courier={
        "AllowedCallers": "Any", "Routes": [route], "Pseudonymization": bench_profiles(work), **settings},
        extra={"DicomModalities": {"dest": dest.as_modality()}, **(extra or {})})


def pseudonymizer_alone(work: Path, files: Path, runs: int = 3) -> float:
    """CPU ms per instance of the routes' own profile on the same files, bytes to bytes in this
    process (best of `runs`): what the pseudonymizing route's cost above pass-through is held to."""
    from courier.config.profiles import parse_profiles
    from courier.deid.pseudonymizer import Pseudonymizer

    pseudonymizer = Pseudonymizer(parse_profiles(bench_profiles(work), str(work))["bench"])
    blobs = [path.read_bytes() for path in sorted(files.iterdir())]
    best = float("inf")
    for _ in range(runs):
        started = time.process_time()
        for data in blobs:
            pseudonymizer.pseudonymize_bytes(data)
        best = min(best, (time.process_time() - started) * 1000 / len(blobs))
    return best


def courier(work: Path, files: Path, n: int, name: str, workers: int, pseudonymize: bool,
            linger: float = 0.0, on: str = "Send", environment: Optional[dict] = None) -> tuple[Result, list[float]]:
    settled(work)
    dest = Orthanc(work, f"{name}-dest").start()
    router = instance_router(work, name, dest, pseudonymize, on=on, Workers=workers, BatchLingerSeconds=linger)
    router.environment.update(environment or {})
    try:
        router.start()
        threads_before = courier_threads(router.process.pid)
        rate, cpu = _timed(n, files, router.dicom_port, dest, lambda: [router.process.pid])
        own = {name: seconds - threads_before.get(name, 0.0) for name, seconds in courier_threads(router.process.pid).items()}
        tasks = router.get("/courier/tasks", limit=1000)["tasks"]
        while len(tasks) < n:
            tasks += router.get("/courier/tasks", limit=1000, offset=len(tasks))["tasks"]
        latencies = [t["finished_at"] - t["created_at"] for t in tasks if t["state"] == "SUCCESS"]
        label = "Courier pass-through Instance route"
        if pseudonymize:
            label = "Courier pseudonymizing Instance route" + (", on ingest" if on == "Ingest" else "")
        workers = sum(seconds for name, seconds in own.items() if "worker" in name)
        note = (f"Courier's threads {sum(own.values()) * 1000 / n:.2f}s (changes "
                f"{own.get('courier-changes', 0.0) * 1000 / n:.2f}, workers {workers * 1000 / n:.2f})")
        return Result(label + (f", linger {linger:g} s" if linger else ""), rate, cpu, note), latencies
    finally:
        router.stop()
        dest.stop()


def stable_study_latency(work: Path, studies: int = 10, per_study: int = 20, quiet: float = 2.0) -> tuple[list, list]:
    """(completion delay after the quiet time, completion -> first instance at the destination) per study."""
    from peers import RecordingScp
    recorder = RecordingScp("STABLE")
    router = Orthanc(work, "stable", courier={
        "AllowedCallers": "Any", "Routes": [{"Name": "s", "Trigger": "StableStudy", "StableAfterSeconds": quiet,
                                             "Destinations": ["rec"]}]},
        extra={"DicomModalities": {"rec": recorder.modality}})
    try:
        import pydicom
        folder = work / "stable-files"
        for s in range(studies):
            write_instances(folder, per_study, patient_id=f"S{s}", study_uid=pydicom.uid.generate_uid(), size=64)
        router.start()
        send(router.dicom_port, folder)
        wait_until(lambda: len(recorder.uids()) == studies * per_study, 120, 0.1, "every study delivered")
        with sqlite3.connect(router.dir / "storage" / "courier.sqlite") as db:
            rows = db.execute("SELECT t.created_at, r.last_at, t.resource_id FROM tasks t JOIN arrival_resources r"
                              " ON r.level = 'Study' AND r.resource_id = t.resource_id").fetchall()
            uids = dict(db.execute("SELECT study_id, MIN(sop_instance_uid) FROM arrivals GROUP BY study_id").fetchall())
        late = [created - (last + quiet) for created, last, _ in rows]
        study_uid_of = {sid: router.get(f"/studies/{sid}")["MainDicomTags"]["StudyInstanceUID"] for sid in uids}
        to_first = [recorder.first_at[study_uid_of[sid]] - created for created, _, sid in rows
                    if study_uid_of[sid] in recorder.first_at]
        return late, to_first
    finally:
        router.stop()
        recorder.close()


LINGER = 0.2          # BatchLingerSeconds of the lingering rows


WITHOUT_NODELAY = 200     # instances: a forwarder whose Orthanc keeps Nagle's algorithm on receives ~20 a second


def without_nodelay(work: Path, workers: int) -> None:
    """The async forwarder and Courier's pass-through route with their Orthanc started as Debian's
    orthanc.service starts it, without TCP_NODELAY in its environment (DCMTK then keeps Nagle's
    algorithm on: config.dcmtk_env); the sender and the destination have it."""
    files = work / "files-nagle"
    write_instances(files, WITHOUT_NODELAY, size=512)
    bare = {"TCP_NODELAY": None}
    plain = forwarder(work, files, WITHOUT_NODELAY, "async forwarder",
                      ASYNC_FORWARDER, bare)
    ours, _ = courier(work, files, WITHOUT_NODELAY, "courier-nagle", workers, False, environment=bare)
    print(f"Routers' Orthanc started without TCP_NODELAY (as Debian's orthanc.service), {WITHOUT_NODELAY} instances:")
    for result in (plain, ours):
        if result and result.rate:
            print(f"  {result.name:<50} {result.rate:7.1f} inst/s {result.cpu:8.1f}s CPU/1000")
    if plain and plain.rate and ours.rate:
        print(f"  Courier (which sets TCP_NODELAY=1 at its start) / async forwarder: {ours.rate / plain.rate:5.2f}x")
    shutil.rmtree(files, ignore_errors=True)


PAIRS = 4             # adjacent runs of Courier's pass-through and the async forwarder


def _pair_ours(work: Path, files: Path, n: int, workers: int, index: int) -> Result:
    result = courier(work, files, n, f"courier-pair{index}", workers, False)[0]
    return replace(result, name=f"Courier pass-through, pair {index + 1}")


def _pair_theirs(work: Path, files: Path, n: int, index: int) -> Result:
    name = f"async forwarder, pair {index + 1}"
    return forwarder(work, files, n, name, ASYNC_FORWARDER) or Result(name, 0.0, 0.0, "not run")


def paired(work: Path, files: Path, n: int, workers: int) -> list[tuple[Result, Result]]:
    """(Courier's pass-through, the async forwarder) run one right after the other, PAIRS times,
    the forwarder first every other time."""
    pairs = []
    for index in range(PAIRS):
        if index % 2:
            theirs = _pair_theirs(work, files, n, index)
            ours = _pair_ours(work, files, n, workers, index)
        else:
            ours = _pair_ours(work, files, n, workers, index)
            theirs = _pair_theirs(work, files, n, index)
        pairs.append((ours, theirs))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=1000, help="instances (default 1000)")
    parser.add_argument("--size", type=int, default=512, help="rows and columns (default 512: 0.5 MB)")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="courier-bench-") as tmp:
        work = Path(tmp)
        files = work / "files"
        write_instances(files, args.n, size=args.size)
        megabytes = sum(p.stat().st_size for p in files.iterdir()) / 1e6
        print(f"{args.n} CT instances of {args.size}x{args.size} ({megabytes:.0f} MB) through each path, "
              f"{args.workers} Courier workers")
        print(f"every routing Orthanc with {ROUTER_ORTHANC}")
        results = [direct(work, files, args.n), floor(work, files, args.n)]
        peer_paths = [forwarder(work, files, args.n, "async forwarder (batches of 100, async jobs)",
                                ASYNC_FORWARDER),
                      forwarder(work, files, args.n, "orthanc-tools OrthancForwarder (NewInstance, DICOM)",
                                [str(BENCH_VENV / "bin" / "python"),
                                 str(ROOT / "bench" / "peers" / "orthanc_tools_forwarder.py")])]
        results += [p for p in peer_paths if p is not None]
        passthrough, latencies = courier(work, files, args.n, "courier", args.workers, False)
        pseudonymizing, _ = courier(work, files, args.n, "courier-pseudo", args.workers, True)
        on_ingest, _ = courier(work, files, args.n, "courier-pseudo-ingest", args.workers, True, on="Ingest")
        lingering, linger_latencies = courier(work, files, args.n, "courier-linger", args.workers, False, LINGER)
        pseudo_lingering, _ = courier(work, files, args.n, "courier-pseudo-linger", args.workers, True, LINGER)
        results += [passthrough, pseudonymizing, on_ingest, lingering, pseudo_lingering]
        # the two closest paths in adjacent pairs, the order alternating: one run of a path varied
        # by 10-20 % here (the same pass-through at 4.3-6.2 s CPU per 1000 in a dozen runs), so the
        # verdict is the median of the pairs' ratios, each pair run on the same state of the machine
        pairs = paired(work, files, args.n, args.workers) if peer_paths[0] is not None else []
        results += [r for pair in pairs for r in pair]
        # direct again, last: the first path of a run was often slower than the same path later
        # (199.7 and 208.7 against 311.4 instances/s in three runs), which made every ratio of
        # that run meaningless; the faster of the two is the base
        again = direct(work, files, args.n)
        results.append(Result("direct again, last (the base: the faster of the two)", again.rate, again.cpu))
        base, floor_cpu = max(results[0].rate, again.rate), results[1].cpu
        print(f"{'path':<52} {'inst/s':>7} {'ratio':>6} {'CPU/1000':>9}")
        for path in results:
            if path.rate:
                print(f"{path.name:<52} {path.rate:7.1f} {path.rate / base:6.2f} {path.cpu:8.1f}s  {path.note}")
            else:
                print(f"{path.name:<52} {path.note}")
        if peer_paths[1] is None:
            print("(orthanc-tools: not installed; make bench installs it in .venv-bench)")
        print(f"Courier pass-through CPU / floor:              {passthrough.cpu / floor_cpu:5.2f}   (target <= 1.15)")
        run = [(ours, theirs) for ours, theirs in pairs if ours.rate and theirs.rate]
        if run:
            ratios = [ours.rate / theirs.rate for ours, theirs in run]
            print(f"Courier pass-through / async forwarder, {len(run)} adjacent pairs: "
                  f"{', '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):5.2f} "
                  f"(CPU per 1000 {statistics.median([o.cpu for o, _ in run]):.1f} against "
                  f"{statistics.median([t.cpu for _, t in run]):.1f} s, medians; target: ahead, above 1)")
        above, alone = pseudonymizing.cpu - passthrough.cpu, pseudonymizer_alone(work, files)
        print(f"Courier pseudonymizing, CPU above pass-through: {above:5.2f} ms per instance"
              f" (on ingest: {(on_ingest.cpu - passthrough.cpu):.2f})")
        print(f"  the pseudonymizer alone, same files:          {alone:5.2f} ms per instance; the route above it:"
              f" {above - alone:.2f} ms (target <= 0.5)")
        for label, values in (("", latencies), (f", linger {LINGER:g} s", linger_latencies)):
            if values:
                q = statistics.quantiles(values, n=20)
                print(f"Instance route latency receipt -> delivered{label}:   p50 {statistics.median(values) * 1000:.0f} ms,"
                      f" p95 {q[18] * 1000:.0f} ms (1000-instance burst)")
        without_nodelay(work, args.workers)
        late, to_first = stable_study_latency(work)
        print(f"StableStudy: completed after the quiet time:   median {statistics.median(late) * 1000:.0f} ms, "
              f"max {max(late) * 1000:.0f} ms; completion -> first instance delivered: median "
              f"{statistics.median(to_first) * 1000:.0f} ms, max {max(to_first) * 1000:.0f} ms (10 studies)")


if __name__ == "__main__":
    main()
