"""Loopback HTTP client of Orthanc's REST API, for worker threads.

Worker threads never call `orthanc.RestApi*` (orthanc-python 4.0 holds the GIL during those
calls, which would freeze every callback while a slow peer answers): they talk HTTP to
127.0.0.1 with the token Orthanc generates for plugins, over one kept-alive connection per thread.

The standard library's http.client rather than requests: this code runs inside Orthanc's process
on every routed instance, and requests spent 0.56 ms of CPU per call against http.client's 0.13 ms
(measured on GET /instances/{id}), CPU the router's own ingest and sends then lack.
"""
from __future__ import annotations

import http.client
import json
import select
import ssl
import threading
import time
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


class OrthancRest:
    def __init__(self, base_url: str, token: Optional[str] = None, timeout: float = 3600.0) -> None:
        self.base_url, self.token, self.timeout = base_url.rstrip("/"), token, timeout
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
        the state is polled (10 ms at first, then up to 100 ms) and `cancelled()` is asked at each
        poll; when it says so the job is cancelled in Orthanc and Cancelled is raised once the job
        has left Running (Orthanc stops between instances; an instance in flight to a hung peer
        ends at DicomScuTimeout). A failed job raises JobFailed with Orthanc's error details."""
        job = self.post_json(path, {**body, "Asynchronous": True})
        job_path = f"/jobs/{job['ID']}"
        deadline = time.monotonic() + timeout
        wait, cancelling = 0.01, False
        while True:
            state = self.get_json(job_path)
            if state["State"] == "Success":
                if cancelling:
                    raise Cancelled()
                return state
            if state["State"] == "Failure":
                details = state.get("ErrorDetails") or state.get("ErrorDescription") or ""
                if cancelling:
                    raise Cancelled()
                raise JobFailed(details, state)
            if not cancelling and (cancelled() or time.monotonic() > deadline):
                timed_out = not cancelled()
                try:
                    self.post_json(f"{job_path}/cancel", {})
                except OrthancHttpError:
                    pass                      # it ended meanwhile
                if timed_out:
                    raise DeliveryError(f"{path}: no answer within {timeout:g} s")
                cancelling = True
            if cancelling and state["State"] not in ("Running", "Pending", "Paused"):
                raise Cancelled()
            time.sleep(wait)
            wait = min(0.1, wait * 2)
