"""Real Orthanc processes and DICOM peers for integration tests and benchmarks.

Each Orthanc gets free loopback ports, its own temporary folder and a log file (never an unread
pipe). Readiness is polled; teardown is SIGTERM, then SIGKILL.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Optional

import requests

REPO = Path(__file__).resolve().parent.parent

# DCMTK (storescu, storescp, dcmqrscp, and Orthanc itself) disables Nagle's algorithm only when this
# is set. make test and make bench set it; a test or benchmark run without make did not, and its
# storescu then sent about 55 CT instances/s where make bench's sent 270 (measured 2026-12-03).
os.environ.setdefault("TCP_NODELAY", "1")
PLUGINS = Path("/usr/share/orthanc/plugins")
# Orthanc settings every shipped Courier configuration has (tests/unit/test_deployment_files.py
# holds them to it): an Orthanc running Courier gets them here too.
ROUTER_ORTHANC = {"StoreMD5ForAttachments": False, "SaveJobs": False}


_GIVEN: set[int] = set()


def _worker_share() -> tuple[int, int]:
    """(this pytest-xdist worker's index, how many workers); (0, 1) outside xdist."""
    name, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if name.startswith("gw") and name[2:].isdigit() and count.isdigit() and int(count) > 1:
        return int(name[2:]) % int(count), int(count)
    return 0, 1


WORKER_PORTS = (12000, 32768)     # below Linux's ephemeral range (32768-60999): never a kernel's pick


def worker_ports(index: int, count: int) -> range:
    """The ports worker `index` of `count` hands out: a block of its own in WORKER_PORTS."""
    low, high = WORKER_PORTS
    size = (high - low) // count
    return range(low + index * size, low + (index + 1) * size)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port nobody listens on, never one this process handed out before: the kernel can
    give the same free port twice before the first taker binds it (an Orthanc got the same port
    for DICOM and HTTP and stopped). Under pytest-xdist each worker walks a block of ports of its
    own below the ephemeral range (worker_ports), so that two workers never give the same port to
    two Orthancs; the kernel's own picks cannot be split between workers (bind() gets only odd
    ports here: Linux keeps the even ones for connect())."""
    index, count = _worker_share()
    if count == 1:
        while True:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in _GIVEN:
                _GIVEN.add(port)
                return port
    for port in worker_ports(index, count):
        if port not in _GIVEN and _bindable(port):
            _GIVEN.add(port)
            return port
    raise RuntimeError(f"pytest-xdist worker {index} of {count} has handed out every port of {worker_ports(index, count)}")


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - polling
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Orthanc:
    """One Orthanc process. `courier=True` loads the plugin from this checkout."""

    def __init__(self, workdir: Path, name: str, courier: Optional[dict] = None, dicomweb: bool = False,
                 aet: Optional[str] = None, extra: Optional[dict] = None,
                 http_port: Optional[int] = None, dicom_port: Optional[int] = None,
                 postgresql: Optional[str] = None) -> None:
        """`postgresql`: the URL of a database for Orthanc's own index and storage (the
        orthanc-postgresql plugins), so that several Orthancs share them."""
        self.name = name
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.http_port = http_port or free_port()
        self.dicom_port = dicom_port or free_port()
        self.aet = aet or name.upper().replace("-", "")[:16]
        self.log_path = self.dir / "orthanc.log"
        self.process: Optional[subprocess.Popen] = None
        self.has_courier = courier is not None
        self.environment: dict[str, Optional[str]] = {}   # changes to the process's environment (None: unset)
        plugins = []
        if courier is not None:
            plugins.append(str(PLUGINS / "libOrthancPython.so"))
        if dicomweb:
            plugins.append(str(PLUGINS / "libOrthancDicomWeb.so"))
        if postgresql:
            plugins += [str(PLUGINS / "libOrthancPostgreSQLIndex.so"), str(PLUGINS / "libOrthancPostgreSQLStorage.so")]
        self.config: dict[str, Any] = {
            "Name": name, "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": self.aet,
            "StorageDirectory": str(self.dir / "storage"), "IndexDirectory": str(self.dir / "storage"),
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "StableAge": 2, "Plugins": plugins, "DicomScuTimeout": 5, "ConcurrentJobs": 8,
            "DicomModalities": {}, "OrthancPeers": {},
        }
        if dicomweb:
            self.config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/", "Servers": {}}
        if postgresql:
            user_host, database = postgresql.split("://", 1)[1].rsplit("/", 1)
            user, host_port = user_host.split("@")
            host, port = host_port.split(":")
            self.config["PostgreSQL"] = {"EnableIndex": True, "EnableStorage": True, "Host": host, "Port": int(port),
                                         "Database": database, "Username": user, "Password": "", "Lock": False,
                                         "EnableSsl": False, "MaximumConnectionRetries": 20}
            self.config["DatabaseServerIdentifier"] = name
        if courier is not None:
            self.config["PythonScript"] = str(REPO / "plugin" / "courier_entry.py")
            self.config["LuaScripts"] = [str(REPO / "plugin" / "courier_traffic.lua")]     # C-FINDs served, for traffic
            self.config["Courier"] = courier
            self.config.update(ROUTER_ORTHANC)
        if extra:
            self.config.update(extra)

    @property
    def auth(self) -> Optional[tuple[str, str]]:
        """The first registered user, when authentication is on."""
        users = self.config.get("RegisteredUsers") or {}
        return next(iter(users.items())) if self.config.get("AuthenticationEnabled") and users else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def write_config(self) -> Path:
        path = self.dir / "orthanc.json"
        path.write_text(json.dumps(self.config, indent=2))
        return path

    def start(self, wait: bool = True) -> "Orthanc":
        path = self.write_config()
        env = dict(os.environ, TCP_NODELAY="1", COURIER_VENV=str(REPO / ".venv"))
        for name, value in self.environment.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(["Orthanc", str(path)], stdout=log, stderr=subprocess.STDOUT,
                                        cwd=self.dir, env=env, start_new_session=True)
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 40.0) -> None:
        def ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            requests.get(self.url + "/system", timeout=2, auth=self.auth).raise_for_status()
            if self.has_courier:
                return requests.get(self.url + "/courier/health", timeout=2, auth=self.auth).status_code == 200
            return True
        deadline = time.monotonic() + timeout
        while True:
            try:
                if ready():
                    return
            except RuntimeError:
                raise
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.1)

    def signal(self, kill: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL if kill else signal.SIGTERM)

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL), wait; SIGKILL if Orthanc has not stopped within 15 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.signal(kill)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.signal(kill=True)
            self.process.wait(10)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    # -- REST helpers ------------------------------------------------------------------------
    def get(self, path: str, **params) -> Any:
        response = requests.get(self.url + path, params=params, timeout=30, auth=self.auth)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: Any = None) -> requests.Response:
        """POST JSON (an empty object when there is no body), as Courier's CSRF rule wants."""
        return requests.post(self.url + path, json={} if body is None else body, timeout=30, auth=self.auth)

    def delete(self, path: str) -> requests.Response:
        return requests.delete(self.url + path, timeout=30, auth=self.auth)

    def instances(self) -> list[str]:
        return self.get("/instances")

    def sop_uids(self) -> set[str]:
        return {i["MainDicomTags"]["SOPInstanceUID"] for i in self.get("/instances", expand="")}

    def as_modality(self) -> dict:
        return {"AET": self.aet, "Host": "127.0.0.1", "Port": self.dicom_port}


