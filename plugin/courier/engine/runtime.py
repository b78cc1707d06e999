"""Runtime configuration: routes, destinations, profiles and nodes changed without a restart.

The latest version in the store (store.config_versions) is the configuration in force. At start,
this router's orthanc.json runtime part (config.runtime.extract) becomes a new version when it
changed since this router last read it, so an edit of the file still works; otherwise the latest
version is applied (a latest version this machine cannot apply stops it with the reason, rather
than replacing the configuration of every router).

A change is made on the latest version's document, checked by the same parser as orthanc.json
(config.parse on orthanc.json overlaid with the document), Orthanc's own registries are set to
its nodes (PUT, then DELETE, on /modalities, /peers, /dicom-web/servers, so Orthanc and Courier
agree; undone as far as possible when Orthanc refuses one), then it is recorded and handed to the
running parts (`apply`). Every router polls the latest version number and applies a version made
by another router within POLL_SECONDS; registries it could not set are set again at each poll.
"""
from __future__ import annotations

import copy
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from courier import threads
from courier.config import runtime
from courier.config.nodes import REGISTRIES
from courier.config.parse import CourierConfig, parse
from courier.config.reader import Section
from courier.config.secrets import read_secret
from courier.deid.pseudonymizer import Pseudonymizer
from courier.deid.sources import patient_source
from courier.delivery.senders import build_senders
from courier.errors import ConfigError
from courier.orthanc_rest import OrthancHttpError, OrthancRest
from courier.routing.scripts import compile_script, load_conditions, load_modify_hooks, read_scripts
from courier.store.config_versions import ConfigConflict, ConfigVersion
from courier.store.store import Store
from courier.tokens import Tokens

log = logging.getLogger("courier.config")

POLL_SECONDS = 2.0


@dataclass(frozen=True)
class Built:
    """A document checked and turned into what the running parts use."""
    document: dict
    config: CourierConfig
    run_script: Callable
    senders: dict
    pseudonymizers: dict
    full: dict = field(repr=False)           # orthanc.json overlaid, with the nodes' passwords
    hooks: dict = field(default_factory=dict)    # route -> its Modify hook, modify(ds, context)


