"""Composition root: configuration -> store -> engine, change follower, callbacks, REST routes."""
from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from courier.config.database import DatabaseSettings
from courier.config.parse import CourierConfig, parse
from courier.deid.ingest_gate import IngestGate
from courier.deid.pseudonymizer import Pseudonymizer
from courier.deid.sources import patient_source
from courier.delivery.senders import build_senders
from courier.engine.echoes import EchoMonitor
from courier.engine.scheduler import Scheduler
from courier.engine.workers import Engine
from courier.errors import ConfigError
from courier.host import Host
from courier.imports.importer import Importer
from courier.imports.watch import FolderWatcher
from courier.orthanc_rest import OrthancRest
from courier.routing.admission import Admission
from courier.routing.callers import CallerPolicy
from courier.routing.follower import ChangeFollower
from courier.routing.scripts import load_conditions
from courier.store.database import Database, SQLiteDatabase
from courier.store.postgres import PostgresDatabase
from courier.store.records import AuditEvent, TrafficEvent
from courier.store.store import Store
from courier.web.guard import refused_unread
from courier.web.http import Context
from courier.web.metrics import MetricsPublisher
from courier.web.routes import Api

log = logging.getLogger("courier")

REPO_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def open_database(settings: DatabaseSettings) -> Database:
    """SQLite (one router) or PostgreSQL (several routers on one database)."""
    if settings.kind == "postgresql":
        return PostgresDatabase(settings.url, settings.password, pool_size=settings.pool_size)
    os.makedirs(os.path.dirname(settings.path) or ".", exist_ok=True)
    return SQLiteDatabase(settings.path)


class Courier:
    def __init__(self, host: Host, config: CourierConfig) -> None:
        self.host, self.config = host, config
        self.run_script = run_script = load_conditions(config.scripts_directory, config.routes)
        self.store = Store(open_database(config.database))
        self.rest = OrthancRest(config.orthanc_url, token=host.rest_token())
        self.callers = CallerPolicy(config.allowed_callers, config.known_callers)
        senders = build_senders(self.rest, config.destinations, config.folders, config.nodes, config.local_aet,
                                config.dicom_timeout, config.archives)
        for name, profile in config.profiles.items():
            if profile.lookup_rows:
                self.store.crosswalk.load_lookup(name, profile.lookup_rows)
        self.pseudonymizers = {name: Pseudonymizer(profile, patient_source(profile, self.store), source_ae=config.local_aet)
                               for name, profile in config.profiles.items()}
        self.engine = Engine(config, self.store, self.rest, senders, self.pseudonymizers)
        self.scheduler = Scheduler(config, self.store, self.rest, self.engine.incarnation, on_tasks=self.engine.wake)
        self.importer = Importer(self.store, self.rest)
        self.watcher = FolderWatcher(config.imports, config.routes, self.store, self.importer, on_tasks=self.engine.wake)
        self.follower = ChangeFollower(self.store, self.rest, config.routes, self.callers, run_script,
                                       on_tasks=self.engine.wake, pseudonymizers=self.pseudonymizers)
        self.metrics = MetricsPublisher(self.store, host.set_metric, config)
        self.echoes = EchoMonitor(config, self.store, self.rest)
        self.api = Api(Context(config, self.store, is_healthy=lambda: self.engine.running and self.follower.running,
                               pseudonymizers=self.pseudonymizers, rest=self.rest, wake_workers=self.engine.wake,
                               wake_follower=self.follower.wake, wake_scheduler=self.scheduler.wake,
                               importer=self.importer, watcher=self.watcher,
                               run_script=self.run_script))

    def install(self) -> None:
        ingest_routes = [r for r in self.config.routes if r.pseudonymize_on == "Ingest"]
        if ingest_routes:
            gate = IngestGate(ingest_routes, self.pseudonymizers[ingest_routes[0].pseudonymize], self.store,
                              self.config.quarantine_directory)
            self.host.on_received_instance(gate.decide)
        # on Orthanc's DICOM thread: unknown callers, and what Orthanc 1.10.1 could not render
        self.host.on_incoming_cstore(Admission(self.callers).refuse, self._record_refused_aet)
        self.host.serve("/courier/", self.api.handle)
        self.host.filter_requests("/courier/", refused_unread)
        with open(os.path.join(REPO_DIR, "web", "static", "orthanc-explorer.js")) as script:
            self.host.extend_explorer(script.read())
        self.host.on_change(self._on_change)

    def _record_refused_aet(self, aet: str, reason: str) -> None:
        """A refused C-STORE: audited, and in the traffic log (the filter knows neither IP nor called AE)."""
        self.store.traffic.record([TrafficEvent("C-STORE", aet or "?", "refused", self.store.clock(), instances=1,
                                                detail=reason)],
                                  audit=[AuditEvent("instance-rejected", actor=aet or "?", detail={"reason": reason})])

    def _on_change(self, change: str, resource_id: str) -> None:
        if change == "ORTHANC_STARTED":
            self.engine.start()
            self.follower.start()
            self.scheduler.start()
            self.watcher.start()
            self.metrics.start()
            self.echoes.start()
            log.warning("Courier started: %d route(s), %d worker(s), database %s",
                        len(self.config.routes), self.config.workers, self.config.database.describe())
        elif change == "ORTHANC_STOPPED":      # in parallel: a graceful stop must end within seconds
            stoppers = [threading.Thread(target=part.stop) for part in (self.follower, self.scheduler, self.watcher,
                                                                   self.engine, self.metrics, self.echoes)]
            for thread in stoppers:
                thread.start()
            for thread in stoppers:
                thread.join(8)
            log.warning("Courier stopped: %d task(s) left RUNNING", self.store.tasks.queue_depth()["RUNNING"])
        elif change == "NEW_INSTANCE":
            self.follower.wake()


def install(orthanc: Any) -> Courier:
    host = Host(orthanc)
    host.install_logging()
    try:
        config = parse(host.configuration(), host.configuration_dir(), REPO_DIR, hostname=socket.gethostname())
        courier = Courier(host, config)
    except ConfigError as exc:
        log.error("%s", exc)
        raise SystemExit(str(exc)) from None     # Orthanc stops, printing the message
    refusal = courier.store.routers.register(config.router_name, courier.engine.incarnation)
    if refusal:
        log.error("%s", refusal)
        raise SystemExit(refusal)
    courier.install()
    return courier
