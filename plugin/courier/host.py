"""The only module that touches the `orthanc` module: a small typed facade.

Everything else receives a Host (or plain callables), so the rest of Courier runs and is tested
without Orthanc. Callbacks registered here run on Orthanc's threads with the GIL held: they must
stay cheap (look up, wake a thread, answer from SQLite).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional


@dataclass
class HttpRequest:
    method: str
    path: str                                # e.g. "/courier/tasks/3"
    query: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class HttpResponse:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


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

    def on_incoming_cstore(self, refuse: Callable[[str], Optional[str]], record: Callable[[str, str], None]) -> None:
        """`refuse(calling_aet)` returns a reason to refuse the C-STORE, or None to accept."""
        def cstore_filter(instance: Any) -> int:
            aet = instance.GetInstanceRemoteAet()
            reason = refuse(aet)
            if reason is None:
                return 0
            record(aet, reason)
            return 0x0124          # Refused: not authorized (PS3.7 C.5.3)
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
        def callback(output: Any, uri: str, **request: Any) -> None:
            response = handler(HttpRequest(
                method=request.get("method", "GET"), path=uri,
                query={k: v for k, v in (request.get("get") or {}).items()},
                body=request.get("body") or b"", headers=dict(request.get("headers") or {})))
            for name, value in response.headers.items():
                output.SetHttpHeader(name, value)
            if response.status == 200:
                output.AnswerBuffer(response.body, response.content_type)
            else:
                output.SetHttpHeader("Content-Type", response.content_type)
                text = response.body.decode("utf-8")        # orthanc-python 4.0 wants str here
                output.SendHttpStatus(response.status, text, len(response.body))
        self.orthanc.RegisterRestCallback(prefix + "(.*)", callback)

    def extend_explorer(self, javascript: str) -> None:
        self.orthanc.ExtendOrthancExplorer(javascript)

    def set_metric(self, name: str, value: float) -> None:
        self.orthanc.SetMetricsValue(name, float(value), self.orthanc.MetricsType.DEFAULT)
