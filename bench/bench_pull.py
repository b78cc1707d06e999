"""make bench: pulling studies from a PACS to a destination, Courier's job against ADIT's way.

1. Courier: a transfer job (C-MOVE into Courier's Orthanc, count, deliver, clean up) from a source
   Orthanc holding N CT instances to a destination Orthanc;
2. ADIT's way, in the same run: a pynetdicom storage SCP receives the C-MOVE to disk, the files
   are then sent with storescu to a fresh destination Orthanc;
3. and both again pseudonymizing: Courier's job with a profile, ADIT's way with dicognito run on
   the received files before storescu.
Each ends when the destination holds all N instances; the ratios of throughputs are printed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "plugin"), str(ROOT / "bench")]

from bench_routing import has, send  # noqa: E402
from factory import write_instances  # noqa: E402
from harness import Orthanc, free_port, wait_until  # noqa: E402


def adit_way(work: Path, pacs: Orthanc, adit_port: int, n: int, study_uids: list[str], anonymize: bool = False) -> float:
    """C-MOVE to a pynetdicom SCP writing files, (dicognito on each file,) then storescu of those files."""
    from pydicom.dataset import Dataset
    from pynetdicom import AE, AllStoragePresentationContexts, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove

    name = "adit-anon" if anonymize else "adit"
    folder = work / f"{name}-received"
    folder.mkdir()
    dest = Orthanc(work, f"{name}-dest").start()
    received = threading.Semaphore(0)

    def on_store(event):
        path = folder / f"{event.request.AffectedSOPInstanceUID}.dcm"
        path.write_bytes(event.encoded_dataset())
        received.release()
        return 0x0000
    scp = AE(ae_title="ADIT")
    scp.supported_contexts = AllStoragePresentationContexts
    server = scp.start_server(("127.0.0.1", adit_port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        started = time.perf_counter()
        scu = AE(ae_title="ADIT")
        scu.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = scu.associate("127.0.0.1", pacs.dicom_port, ae_title=pacs.aet)
        for uid in study_uids:
            identifier = Dataset()
            identifier.QueryRetrieveLevel, identifier.StudyInstanceUID = "STUDY", uid
            for _ in assoc.send_c_move(identifier, "ADIT", StudyRootQueryRetrieveInformationModelMove):
                pass
        assoc.release()
        if anonymize:
            from dicognito.anonymizer import Anonymizer
            from pydicom import dcmread
            anonymizer = Anonymizer()
            for path in folder.iterdir():
                ds = dcmread(path)
                anonymizer.anonymize(ds)
                ds.save_as(path, enforce_file_format=True)
        send(dest.dicom_port, folder)
        wait_until(lambda: has(dest, n), 1200, 0.05, "ADIT-way instances")
        return n / (time.perf_counter() - started)
    finally:
        server.shutdown()
        dest.stop()


def courier_way(work: Path, pacs: Orthanc, router: Orthanc, n: int, profile: str | None = None) -> float:
    dest_id = "dest"
    started = time.perf_counter()
    job = router.post("/courier/jobs", {"Source": "pacs", "Destination": dest_id, "Items": [{"PatientID": "BENCH"}],
                                        "Pseudonymize": profile}).json()
    done = wait_until(lambda: (j := router.get(f"/courier/jobs/{job['Id']}"))["Status"] not in ("PENDING", "RUNNING") and j,
                      1200, 0.1, "the Courier job")
    elapsed = time.perf_counter() - started
    if done["Status"] != "SUCCESS":
        raise SystemExit(f"Courier job ended {done['Status']}")
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="courier-bench-") as tmp:
        work = Path(tmp)
        adit_port = free_port()
        per_study = args.n // args.studies
        study_uids = []
        for index in range(args.studies):
            paths = write_instances(work / "files" / str(index), per_study, patient_id="BENCH", size=args.size)
            import pydicom
            study_uids.append(pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)
        n = per_study * args.studies
        dest = Orthanc(work, "dest")
        (work / "bench.key").write_text("bench-secret-0123456789")
        router = Orthanc(work, "router",
                         courier={"AllowedCallers": "Any",
                                  "Pseudonymization": {"bench": {"SecretFile": str(work / "bench.key"),
                                                                 "BurnedInAnnotation": "Pass"}},
                                  **json.loads(os.environ.get("COURIER_BENCH_SETTINGS", "{}"))},
                         extra={"DicomModalities": {"dest": dest.as_modality()}})
        pacs = Orthanc(work, "pacs")
        pacs.config["DicomModalities"] = {"router": router.as_modality(),
                                          "adit": {"AET": "ADIT", "Host": "127.0.0.1", "Port": adit_port}}
        router.config["DicomModalities"]["pacs"] = pacs.as_modality()
        nodes = [pacs, dest, router]
        try:
            for node in nodes:
                node.start()
            send(pacs.dicom_port, work / "files")
            wait_until(lambda: has(pacs, n), 1200, 0.1, "the source PACS filled")
            print(f"{n} CT instances of {args.size}x{args.size} in {args.studies} studies on the source PACS")
            ours = courier_way(work, pacs, router, n)
            print(f"Courier job (C-MOVE, count, deliver):        {ours:7.1f} instances/s")
            theirs = adit_way(work, pacs, adit_port, n, study_uids)
            print(f"ADIT's way (to disk, re-read, storescu):     {theirs:7.1f} instances/s")
            print(f"ratio Courier/ADIT-way:                      {ours / theirs:7.2f}")
            ours = courier_way(work, pacs, router, n, "bench")
            print(f"Courier job, pseudonymizing:                 {ours:7.1f} instances/s")
            theirs = adit_way(work, pacs, adit_port, n, study_uids, anonymize=True)
            print(f"ADIT's way with dicognito:                   {theirs:7.1f} instances/s")
            print(f"ratio Courier/ADIT-way, pseudonymizing:      {ours / theirs:7.2f}   (target >= 1.5)")
        finally:
            for node in nodes:
                node.stop()


if __name__ == "__main__":
    main()