def storescu(port: int, files, calling: str = "STORESCU", called: str = "ANY-SCP", check: bool = True,
             associations: int = 1, options: tuple = ()) -> subprocess.CompletedProcess:
    """DCMTK's storescu, as a modality would send (`options`: more of its flags)."""
    files = [str(f) for f in files]
    result = subprocess.run(["storescu", *options, "-aet", calling, "-aec", called, "127.0.0.1", str(port), *files],
                            capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"storescu failed ({result.returncode}): {result.stderr[-2000:]}")
    return result


class BlackHole:
    """A TCP listener that accepts connections and never answers: a hung PACS.
    Counts the connections open now and the most ever open at once."""

    def __init__(self) -> None:
        import threading
        self.port = free_port()
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", self.port))
        self.server.listen(64)
        self.server.settimeout(0.2)
        self.open: list[socket.socket] = []
        self.most_open = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            conn.setblocking(False)
            with self._lock:
                self.open.append(conn)
                self.open = [c for c in self.open if self._alive(c)]
                self.most_open = max(self.most_open, len(self.open))

    @staticmethod
    def _alive(conn: socket.socket) -> bool:
        try:
            return conn.recv(65536, socket.MSG_PEEK) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False

    def open_now(self) -> int:
        with self._lock:
            self.open = [c for c in self.open if self._alive(c)]
            return len(self.open)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in self.open:
            conn.close()
        self.server.close()
