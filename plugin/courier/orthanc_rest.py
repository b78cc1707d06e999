"""Loopback HTTP client of Orthanc's REST API, for worker threads.

Worker threads never call `orthanc.RestApi*` (orthanc-python 4.0 holds the GIL during those
calls, which would freeze every callback while a slow peer answers): they talk HTTP to
127.0.0.1 with the token Orthanc generates for plugins. One requests.Session per thread.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

import requests

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


class OrthancRest:
    def __init__(self, base_url: str, token: Optional[str] = None, timeout: float = 3600.0) -> None:
        self.base_url, self.token, self.timeout = base_url.rstrip("/"), token, timeout
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False      # no proxy or .netrc for loopback calls (and no stat() per call)
            session.headers["Accept-Encoding"] = "identity"    # loopback: gzip only costs Orthanc CPU
            if self.token:
                session.headers["Authorization"] = self.token
            self._local.session = session
        return session

    def _call(self, method: str, path: str, timeout: Optional[float] = None, **kwargs: Any) -> requests.Response:
        try:
            response = self._session().request(method, self.base_url + path, timeout=timeout or self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise OrthancHttpError(0, f"{method} {path}: Orthanc did not answer ({type(exc).__name__})") from None
        if response.status_code >= 400:
            try:
                body = response.json()
                detail = body.get("Details") or body.get("Message") or response.text
            except ValueError:
                detail = response.text[:300]
            raise OrthancHttpError(response.status_code, f"{method} {path}: HTTP {response.status_code}: {detail}")
        return response

    def get_json(self, path: str, **params: Any) -> Any:
        return self._call("GET", path, params=params or None).json()

    def get_bytes(self, path: str) -> bytes:
        return self._call("GET", path).content

    def post_json(self, path: str, body: Any, timeout: Optional[float] = None) -> Any:
        response = self._call("POST", path, json=body, timeout=timeout)
        return response.json() if response.content else None

    def post_bytes(self, path: str, data: bytes, content_type: str = "application/dicom") -> Any:
        response = self._call("POST", path, data=data, headers={"Content-Type": content_type})
        return response.json() if response.content else None

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
