"""Composition root: configuration -> store -> engine, change follower, callbacks, REST routes."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from courier.config import dcmtk_env
from courier.config.database import DatabaseSettings
from courier.config.nodes import REGISTRY_OF_KIND
from courier.config.parse import CourierConfig, parse
from courier.deid.ingest_gate import IngestGate, MadeOnIngest
from courier.engine.echoes import EchoMonitor
from courier.engine.runtime import Built, RuntimeConfig
from courier.engine.scheduler import Scheduler
from courier.engine.workers import Engine
from courier.errors import ConfigError
from courier.host import Host, stop_signals_ignored
from courier.imports.importer import Importer
from courier.imports.watch import FolderWatcher
from courier.orthanc_rest import JobEnds, OrthancRest
from courier.routing.admission import Admission
from courier.routing.callers import CallerPolicy
from courier.routing.follower import ChangeFollower
from courier.store.database import Database, SQLiteDatabase
from courier.store.postgres import PostgresDatabase
from courier.store.records import AuditEvent, TrafficEvent
from courier.store.store import Store
from courier.tokens import Tokens
from courier.web.guard import refused_unread
from courier.web.http import Context
from courier.web.metrics import MetricsPublisher
from courier.web.routes import Api

STOP_SECONDS = 8.0      # Courier's share of a graceful stop: its parts stop in parallel within it
log = logging.getLogger("courier")

REPO_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def open_database(settings: DatabaseSettings) -> Database:
    """SQLite (one router) or PostgreSQL (several routers on one database)."""
    if settings.kind == "postgresql":
        return PostgresDatabase(settings.url, settings.password, pool_size=settings.pool_size)
    os.makedirs(os.path.dirname(settings.path) or ".", exist_ok=True)
    return SQLiteDatabase(settings.path)


class Courier:
    def __init__(self, host: Host, seed: dict, base_dir: str, hostname: str) -> None:
        """`seed`: Orthanc's configuration (orthanc.json). Its runtime part (routes, destinations,
        profiles, nodes) may be overridden by a later version in the store (engine.runtime)."""
        boot = parse(seed, base_dir, REPO_DIR, hostname=hostname)
        self.host = host
        self.store = Store(open_database(boot.database))
        self.rest = OrthancRest(boot.orthanc_url, token=host.rest_token(), job_ends=JobEnds(),
                                read_file=None if seed.get("StorageCompression") else host.instance_file)
        self.runtime = RuntimeConfig(seed, base_dir, REPO_DIR, hostname, self.store, self.rest)
        # DICOMweb servers' bearer tokens, kept current in Orthanc's registry (HttpHeaders)
        self.tokens = Tokens({}, on_refresh=self.runtime.set_node_headers)
        self.runtime.tokens, self.runtime.extra_headers = self.tokens, self.tokens.registry_headers
        built = self.runtime.initial()
        self.config = config = built.config
        self.run_script, self.pseudonymizers = built.run_script, built.pseudonymizers
        self.callers = CallerPolicy(config.allowed_callers, config.known_callers)
        self.engine = Engine(config, self.store, self.rest, built.senders, self.pseudonymizers, hooks=built.hooks)
        self.scheduler = Scheduler(config, self.store, self.rest, self.engine.incarnation, on_tasks=self.engine.wake)
        self.importer = Importer(self.store, self.rest)
        self.watcher = FolderWatcher(config.imports, config.routes, self.store, self.importer, on_tasks=self.engine.wake)
        # what the ingest gate made, for the follower; not where Orthanc may replace a stored instance
        self.made = None if seed.get("OverwriteInstances", False) else MadeOnIngest()
        self.follower = ChangeFollower(self.store, self.rest, config.routes, self.callers, self.run_script,
                                       on_tasks=self.engine.wake, pseudonymizers=self.pseudonymizers, made=self.made)
        self.metrics = MetricsPublisher(self.store, host.set_metric, config)
        self.echoes = EchoMonitor(config, self.store, self.rest)
        self.context = Context(config, self.store, is_healthy=lambda: self.engine.running and self.follower.running,
                               pseudonymizers=self.pseudonymizers, rest=self.rest, wake_workers=self.engine.wake,
                               wake_follower=self.follower.wake, wake_scheduler=self.scheduler.wake,
                               importer=self.importer, watcher=self.watcher,
                               run_script=self.run_script, runtime=self.runtime, hooks=built.hooks)
        self.api = Api(self.context)
        self.runtime.apply, self.runtime.check = self._apply, self._check
        self._ingest = _ingest_routes(config)

    def _check(self, config: CourierConfig) -> None:
        """What a runtime change may not do: change the routes that pseudonymize on ingest (Orthanc
        takes its ingest callback at start-up only), or take away a node, destination or profile
        that unfinished tasks or a subscription still use."""
        if _ingest_routes(config) != self._ingest:
            index = next((i for i, r in enumerate(config.routes) if r.pseudonymize_on == "Ingest"), 0)
            raise ConfigError(f"Courier.Routes[{index}].PseudonymizeOn",
                              "routes that pseudonymize on ingest change only with orthanc.json and a restart",
                              "Orthanc registers the ingest callback when it starts")
        old = self.config
        gone = [(kind, name) for kind, before, after in (
            ("destination", old.destinations, config.destinations), ("node", old.nodes, config.nodes),
            ("profile", old.profiles, config.profiles),
            ("route", {r.name: r for r in old.routes}, {r.name: r for r in config.routes}))
            for name in before if name not in after]
        if not gone:
            return
        uses = self.store.tasks.unfinished_uses()
        subscriptions = self.store.subscriptions.list()
        for kind, name in gone:
            where = _path_of(old, kind, name)
            count = sum(uses.get(f"{column}:{name}", 0) for column in (
                (kind,) if kind in ("profile", "route") else ("destination", "source")))
            if count:
                raise ConfigError(where, f"{count} unfinished task(s) still use {name!r}",
                                  "let them finish, or cancel them on the Tasks page, then remove it")
            for sub in subscriptions:
                if name in (sub.spec.get("Source"), sub.spec.get("Destination"), sub.spec.get("Pseudonymize")):
                    raise ConfigError(where, f"subscription {sub.id} uses {name!r}", "delete the subscription first")

    def _apply(self, built: Built) -> None:
        """A new configuration version, handed to every running part (engine.runtime calls this)."""
        config = built.config
        self.callers.update(config.known_callers)
        self.follower.reconfigure(config.routes, built.run_script, built.pseudonymizers)
        self.engine.reconfigure(config, built.senders, built.pseudonymizers, built.hooks)
        self.scheduler.reconfigure(config)
        self.watcher.routes = config.routes
        self.echoes.config = self.metrics.config = config
        self.context.config, self.context.pseudonymizers, self.context.run_script, self.context.hooks = (
            config, built.pseudonymizers, built.run_script, built.hooks)
        self.config, self.run_script, self.pseudonymizers = config, built.run_script, built.pseudonymizers
        self.engine.wake()
        self.follower.wake()

    def install(self) -> None:
        ingest_routes = [r for r in self.config.routes if r.pseudonymize_on == "Ingest"]
        if ingest_routes:
            gate = IngestGate(ingest_routes, self.pseudonymizers[ingest_routes[0].pseudonymize], self.store,
                              self.config.quarantine_directory, made=self.made)
            self.host.on_received_instance(gate.decide)
        # on Orthanc's DICOM thread: unknown callers, and what Orthanc 1.10.1 could not render
        self.host.on_incoming_cstore(Admission(self.callers, accepted_sop_classes=self.config.accepted_sop_classes).refuse,
                                     self._record_refused_aet)
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
            self.runtime.start()             # Orthanc's node registries set to the version in force
            self.tokens.start()              # then kept with valid bearer tokens
            self.engine.start()
            self.follower.start()
            self.scheduler.start()
            self.watcher.start()
            self.metrics.start()
            self.echoes.start()
            log.warning("Courier started: %d route(s), %d worker(s), database %s",
                        len(self.config.routes), self.config.workers, self.config.database.describe())
            for warning in self.config.orthanc_warnings:
                log.warning("Courier: orthanc.json: %s", warning)
        elif change == "ORTHANC_STOPPED":      # in parallel: a graceful stop must end within seconds
            with stop_signals_ignored():       # a second SIGTERM would kill Orthanc in the middle of it
                log.warning("Courier stopping (for at most %g s; stop signals ignored meanwhile)", STOP_SECONDS)
                stoppers = [threading.Thread(target=part.stop) for part in (self.follower, self.scheduler,
                                                                       self.watcher, self.engine, self.metrics,
                                                                       self.echoes, self.runtime, self.tokens)]
                for thread in stoppers:
                    thread.start()
                deadline = time.monotonic() + STOP_SECONDS
                for thread in stoppers:
                    thread.join(max(0.0, deadline - time.monotonic()))
            log.warning("Courier stopped: %d task(s) left RUNNING", self.store.tasks.queue_depth()["RUNNING"])
        elif change == "NEW_INSTANCE":
            self.follower.wake()
        elif change in ("JOB_SUCCESS", "JOB_FAILURE") and self.rest.job_ends is not None:
            self.rest.job_ends.ended(resource_id)       # a worker waiting for that job looks at once


def _path_of(config: CourierConfig, kind: str, name: str) -> str:
    """Where a node, destination or profile is declared, for an error."""
    if kind == "profile":
        return f"Courier.Pseudonymization.{name}"
    if kind == "route":
        return f"Courier.Routes.{name}"
    kind = config.destinations.get(name) or config.nodes[name].kind
    section = ({"folder": "Courier.Folders", "archive": "Courier.Archives", "bucket": "Courier.Buckets"}.get(kind)
               or REGISTRY_OF_KIND[kind].name)
    return f"{section}.{name}"


def _ingest_routes(config: CourierConfig) -> list:
    """The routes that pseudonymize on ingest, with their profiles (the ingest gate keeps both)."""
    return [(r.name, r.match_spec, r.trigger, config.profiles.get(r.pseudonymize or ""))
            for r in config.routes if r.pseudonymize_on == "Ingest"]


def install(orthanc: Any) -> Courier:
    added = dcmtk_env.to_set(os.environ)     # before Orthanc opens a DICOM socket (it reads it at each one)
    os.environ.update(added)
    host = Host(orthanc)
    host.install_logging()
    for name, value in added.items():
        log.warning("Courier: %s was not set in Orthanc's environment: set to %s (Nagle's algorithm off for "
                    "Orthanc's DICOM connections and Courier's storescu)", name, value)
    try:
        courier = Courier(host, host.configuration(), host.configuration_dir(), socket.gethostname())
    except ConfigError as exc:
        log.error("%s", exc)
        raise SystemExit(str(exc)) from None     # Orthanc stops, printing the message
    config = courier.config
    refusal = courier.store.routers.register(config.router_name, courier.engine.incarnation)
    if refusal:
        log.error("%s", refusal)
        raise SystemExit(refusal)
    courier.install()
    return courier
