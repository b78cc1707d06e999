"""Periodic echoes (Courier.EchoIntervalSeconds): every node of Orthanc's registries that offers
C-ECHO (or a DICOMweb server, or a peer) is asked whether it answers; the outcome is each node's
state on the dashboard and in the metrics. Only a change of state is audited."""
from __future__ import annotations

import logging
import threading
from typing import Optional

from courier import threads
from courier.config.parse import CourierConfig
from courier.orthanc_rest import OrthancRest
from courier.store.store import Store
from courier.transfer.remote import echo

log = logging.getLogger("courier.echoes")


class EchoMonitor:
    def __init__(self, config: CourierConfig, store: Store, rest: OrthancRest) -> None:
        self.config, self.store, self.rest = config, store, rest
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if self.config.echo_interval <= 0:
            return
        self._thread = threads.Thread(target=self._loop, name="courier-echoes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def echo_all(self) -> None:
        for node in self.config.nodes.values():
            settings = self.config.node_settings.get(node.id)
            if self._stop.is_set() or (settings and not settings.enabled) or (
                    node.kind == "dicom" and settings and "C-ECHO" not in settings.capabilities):
                continue
            ok, message = echo(self.rest, node.id, node.kind)
            self.store.nodes.record_echo(node.id, ok, message, "courier", audit=False)

    def _loop(self) -> None:
        while not self._stop.wait(self.config.echo_interval):      # the first round one interval after start
            try:
                self.echo_all()
            except Exception:
                log.exception("periodic echoes failed; trying again")
