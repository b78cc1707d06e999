"""Loopback HTTP client of Orthanc's REST API, for worker threads.

Worker threads never call `orthanc.RestApi*` (orthanc-python 4.0 holds the GIL during those
calls, which would freeze every callback while a slow peer answers): they talk HTTP to
127.0.0.1 with the token Orthanc generates for plugins, over one kept-alive connection per thread.

The standard library's http.client rather than requests: this code runs inside Orthanc's process
on every routed instance, and requests spent 0.56 ms of CPU per call against http.client's 0.13 ms
(measured on GET /instances/{id}), CPU the router's own ingest and sends then lack.

One exception: the DICOM file of a stored instance (`instance_file`) is read in the process when
the caller gives a reader (Host.instance_file), Orthanc keeps its index and its files itself
(/system names no database or storage plugin), and the file is at most IN_PROCESS_BYTES: Orthanc
then reads it from its own disk in a tenth of a millisecond for a CT slice, short enough for the
GIL it holds, where the loopback HTTP cost three times that. A plugin (PostgreSQL, object
storage) makes every read a round trip, and a large file (a whole-slide image, a long
multi-frame) takes milliseconds: then over HTTP, the GIL free meanwhile. The caller gives no
reader when Orthanc compresses its files (StorageCompression: zlib under the GIL).
"""
from __future__ import annotations

import http.client
import json
import select
import ssl
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Optional
from urllib.parse import quote, urlencode, urlsplit

from courier.errors import Cancelled, DeliveryError


class JobFailed(DeliveryError):
    """An Orthanc job ended in Failure; `details` is Orthanc's ErrorDetails (or ErrorDescription)."""

    def __init__(self, details: str, state: dict) -> None:
        self.details, self.state = details, state
        super().__init__(details)


