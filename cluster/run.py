#!/usr/bin/env python3
"""`make cluster`: two Courier routers on one PostgreSQL behind HAProxy, on loopback.

    PostgreSQL   a throwaway cluster under data/cluster/postgresql (run as the postgres user: initdb refuses
                 root), databases "orthanc" (Orthanc's index and storage) and "courier" (the store)
    router-a/b   Orthanc + Courier from cluster/router.json, sharing both databases
    HAProxy      cluster/haproxy.cfg: DICOM and HTTP on one address, balanced over the routers

Ready for `storescu -aet CTSCANNER 127.0.0.1 4242 *.dcm`. Ctrl-C (or SIGTERM) stops everything,
each router gracefully with one signal. `--base-port N` moves every port (N: HTTP, N+1: DICOM,
then each router's pair, then PostgreSQL) for a second cluster beside the first, as the tests do.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ROUTERS = ("router-a", "router-b")
DEFAULT_PORTS = {"http": 8042, "dicom": 4242, "router-a": (8142, 4342), "router-b": (8242, 4442), "postgresql": 5433}


def ports_from(base: int | None) -> dict:
    if base is None:
        return DEFAULT_PORTS
    return {"http": base, "dicom": base + 1, "router-a": (base + 2, base + 3), "router-b": (base + 4, base + 5),
            "postgresql": base + 6}


def as_postgres(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(prefix + args, check=True, **kwargs)


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        sys.exit(f"PostgreSQL's {name} is missing: install the Debian package postgresql (make cluster does)")
    return found[-1]


def start_postgresql(data: Path, port: int) -> Path:
    """The cluster's PostgreSQL; its folder belongs to the postgres user (initdb refuses root)."""
    base = data / "postgresql"
    pg, socket_dir = base / "data", base / "socket"
    for folder in (base, socket_dir):
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres")
    if not (pg / "PG_VERSION").exists():
        as_postgres([pg_bin("initdb"), "-D", str(pg), "-A", "trust", "-U", "courier", "-E", "UTF8"], capture_output=True)
    as_postgres([pg_bin("pg_ctl"), "-D", str(pg), "-l", str(base / "postgresql.log"), "-w", "start", "-o",
                 f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1"], capture_output=True)
    subprocess.run([str(HERE / "setup-postgres.sh"), "-q", "-h", "127.0.0.1", "-p", str(port), "-U", "courier"],
                   check=True, capture_output=True)
    return pg


def router_config(template: dict, name: str, ports: dict) -> dict:
    config = json.loads(json.dumps(template))
    http, dicom = ports[name]
    config.update(Name=f"Courier {name}", HttpPort=http, DicomPort=dicom, DatabaseServerIdentifier=name,
                  PythonScript=str(REPO / "plugin" / "courier_entry.py"),
                  LuaScripts=[str(REPO / "plugin" / "courier_traffic.lua")])
    config["PostgreSQL"]["Port"] = ports["postgresql"]
    config["Courier"]["RouterName"] = name
    url = config["Courier"]["Database"]["Url"]
    config["Courier"]["Database"]["Url"] = url.replace(":5433/", f":{ports['postgresql']}/")
    return config


def haproxy_config(ports: dict) -> str:
    text = (HERE / "haproxy.cfg").read_text()
    for old, new in ((":4242\n", f":{ports['dicom']}\n"), (":8042\n", f":{ports['http']}\n"),
                     ("127.0.0.1:4342 ", f"127.0.0.1:{ports['router-a'][1]} "),
                     ("127.0.0.1:4442 ", f"127.0.0.1:{ports['router-b'][1]} "),
                     ("127.0.0.1:8142 ", f"127.0.0.1:{ports['router-a'][0]} "),
                     ("127.0.0.1:8242 ", f"127.0.0.1:{ports['router-b'][0]} ")):
        text = text.replace(old, new)
    return text


def healthy(port: int) -> bool:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/courier/health",
                                     headers={"Authorization": "Basic YWRtaW46Y2hhbmdlLW1l"})
    try:
        with urllib.request.urlopen(request, timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO / "data" / "cluster"), help="where PostgreSQL, configs and logs go")
    parser.add_argument("--base-port", type=int, default=None, help="move every port (see above)")
    args = parser.parse_args()
    data = Path(args.data).resolve()
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o755)
    ports = ports_from(args.base_port)
    pg = start_postgresql(data, ports["postgresql"])
    template = json.loads((HERE / "router.json").read_text())
    processes: dict[str, subprocess.Popen] = {}
    env = dict(os.environ, TCP_NODELAY="1", COURIER_VENV=str(REPO / ".venv"))

    def stop(*_: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for name in ROUTERS:                      # one SIGTERM each: a second makes Orthanc exit at once
            if name in processes and processes[name].poll() is None:
                processes[name].send_signal(signal.SIGTERM)
        for name in ROUTERS:
            if name in processes:
                try:
                    processes[name].wait(20)
                except subprocess.TimeoutExpired:
                    processes[name].kill()
        if "haproxy" in processes:
            processes["haproxy"].terminate()
            processes["haproxy"].wait(10)
        as_postgres([pg_bin("pg_ctl"), "-D", str(pg), "-m", "fast", "-w", "stop"], capture_output=True)
        print("cluster stopped", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for name in ROUTERS:
        path = data / f"{name}.json"
        path.write_text(json.dumps(router_config(template, name, ports), indent=2))
        log = open(data / f"{name}.log", "ab")
        processes[name] = subprocess.Popen(["Orthanc", str(path)], cwd=data, env=env, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
    balancer = data / "haproxy.cfg"
    balancer.write_text(haproxy_config(ports))
    processes["haproxy"] = subprocess.Popen(["haproxy", "-f", str(balancer), "-db"], stdout=open(data / "haproxy.log", "ab"),
                                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 90
    while not all(healthy(port) for port in [ports[name][0] for name in ROUTERS] + [ports["http"]]):
        for name, process in processes.items():
            if process.poll() is not None:
                print(f"{name} exited ({process.returncode}); see {data / (name + '.log')}", flush=True)
                stop()
        if time.monotonic() > deadline:
            print("the routers did not become healthy within 90 s", flush=True)
            stop()
        time.sleep(0.5)
    time.sleep(1.5)                               # HAProxy's next check sees every router up
    print(f"ready: DICOM 127.0.0.1:{ports['dicom']} (AET COURIER), HTTP http://127.0.0.1:{ports['http']}/courier/ui/ "
          f"(admin / change-me); routers {', '.join(ROUTERS)}; PostgreSQL 127.0.0.1:{ports['postgresql']}; logs in {data}",
          flush=True)
    while True:
        for name, process in processes.items():
            if process.poll() is not None:
                print(f"{name} exited ({process.returncode}); stopping the cluster", flush=True)
                stop()
        time.sleep(1)


if __name__ == "__main__":
    main()
