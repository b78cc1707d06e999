"""The only module that touches the `orthanc` module: a small typed facade.

Everything else receives a Host (or plain callables), so the rest of Courier runs and is tested
without Orthanc. Callbacks registered here run on Orthanc's threads with the GIL held: they must
stay cheap (look up, wake a thread, answer from SQLite). REST handlers run on Courier's own
threads (BigStackRunner), since Orthanc's HTTP threads have too little stack for Python.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import queue
import signal
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional
from urllib.parse import unquote_plus

from courier import threads
from courier.errors import DeliveryError

# orthanc.OrthancException's first argument for what Orthanc's REST API answers with 404 (InexistentItem,
# InexistentFile, UnknownResource, InexistentTag): gone, so retrying cannot help
GONE = frozenset({7, 13, 17, 21})

# The signals Orthanc 1.10.1's main loop waits for (SystemToolbox::ServerBarrier).
STOP_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM)


@dataclass
class HttpRequest:
    method: str
    path: str                                # e.g. "/courier/tasks/3"
    query: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    parsed: Any = field(default=None, repr=False)     # the JSON body, once the web layer has checked it


@dataclass
class HttpResponse:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def decode_query(raw: Mapping[str, str]) -> dict[str, str]:
    """The GET arguments as sent: Orthanc 1.10.1 gives a plugin's REST callback the query string's
    names and values still percent-encoded ("a%20b", "jos%C3%A9"; measured). Bytes that are not
    UTF-8 become lone surrogates (surrogateescape), which the web layer refuses with a 400."""
    return {unquote_plus(k, errors="surrogateescape"): unquote_plus(v, errors="surrogateescape") for k, v in raw.items()}


class BigStackRunner:
    """Runs calls on Courier's own threads, which have `stack` bytes of stack, and waits for them.

    Orthanc 1.10.1 serves HTTP on threads with 100 KiB stacks (measured with pthread_getattr_np
    in a REST callback). Python code that recurses in C there overflows it and Orthanc segfaults:
    json.loads of arrays nested ~530 deep, pydicom reading a DICOM file whose sequences nest 200
    deep (a 6 KB file posted to /courier/routes/test stopped Orthanc). On these threads Python's
    recursion limit raises RecursionError long before the stack ends. Threads are started when
    none is idle, up to `most` (Orthanc's HttpThreadsCount: never fewer than requests in flight).
    """

    def __init__(self, most: int, stack: int = 16 * 1024 * 1024) -> None:
        self.most, self.stack = most, stack
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = self._idle = 0

    def run(self, function: Callable[..., Any], *args: Any) -> Any:
        done: Future = Future()
        with self._lock:
            if self._idle == 0 and self._threads < self.most:
                self._start()
            self._idle -= 1
        self._calls.put((function, args, done))
        return done.result()

    def _start(self) -> None:
        previous = threading.stack_size(self.stack)
        try:
            threads.Thread(target=self._serve, name=f"courier-http-{self._threads}", daemon=True).start()
        finally:
            threading.stack_size(previous)
        self._threads += 1
        self._idle += 1

    def _serve(self) -> None:
        while True:
            function, args, done = self._calls.get()
            try:
                done.set_result(function(*args))
            except BaseException as exc:        # given to the waiting caller
                done.set_exception(exc)
            finally:
                with self._lock:
                    self._idle += 1


@contextlib.contextmanager
def stop_signals_ignored() -> Iterator[None]:
    """Ignore SIGTERM, SIGINT, SIGQUIT and SIGHUP in this process for the duration, then give
    them back the action they had.

    Orthanc 1.10.1 handles one of them to begin its graceful stop, then sets them back to their
    default action, and only then tells the plugins (ORTHANC_STOPPED). A second signal during
    Courier's stop (a supervisor's, a second Ctrl-C) killed Orthanc at once: no "Courier
    stopped", tasks left RUNNING until the next start (measured: a second SIGTERM 1 s into the
    stop). SIGKILL still stops it. Python's `signal` module refuses to act outside the main
    thread, where Orthanc does not call plugins, hence libc's signal(), which is process-wide.
    A program started meanwhile inherits the ignored signals (storescu, dcm2niix by a worker that
    has not yet seen the stop): Courier ends those with SIGKILL (storescu when its task is
    cancelled, dcm2niix at its time-out).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.signal.restype, libc.signal.argtypes = ctypes.c_void_p, (ctypes.c_int, ctypes.c_void_p)
    ignore = ctypes.c_void_p(int(signal.SIG_IGN))
    previous = {number: libc.signal(int(number), ignore) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, action in previous.items():
            libc.signal(int(number), ctypes.c_void_p(action or 0))


class _OrthancLogHandler(logging.Handler):
    def __init__(self, orthanc: Any) -> None:
        super().__init__()
        self.orthanc = orthanc

    def emit(self, record: logging.LogRecord) -> None:
        message = f"[courier] {self.format(record)}"
        if record.levelno >= logging.ERROR:
            self.orthanc.LogError(message)
        elif record.levelno >= logging.WARNING:
            self.orthanc.LogWarning(message)
        else:
            self.orthanc.LogInfo(message)


class Host:
    def __init__(self, orthanc: Any) -> None:
        self.orthanc = orthanc
        self._change_handlers: list[Callable[[str, str], None]] = []

    # -- configuration and identity ---------------------------------------------------------
    def configuration(self) -> dict:
        return json.loads(self.orthanc.GetConfiguration())

    def configuration_dir(self) -> str:
        path = self.orthanc.GetConfigurationPath()
        return path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))

    def rest_token(self) -> str:
        return self.orthanc.GenerateRestApiAuthorizationToken()

    # -- stored instances -------------------------------------------------------------------
    def instance_file(self, instance_id: str) -> bytes:
        """A stored instance's DICOM file, read in this process (GetDicomForInstance): no HTTP,
        measured 0.09 ms of CPU for a 0.5 MB CT slice against 0.30 ms for GET /instances/{id}/file
        over loopback. The GIL is held while Orthanc reads it: OrthancRest.instance_file uses it
        only where that is short. DeliveryError when it cannot (not retriable if the instance is
        gone, as a 404 of the REST API)."""
        try:
            return self.orthanc.GetDicomForInstance(instance_id)
        except self.orthanc.OrthancException as exc:
            code = exc.args[0] if exc.args else None
            text = exc.args[1] if len(exc.args) > 1 else str(exc)
            raise DeliveryError(f"instance {instance_id} could not be read from Orthanc: {text}",
                                retriable=code not in GONE) from None
        except Exception as exc:  # noqa: BLE001 - whatever the binding raises is one instance's failure
            raise DeliveryError(f"instance {instance_id} could not be read from Orthanc: {type(exc).__name__}") from None

    def install_logging(self) -> None:
        logger = logging.getLogger("courier")
        logger.handlers[:] = [_OrthancLogHandler(self.orthanc)]
        logger.setLevel(logging.INFO)
        logger.propagate = False

    # -- callbacks ---------------------------------------------------------------------------
    def on_change(self, handler: Callable[[str, str], None]) -> None:
        """Courier's own dispatcher: Orthanc accepts a single change callback per plugin."""
        if not self._change_handlers:
            names = {getattr(self.orthanc.ChangeType, n): n for n in dir(self.orthanc.ChangeType) if n.isupper()}

            def dispatch(change_type: int, level: int, resource_id: str) -> None:
                name = names.get(change_type, str(change_type))
                for registered in self._change_handlers:
                    registered(name, resource_id)
            self.orthanc.RegisterOnChangeCallback(dispatch)
        self._change_handlers.append(handler)

    def on_incoming_cstore(self, refuse: Callable[[str, Callable[[], bytes]], Optional[tuple[int, str]]],
                           record: Callable[[str, str], None]) -> None:
        """`refuse(calling_aet, data)` returns (DIMSE status, reason) to refuse the C-STORE, or None
        to accept; `data()` gives the instance's bytes (read only if asked). It must not raise."""
        def cstore_filter(instance: Any) -> int:
            aet = instance.GetInstanceRemoteAet()
            try:
                refusal = refuse(aet, lambda: bytes(instance.GetInstanceData()))
            except Exception as exc:  # noqa: BLE001 - a bug in a check never stores unchecked data silently
                refusal = (0xC000, f"the C-STORE check failed: {type(exc).__name__}")
            if refusal is None:
                return 0
            record(aet, refusal[1])
            return refusal[0]
        self.orthanc.RegisterIncomingCStoreInstanceFilter(cstore_filter)

    def on_received_instance(self, decide: Callable[[bytes], tuple[str, Optional[bytes]]]) -> None:
        """`decide(bytes)` returns ("keep" | "modify" | "discard", new bytes or None). It must not
        raise: Orthanc would store the instance unchanged."""
        actions = {"keep": self.orthanc.ReceivedInstanceAction.KEEP_AS_IS,
                   "modify": self.orthanc.ReceivedInstanceAction.MODIFY,
                   "discard": self.orthanc.ReceivedInstanceAction.DISCARD}

        def callback(received: bytes, origin: Any) -> tuple:
            try:
                action, data = decide(bytes(received))
                return actions[action], data
            except BaseException:       # fail closed
                return actions["discard"], None
        self.orthanc.RegisterReceivedInstanceCallback(callback)

    def serve(self, prefix: str, handler: Callable[[HttpRequest], HttpResponse]) -> None:
        """Courier's REST callback. The handler runs on a thread with a big stack (BigStackRunner);
        only the answer is given to Orthanc here, on Orthanc's HTTP thread."""
        runner = BigStackRunner(int(self.configuration().get("HttpThreadsCount", 50)))

        def callback(output: Any, uri: str, **request: Any) -> None:
            response = runner.run(handler, HttpRequest(
                method=request.get("method", "GET"), path=uri,
                query=decode_query(request.get("get") or {}),
                body=request.get("body") or b"", headers=dict(request.get("headers") or {})))
            if response.status == 405:
                # Orthanc 1.10.1 refuses 405 through SendHttpStatus (it throws and the connection
                # closes unanswered); SendMethodNotAllowed clears the headers and sends no body.
                output.SendMethodNotAllowed(response.headers.get("Allow", ""))
                return
            for name, value in response.headers.items():
                output.SetHttpHeader(name, value)
            if response.status == 200:
                output.AnswerBuffer(response.body, response.content_type)
            else:
                output.SetHttpHeader("Content-Type", response.content_type)
                text = response.body.decode("utf-8")        # orthanc-python 4.0 wants str here
                output.SendHttpStatus(response.status, text, len(response.body))
        self.orthanc.RegisterRestCallback(prefix + "(.*)", callback)

    def filter_requests(self, prefix: str, refuse: Callable[[str, str, Mapping[str, str]], bool]) -> None:
        """Orthanc's incoming-HTTP filter, for the URIs under `prefix`: `refuse(method, uri, headers)`
        (headers lower-case) True answers 403 Forbidden, with no body, before Orthanc reads the
        request's body. The filter can only allow or forbid: it sees the method, URI, IP, headers
        and (for GET) the arguments, never the body. It runs for every HTTP request Orthanc
        serves (its own REST API, DICOMweb...), with the GIL: anything else is let through at once.
        It never sees Orthanc's internal calls (Lua's RestApiPost): a route it refuses to everybody is
        one only those reach.
        With a filter installed, a request whose URI or headers are not UTF-8 gets 500 from
        orthanc-python 4.0 (it cannot make a str of them) on every route, not only Courier's."""
        methods = {getattr(self.orthanc.HttpMethod, name, number): name
                   for number, name in ((1, "GET"), (2, "POST"), (3, "PUT"), (4, "DELETE"))}

        def http_filter(uri: str, method: int = 1, headers: Optional[Mapping[str, str]] = None, **_: Any) -> bool:
            if not uri.startswith(prefix):
                return True
            try:
                return not refuse(methods.get(method, "?"), uri, headers or {})
            except Exception:                   # a bug refuses Courier's request, never Orthanc's
                logging.getLogger("courier").exception("incoming-HTTP filter on %s", uri)
                return False
        self.orthanc.RegisterIncomingHttpRequestFilter(http_filter)

    def extend_explorer(self, javascript: str) -> None:
        self.orthanc.ExtendOrthancExplorer(javascript)

    def set_metric(self, name: str, value: float) -> None:
        self.orthanc.SetMetricsValue(name, float(value), self.orthanc.MetricsType.DEFAULT)
