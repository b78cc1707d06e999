"""The `courier` command line, outside Orthanc, against Courier's REST API:

    python -m courier.cli import PATH (--route NAME | --destination ID [--pseudonymize PROFILE] | --as-received)
                          [--recursive] [--move DIR | --delete] [--dry-run] [--url URL] [--user NAME]

Files are recognised as DICOM by content (the same test the server applies), uploaded one by one
(POST /courier/uploads/{id}/files) with a progress bar, then routed or sent in one step; a file is
moved or deleted only once Courier has stored it. `--dry-run` lists what would be imported,
grouped by patient and study, and touches nothing. The exit status is 1 when any file was
rejected (not DICOM, unreadable, refused), 2 on a usage or connection error. The password comes
from --password-file or the COURIER_PASSWORD environment variable, never from the command line.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections import defaultdict
from typing import Iterator, Optional, Sequence
from urllib.parse import quote

from courier.imports.detect import detect


def files_below(root: str, recursive: bool) -> Iterator[str]:
    if os.path.isfile(root):
        yield root
        return
    for base, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            if not name.startswith("."):
                yield os.path.join(base, name)
        if not recursive:
            return


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="courier", description="Courier's command line (against its REST API)")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("import", help="import DICOM files from a folder, a file or a disk")
    run.add_argument("path")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--route", help="route the studies as this route does (its destinations and profile)")
    where.add_argument("--destination", help="send the studies to this destination")
    where.add_argument("--as-received", action="store_true", help="route them as if they had been received")
    run.add_argument("--pseudonymize", help="with --destination: this profile on the way")
    run.add_argument("--recursive", action="store_true", help="descend into sub-folders")
    after = run.add_mutually_exclusive_group()
    after.add_argument("--move", metavar="DIR", help="move each imported file here (relative paths kept)")
    after.add_argument("--delete", action="store_true", help="delete each imported file")
    run.add_argument("--dry-run", action="store_true", help="list what would be imported; change nothing")
    run.add_argument("--url", default=os.environ.get("COURIER_URL", "http://127.0.0.1:8042"))
    run.add_argument("--user", default=os.environ.get("COURIER_USER"))
    run.add_argument("--password-file", help="a file holding the password (or set COURIER_PASSWORD)")
    return parser


def _password(args: argparse.Namespace) -> Optional[str]:
    if args.password_file:
        with open(args.password_file, encoding="utf-8") as handle:
            return handle.read().strip()
    return os.environ.get("COURIER_PASSWORD")


def _dry_run(paths: Sequence[str], out) -> int:
    studies: dict[tuple[str, str], dict] = defaultdict(lambda: {"series": set(), "instances": 0})
    rejected = []
    for path in paths:
        with open(path, "rb") as handle:
            found = detect(handle.read())
        if not found.dicom:
            rejected.append((path, found.reason))
            continue
        entry = studies[(found.patient_id, found.study_uid)]
        entry["series"].add(found.series_uid)
        entry["instances"] += 1
    by_patient: dict[str, list] = defaultdict(list)
    for (patient, study), entry in sorted(studies.items()):
        by_patient[patient].append((study, entry))
    for patient, rows in by_patient.items():
        print(f"patient {patient or '(no PatientID)'}", file=out)
        for study, entry in rows:
            print(f"  study {study}: {len(entry['series'])} series, {entry['instances']} instances", file=out)
    for path, reason in rejected:
        print(f"would reject {path}: {reason}", file=out)
    print(f"{sum(e['instances'] for e in studies.values())} DICOM file(s) in {len(studies)} study(ies) of "
          f"{len(by_patient)} patient(s); {len(rejected)} would be rejected (dry run: nothing imported)", file=out)
    return 1 if rejected else 0


def run_import(args: argparse.Namespace, out=sys.stdout) -> int:
    import requests
    from tqdm import tqdm

    root = args.path
    paths = list(files_below(root, args.recursive))
    if args.dry_run:
        return _dry_run(paths, out)
    if not (args.route or args.destination or args.as_received):
        print("courier import: give --route, --destination or --as-received", file=sys.stderr)
        return 2
    session = requests.Session()
    password = _password(args)
    if args.user:
        session.auth = (args.user, password or "")
    base = args.url.rstrip("/") + "/courier"
    try:
        opened = session.post(f"{base}/uploads", json={}, timeout=30)
    except requests.RequestException as exc:
        print(f"courier import: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 2
    if opened.status_code != 200:
        print(f"courier import: {opened.status_code} {opened.text}", file=sys.stderr)
        return 2
    upload = opened.json()["Id"]
    outcomes: dict[str, int] = defaultdict(int)
    rejected: list[tuple[str, str]] = []
    accepted: list[str] = []
    top = root if os.path.isdir(root) else os.path.dirname(root)
    for path in tqdm(paths, desc="importing", unit="file", file=sys.stderr, disable=not paths):
        relative = os.path.relpath(path, top)
        with open(path, "rb") as handle:
            data = handle.read()
        found = detect(data)
        if not found.dicom:                         # the server would say the same: not sent
            outcomes["not DICOM" if found.reason.startswith("not DICOM") else "unreadable"] += 1
            rejected.append((path, found.reason))
            continue
        answer = session.post(f"{base}/uploads/{upload}/files", data=data, timeout=300,
                              headers={"Content-Type": "application/dicom", "X-Courier-Filename": quote(relative)})
        if answer.status_code != 200:
            outcomes["refused"] += 1
            rejected.append((path, answer.json().get("error", answer.text) if answer.content else str(answer.status_code)))
            continue
        for result in answer.json()["Files"]:
            outcomes[result["Outcome"]] += 1
            if result["Outcome"] in ("imported", "duplicate"):
                accepted.append(path)
            else:
                rejected.append((path, result["Reason"] or result["Outcome"]))
    body = ({"Route": args.route} if args.route else
            {"Destination": args.destination, **({"Pseudonymize": args.pseudonymize} if args.pseudonymize else {})}
            if args.destination else {})
    action = "send" if args.destination else "route"
    done = session.post(f"{base}/uploads/{upload}/{action}", json=body, timeout=60) if accepted else None
    if done is not None and done.status_code != 200:
        print(f"courier import: {action}: {done.status_code} {done.json().get('error', done.text)}", file=sys.stderr)
        return 2
    for path in accepted:                           # only once Courier stored it and the action was taken
        if args.delete:
            os.remove(path)
        elif args.move:
            target = os.path.join(args.move, os.path.relpath(path, top))
            os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
            shutil.move(path, target)
    for path, reason in rejected:
        print(f"rejected {path}: {reason}", file=out)
    summary = ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items())) or "no files"
    print(f"upload {upload}: {summary}; {action} {'done' if done is not None else 'not needed'}", file=out)
    return 1 if rejected else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "import":
        return run_import(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