class OrthancHttpError(DeliveryError):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message, retriable=status != 404)


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """The server closed this kept-alive connection (Orthanc does after KeepAliveTimeout): its socket
    reads as ready, with an EOF, before we send anything."""
    if connection.sock is None:
        return False
    try:
        readable, _, _ = select.select([connection.sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


MAX_IDLE_SECONDS = 0.5        # under Orthanc's default KeepAliveTimeout of 1 s
POLL_SECONDS = 0.1            # how often a wait for an Orthanc job asks cancelled() (and, without JobEnds, the job)
CHECK_SECONDS = 2.0           # with JobEnds, how often the job is asked all the same (an end signalled to nobody)


class JobEnds:
    """The jobs Orthanc said have ended (its JOB_SUCCESS and JOB_FAILURE changes, given to the
    plugin's change callback), so that a wait for a job ends when the job
    does rather than at its next poll: between two batches of a burst the destination is not left
    idle for up to a poll interval, and a batch costs one job request instead of seven. The last
    KEEP ids are remembered: an end signalled before its wait began is not missed."""

    KEEP = 1000

    def __init__(self) -> None:
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._changed = threading.Condition()

    def ended(self, job_id: str) -> None:
        with self._changed:
            self._ended[job_id] = None
            while len(self._ended) > self.KEEP:
                self._ended.popitem(last=False)
            self._changed.notify_all()

    def wait(self, job_id: str, timeout: float) -> bool:
        """True as soon as the job is said to have ended, False after `timeout`."""
        with self._changed:
            return self._changed.wait_for(lambda: job_id in self._ended, timeout)

    def forget(self, job_id: str) -> None:
        with self._changed:
            self._ended.pop(job_id, None)


IN_PROCESS_BYTES = 8 * 2**20     # larger files are read over HTTP (instance_file): the GIL free meanwhile


class OrthancRest:
    def __init__(self, base_url: str, token: Optional[str] = None, timeout: float = 3600.0,
                 job_ends: Optional[JobEnds] = None, read_file: Optional[Callable[[str], bytes]] = None) -> None:
        """`job_ends`: Orthanc's signals of ended jobs, inside Orthanc (else run_job polls);
        `read_file(instance ID)`: a stored instance's file read in the process (instance_file)."""
        self.base_url, self.token, self.timeout = base_url.rstrip("/"), token, timeout
        self.job_ends, self.read_file = job_ends, read_file
        self._own_storage: Optional[bool] = None      # does Orthanc keep the files itself? Asked once
        url = urlsplit(self.base_url)
        self._https = url.scheme == "https"
        self._host, self._port = url.hostname or "127.0.0.1", url.port or (443 if self._https else 80)
        self._prefix = url.path.rstrip("/")
        self._headers = {"Accept-Encoding": "identity"}        # loopback: gzip only costs Orthanc CPU
        if token:
            self._headers["Authorization"] = token
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        idle = time.monotonic() - getattr(self._local, "used_at", 0.0)
        # Orthanc closes a kept-alive connection after KeepAliveTimeout (1 s by default): one idle
        # for nearly that long may be closed while a request is on its way (measured: a POST every
        # second failed now and then with a broken pipe), so it is opened anew instead.
        if connection is not None and (idle > MAX_IDLE_SECONDS or _dropped(connection)):
            connection.close()
        if connection is None:
            if self._https:
                connection = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout,
                                                         context=ssl.create_default_context())
            else:
                connection = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
            self._local.connection = connection
        return connection

    def _call(self, method: str, path: str, body: Optional[bytes] = None, content_type: Optional[str] = None,
              params: Optional[dict] = None, timeout: Optional[float] = None) -> bytes:
        target = self._prefix + quote(path, safe="/-_.~!$&'()*+,;=:@")
        if params:
            target += "?" + urlencode({k: "" if v is None else v for k, v in params.items()})
        headers = dict(self._headers)
        if content_type:
            headers["Content-Type"] = content_type
        for attempt in (1, 2):
            connection = self._connection()
            reused = connection.sock is not None
            connection.timeout = timeout or self.timeout
            if connection.sock is not None:
                connection.sock.settimeout(connection.timeout)
            try:
                connection.request(method, target, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                self._local.used_at = time.monotonic()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                connection.close()
                # a kept-alive connection the server dropped just now: safe to send again when the
                # request changes nothing (a POST might have been received: the caller retries it)
                if reused and attempt == 1 and method in ("GET", "DELETE"):
                    continue
                raise OrthancHttpError(0, f"{method} {path}: Orthanc did not answer ({type(exc).__name__})") from None
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                raise OrthancHttpError(0, f"{method} {path}: Orthanc did not answer ({type(exc).__name__})") from None
        if response.status >= 400:
            text = data.decode("utf-8", "replace")
            try:
                answer = json.loads(text)
                detail = (answer.get("Details") or answer.get("Message") or text) if isinstance(answer, dict) else text
            except ValueError:
                detail = text[:300]
            raise OrthancHttpError(response.status, f"{method} {path}: HTTP {response.status}: {detail}")
        return data

    def instance_file(self, instance_id: str, size: int = 0) -> bytes:
        """A stored instance's DICOM file (of `size` bytes, if known): read in the process when
        that is cheap (see above), else GET /instances/{id}/file."""
        if self.read_file is not None and size <= IN_PROCESS_BYTES and self._keeps_own_files():
            return self.read_file(instance_id)
        return self.get_bytes(f"/instances/{instance_id}/file")

    def _keeps_own_files(self) -> bool:
        if self._own_storage is None:
            try:
                system = self.get_json("/system")
                self._own_storage = system.get("StorageAreaPlugin") is None and system.get("DatabaseBackendPlugin") is None
            except (DeliveryError, ValueError, AttributeError):
                self._own_storage = False     # not worth asking again on every read
        return self._own_storage

    def get_json(self, path: str, **params: Any) -> Any:
        return json.loads(self._call("GET", path, params=params))

    def get_bytes(self, path: str) -> bytes:
        return self._call("GET", path)

    def post_json(self, path: str, body: Any, timeout: Optional[float] = None) -> Any:
        data = self._call("POST", path, json.dumps(body).encode("utf-8"), "application/json", timeout=timeout)
        return json.loads(data) if data else None

    def post_bytes(self, path: str, data: bytes, content_type: str = "application/dicom") -> Any:
        answer = self._call("POST", path, data, content_type)
        return json.loads(answer) if answer else None

    def put_json(self, path: str, body: Any) -> Any:
        data = self._call("PUT", path, json.dumps(body).encode("utf-8"), "application/json")
        return json.loads(data) if data.strip() else None

    def delete(self, path: str) -> None:
        self._call("DELETE", path)

    def run_job(self, path: str, body: dict, cancelled: Callable[[], bool], timeout: float = 3600.0) -> dict:
        """POST an asynchronous Orthanc job and wait for it without holding it against cancellation:
        `cancelled()` is asked every POLL_SECONDS; when it says so the job is cancelled in Orthanc
        and Cancelled is raised once the job has left Running (Orthanc stops between instances; an
        instance in flight to a hung peer ends at DicomScuTimeout). The job's state is asked when
        JobEnds says it ended (and every CHECK_SECONDS all the same); without JobEnds it is polled,
        10 ms at first, then every POLL_SECONDS. A failed job raises JobFailed with Orthanc's error
        details."""
        job = self.post_json(path, {**body, "Asynchronous": True})
        job_id = job["ID"]
        try:
            return self._wait_for_job(path, job_id, cancelled, timeout)
        except DeliveryError:
            raise                     # its job ended, or was cancelled, or cannot be reached
        except Exception:             # an unexpected error (in cancelled(), say): the job must not go on alone
            try:
                self.post_json(f"/jobs/{job_id}/cancel", {})
            except DeliveryError:
                pass
            raise
        finally:
            if self.job_ends is not None:
                self.job_ends.forget(job_id)

    def _wait_for_job(self, path: str, job_id: str, cancelled: Callable[[], bool], timeout: float) -> dict:
        job_path = f"/jobs/{job_id}"
        ends = self.job_ends
        deadline = time.monotonic() + timeout
        wait, cancelling, signalled = 0.01, False, False
        while True:
            if ends is not None and not signalled and not cancelling:
                asked = time.monotonic()
                while not signalled and time.monotonic() - asked < CHECK_SECONDS:
                    if self._cancel_if(cancelled, path, job_path, deadline, timeout):
                        cancelling = True
                        break
                    signalled = ends.wait(job_id, POLL_SECONDS)
            try:
                state = self.get_json(job_path)
            except OrthancHttpError as exc:
                if exc.status != 404:
                    raise
                raise DeliveryError(f"{path}: Orthanc no longer knows job {job_id} (dropped from its JobsHistorySize); "
                                    "its outcome is unknown, so it is sent again") from None
            if state["State"] == "Success":
                if cancelling:
                    raise Cancelled()
                return state
            if state["State"] == "Failure":
                details = state.get("ErrorDetails") or state.get("ErrorDescription") or ""
                if cancelling:
                    raise Cancelled()
                raise JobFailed(details, state)
            if cancelling and state["State"] not in ("Running", "Pending", "Paused"):
                raise Cancelled()
            if ends is None or signalled or cancelling:     # polled (also when signalled before the registry said so)
                if not cancelling and self._cancel_if(cancelled, path, job_path, deadline, timeout):
                    cancelling = True
                time.sleep(wait)
                wait = min(POLL_SECONDS, wait * 2)

    def _cancel_if(self, cancelled: Callable[[], bool], path: str, job_path: str, deadline: float,
                   timeout: float) -> bool:
        """Cancel the job in Orthanc if `cancelled()` says so (True) or its time is up (DeliveryError)."""
        asked = cancelled()
        if not asked and time.monotonic() <= deadline:
            return False
        try:
            self.post_json(f"{job_path}/cancel", {})
        except OrthancHttpError:
            pass                      # it ended meanwhile
        if not asked:
            raise DeliveryError(f"{path}: no answer within {timeout:g} s")
        return True