class RuntimeConfig:
    def __init__(self, seed: Mapping[str, Any], base_dir: str, repo_dir: str, hostname: str, store: Store,
                 rest: Optional[OrthancRest], environ: Mapping[str, str] = os.environ) -> None:
        self.seed, self.base_dir, self.repo_dir, self.hostname = seed, base_dir, repo_dir, hostname
        self.store, self.rest, self.environ = store, rest, environ
        self.apply: Callable[[Built], None] = lambda built: None
        # node id -> HTTP headers Orthanc's registry entry of a DICOMweb server gets besides its
        # own HttpHeaders (the bearer token of courier.tokens); never part of a version
        self.extra_headers: Callable[[str], Mapping[str, str]] = lambda node_id: {}
        self.tokens: Optional[Tokens] = None     # configured with each version in force (app wires it)
        self.check: Callable[[CourierConfig], None] = lambda config: None    # raises ConfigError
        self.current: Optional[Built] = None
        self.version = 0                         # the version in force here
        self.failed_version = 0                  # a later version this router could not apply (logged)
        self._registries_due = False             # Orthanc's registries still to be set to `current`
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # -- building -----------------------------------------------------------------------------
    def seed_document(self) -> tuple[dict, str]:
        """(orthanc.json's runtime document, this router's name)."""
        config = parse(self.seed, self.base_dir, self.repo_dir, self.environ, self.hostname)
        return runtime.extract(self.seed, read_scripts(config.scripts_directory, config.routes)), config.router_name

    def _password(self, path: str, entry: Mapping[str, Any]) -> str:
        section = Section({k: entry[k] for k in runtime.PASSWORD_KEYS if k in entry}, path, "{registry}.{id}")
        return read_secret(section, path, self.base_dir, self.environ, runtime.PASSWORD_KEYS, minimum=1).decode("utf-8")

    def build(self, document: Any) -> Built:
        """Check a document as orthanc.json is checked; ConfigError names the JSON path."""
        runtime.check_shape(document)
        scripts = document.get("Scripts", {})
        for name, source in scripts.items():
            compile_script(name, source, f"Scripts.{name}", function_name=None)    # each route checks its function
        full = runtime.overlay(self.seed, document, self._password)
        runtime.check_secret_reuse(full, self.base_dir, self.seed)
        config = parse(full, self.base_dir, self.repo_dir, self.environ, self.hostname)
        run_script = load_conditions(config.scripts_directory, config.routes, scripts)
        hooks = load_modify_hooks(config.scripts_directory, config.routes, scripts)
        senders = build_senders(self.rest, config.destinations, config.folders, config.nodes, config.local_aet,
                                config.dicom_timeout, config.archives, self.tokens, config.buckets)
        pseudonymizers = {name: Pseudonymizer(profile, patient_source(profile, self.store), source_ae=config.local_aet)
                          for name, profile in config.profiles.items()}
        return Built(document, config, run_script, senders, pseudonymizers, full, hooks)

    # -- start ----------------------------------------------------------------------------------
    def initial(self) -> Built:
        """What applies at start: this router's orthanc.json when it changed since it last read
        it, else the latest version."""
        seed_document, router = self.seed_document()
        seed_digest = runtime.digest(seed_document)
        latest = self.store.config_versions.latest()
        if latest is None or self.store.config_versions.seed_of(router) != seed_digest:
            built = self.build(seed_document)
            latest = self.store.config_versions.add(
                seed_document, "orthanc.json", "orthanc.json", f"read from orthanc.json by router {router}",
                changes=runtime.diff(latest.document if latest else {}, seed_document), seed=(router, seed_digest))
        else:
            try:
                built = self.build(latest.document)
            except ConfigError as exc:
                raise ConfigError(exc.path, f"configuration version {latest.version} (the latest) cannot be applied "
                                            f"on this router: {exc.problem}",
                                  "provide what it names on this machine, or change orthanc.json: it then becomes "
                                  "the next version") from None
        self._load_lookups(built)
        self._configure_tokens(built)
        self.current, self.version = built, latest.version
        return built

    def start(self) -> None:
        """Set Orthanc's registries to the version in force, then follow the versions of other routers."""
        self._registries_due = True
        self._set_registries_due()
        self._thread = threads.Thread(target=self._loop, name="courier-config", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    # -- changes --------------------------------------------------------------------------------
    def edit(self, change: Callable[[dict], None], actor: str, comment: str, base: Optional[int] = None,
             source: str = "api") -> tuple[ConfigVersion, list]:
        """`change(document)` edits a copy of the latest version's document, never a stale one;
        without `base` the edit is made on whatever the latest version is."""
        with self._lock:
            latest = self.store.config_versions.latest()
            document = copy.deepcopy(latest.document) if latest else {}
            change(document)
            return self.change(document, actor, comment, base=latest.version if base is None and latest else base,
                               source=source)

    def change(self, document: Any, actor: str, comment: str = "", base: Optional[int] = None,
               source: str = "api") -> tuple[ConfigVersion, list]:
        """Check, set Orthanc's registries, record, apply. ConfigError (nothing changed) or
        ConfigConflict (someone else changed it since `base`)."""
        with self._lock:
            built = self.build(document)
            self.check(built.config)
            latest = self.store.config_versions.latest()
            if base is not None and base != (latest.version if latest else 0):
                raise ConfigConflict(latest.version if latest else 0)
            previous = self.current
            changes = runtime.diff(latest.document if latest else {}, built.document)
            try:
                self._sync_registries(previous.full if previous else None, built.full)
                version = self.store.config_versions.add(built.document, actor, source, comment, base=base,
                                                         changes=changes)
            except Exception:
                if previous is not None:
                    self._undo_registries(built.full, previous.full)
                raise
            self._take(built, version.version)
            return version, changes

    def restore(self, number: int, actor: str, base: Optional[int] = None) -> tuple[ConfigVersion, list]:
        old = self.store.config_versions.get(number)
        if old is None:
            raise KeyError(number)
        return self.change(old.document, actor, f"restored version {number}", base=base, source="restore")

    def _configure_tokens(self, built: Built) -> None:
        if self.tokens is not None:
            self.tokens.configure(built.config.node_settings)

    def _take(self, built: Built, version: int) -> None:
        self._load_lookups(built)
        self._configure_tokens(built)
        self.current, self.version = built, version
        self.apply(built)
        log.warning("configuration version %d applied: %d route(s), %d destination(s)", version,
                    len(built.config.routes), len(built.config.destinations))

    def _load_lookups(self, built: Built) -> None:
        for name, profile in built.config.profiles.items():
            if profile.lookup_rows:
                self.store.crosswalk.load_lookup(name, profile.lookup_rows)

    def _loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.follow()
                self._set_registries_due()
            except Exception:                    # noqa: BLE001 - logged; tried again at the next poll
                log.exception("applying the latest configuration version failed")

    def follow(self) -> bool:
        """Apply a version another router recorded; True when one was applied."""
        if self.store.config_versions.latest_number() in (self.version, self.failed_version):
            return False
        with self._lock:
            latest = self.store.config_versions.latest()
            if latest is None or latest.version in (self.version, self.failed_version):
                return False
            try:
                built = self.build(latest.document)
            except ConfigError as exc:
                log.error("configuration version %d cannot be applied on this router, which stays on version %d: %s",
                          latest.version, self.version, exc)
                self.failed_version = latest.version
                return False
            previous = self.current
            try:                        # Orthanc knows the nodes before a route may send to them (as in change)
                self._sync_registries(previous.full if previous else None, built.full)
            except ConfigError as exc:
                log.error("Orthanc's node registries could not be set to configuration version %d (tried again "
                          "every %g s): %s", latest.version, POLL_SECONDS, exc)
                self._registries_due = True
            self._take(built, latest.version)
            return True

    # -- Orthanc's registries ---------------------------------------------------------------------
    def _set_registries_due(self) -> None:
        if not self._registries_due or self.current is None:
            return
        with self._lock:
            try:
                self._sync_registries(None, self.current.full)
                self._registries_due = False
            except ConfigError as exc:
                log.error("Orthanc's node registries could not be set to configuration version %d (tried again "
                          "every %g s): %s", self.version, POLL_SECONDS, exc)

    def _sync_registries(self, before: Optional[Mapping[str, Any]], after: Mapping[str, Any]) -> None:
        """PUT the nodes that are new or changed, then DELETE those gone, in Orthanc's own
        registries; `before` None: every node is PUT. ConfigError names the node Orthanc refused."""
        if self.rest is None:
            return
        old = {(r.name, node_id): entry for r, node_id, entry in runtime.registry_entries(before or {})}
        for registry in REGISTRIES:
            wanted = {node_id: entry for r, node_id, entry in runtime.registry_entries(after) if r is registry}
            try:
                present = set(self.rest.get_json(registry.endpoint))
            except OrthancHttpError as exc:
                if exc.status == 404 and not wanted:          # the DICOMweb plugin is not loaded
                    continue
                raise ConfigError(registry.name, f"Orthanc's registry cannot be read: {exc}") from None
            for node_id, entry in wanted.items():
                if node_id not in present or before is None or old.get((registry.name, node_id)) != entry:
                    self._call(registry.name, node_id, "PUT", registry.endpoint, self._body(registry.kind, node_id, entry))
            for node_id in sorted(present - set(wanted)):
                self._call(registry.name, node_id, "DELETE", registry.endpoint)

    def _body(self, kind: str, node_id: str, entry: Any) -> dict:
        """orthanc_entry's body, with the extra headers of a DICOMweb server merged into its HttpHeaders."""
        body = orthanc_entry(kind, entry)
        extra = self.extra_headers(node_id) if kind == "dicomweb" else {}
        if extra:
            body["HttpHeaders"] = {**(body.get("HttpHeaders") or {}), **extra}
        return body

    def set_node_headers(self, node_id: str) -> bool:
        """PUT a DICOMweb server's entry again (its renewed token); False when the version in
        force has no such server."""
        if self.rest is None:
            return False
        with self._lock:
            if self.current is None:
                return False
            for registry, found, entry in runtime.registry_entries(self.current.full):
                if found == node_id and registry.kind == "dicomweb":
                    self._call(registry.name, node_id, "PUT", registry.endpoint, self._body(registry.kind, node_id, entry))
                    return True
        return False

    def _undo_registries(self, tried: Mapping[str, Any], previous: Mapping[str, Any]) -> None:
        """Best effort, after a refused change: Orthanc's registries as the version in force says."""
        try:
            self._sync_registries(tried, previous)
        except ConfigError as exc:
            log.error("Orthanc's node registries could not be set back to version %d: %s", self.version, exc)
            self._registries_due = True

    def _call(self, registry: str, node_id: str, method: str, endpoint: str, body: Any = None) -> None:
        try:
            if method == "PUT":
                self.rest.put_json(f"{endpoint}/{node_id}", body)
            else:
                self.rest.delete(f"{endpoint}/{node_id}")
        except OrthancHttpError as exc:
            raise ConfigError(f"{registry}.{node_id}", f"Orthanc refused to {'set' if method == 'PUT' else 'delete'} "
                                                       f"the node: {exc}") from None


def orthanc_entry(kind: str, entry: Any) -> dict:
    """A registry entry as the object Orthanc's PUT takes (the list forms spelt out; Courier's
    PasswordFile/PasswordEnv left out: the password was read into Password)."""
    if isinstance(entry, list):
        if kind == "dicom":
            body = {"AET": entry[0], "Host": entry[1], "Port": entry[2]}
            if len(entry) > 3:
                body["Manufacturer"] = entry[3]
            return body
        body = {"Url": entry[0]}
        if len(entry) > 2:
            body.update(Username=entry[1], Password=entry[2])
        return body
    if isinstance(entry, str):
        return {"Url": entry}
    return {k: v for k, v in entry.items() if k not in runtime.PASSWORD_KEYS}
