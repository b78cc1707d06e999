"""Runtime configuration: routes, destinations, profiles and nodes changed without a restart.

The latest version in the store (store.config_versions) is the configuration in force. At start,
orthanc.json's runtime part (config.runtime.extract) becomes a new version when it changed since
it was last read, so an edit of the file still works; otherwise the latest version is applied.
A change is checked by the same parser as orthanc.json (config.parse on orthanc.json overlaid
with the document), Orthanc's own registries are set to its nodes (PUT/DELETE /modalities,
/peers, /dicom-web/servers, so Orthanc and Courier agree), then it is recorded and handed to the
running parts (`apply`). Every router polls the latest version number and applies a version made
by another router within POLL_SECONDS.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from courier.config import runtime
from courier.config.parse import CourierConfig, parse
from courier.config.reader import Section
from courier.config.secrets import read_secret
from courier.deid.pseudonymizer import Pseudonymizer
from courier.deid.sources import patient_source
from courier.delivery.senders import build_senders
from courier.errors import ConfigError
from courier.orthanc_rest import OrthancHttpError, OrthancRest
from courier.routing.scripts import compile_script, load_conditions, read_scripts
from courier.store.config_versions import ConfigConflict, ConfigVersion
from courier.store.store import Store

log = logging.getLogger("courier.config")

POLL_SECONDS = 2.0
ENDPOINTS = {"DicomModalities": "/modalities", "DicomWeb.Servers": "/dicom-web/servers", "OrthancPeers": "/peers"}
NODE_PASSWORD_KEYS = ("PasswordFile", "PasswordEnv")


@dataclass(frozen=True)
class Built:
    """A document checked and turned into what the running parts use."""
    document: dict
    config: CourierConfig
    run_script: Callable
    senders: dict
    pseudonymizers: dict
    full: dict = field(repr=False)           # orthanc.json overlaid, with the nodes' passwords


class RuntimeConfig:
    def __init__(self, seed: Mapping[str, Any], base_dir: str, repo_dir: str, hostname: str, store: Store,
                 rest: Optional[OrthancRest], environ: Mapping[str, str] = os.environ) -> None:
        self.seed, self.base_dir, self.repo_dir, self.hostname = seed, base_dir, repo_dir, hostname
        self.store, self.rest, self.environ = store, rest, environ
        self.apply: Callable[[Built], None] = lambda built: None
        self.check: Callable[[CourierConfig], None] = lambda config: None    # raises ConfigError
        self.current: Optional[Built] = None
        self.version = 0
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # -- building -----------------------------------------------------------------------------
    def seed_document(self) -> dict:
        config = parse(self.seed, self.base_dir, self.repo_dir, self.environ, self.hostname)
        return runtime.extract(self.seed, read_scripts(config.scripts_directory, config.routes))

    def _password(self, path: str, entry: Mapping[str, Any]) -> str:
        section = Section({k: entry[k] for k in NODE_PASSWORD_KEYS if k in entry}, path, "{registry}.{id}")
        return read_secret(section, path, self.base_dir, self.environ, NODE_PASSWORD_KEYS, minimum=1).decode("utf-8")

    def build(self, document: Any) -> Built:
        """Check a document as orthanc.json is checked; ConfigError names the JSON path."""
        if not isinstance(document, dict):
            raise ConfigError("(configuration)", "expected an object with Courier, DicomModalities, ... sections")
        unknown = [k for k in document if k not in ("Courier", "DicomModalities", "DicomWeb", "OrthancPeers", "Scripts")]
        if unknown:
            raise ConfigError(unknown[0], "not a section of the runtime configuration",
                              "Courier (Routes, Folders, Archives, Pseudonymization, Nodes), DicomModalities, "
                              "DicomWeb.Servers, OrthancPeers, Scripts")
        courier = document.get("Courier", {})
        if not isinstance(courier, dict):
            raise ConfigError("Courier", "expected an object")
        for key in courier:
            if key not in runtime.COURIER_KEYS:
                raise ConfigError(f"Courier.{key}", "is set in orthanc.json only (a restart applies it)",
                                  f"at runtime: {', '.join(runtime.COURIER_KEYS)}")
        scripts = document.get("Scripts", {})
        if not isinstance(scripts, dict) or not all(isinstance(v, str) for v in scripts.values()):
            raise ConfigError("Scripts", "expected an object of file name -> Python source")
        for name, source in scripts.items():
            compile_script(name, source, f"Scripts.{name}")
        full = runtime.overlay(self.seed, document, self._password)
        config = parse(full, self.base_dir, self.repo_dir, self.environ, self.hostname)
        run_script = load_conditions(config.scripts_directory, config.routes, scripts)
        senders = build_senders(self.rest, config.destinations, config.folders, config.nodes, config.local_aet,
                                config.dicom_timeout, config.archives)
        pseudonymizers = {name: Pseudonymizer(profile, patient_source(profile, self.store), source_ae=config.local_aet)
                          for name, profile in config.profiles.items()}
        return Built(document, config, run_script, senders, pseudonymizers, full)

    # -- start ----------------------------------------------------------------------------------
    def initial(self) -> Built:
        """What applies at start: orthanc.json when it changed since last read, else the latest version."""
        seed_document = self.seed_document()
        seed_digest = runtime.digest(seed_document)
        latest = self.store.config_versions.latest()
        if latest is None or latest.seed_digest != seed_digest:
            built = self.build(seed_document)
            latest = self.store.config_versions.add(seed_document, "orthanc.json", "orthanc.json",
                                                    "read from orthanc.json", seed_digest=seed_digest,
                                                    changes=runtime.diff(latest.document if latest else {}, seed_document))
        else:
            try:
                built = self.build(latest.document)
            except ConfigError as exc:
                log.error("configuration version %d cannot be applied (%s): using orthanc.json's", latest.version, exc)
                built = self.build(seed_document)
                latest = self.store.config_versions.add(seed_document, "orthanc.json", "orthanc.json",
                                                        f"version {latest.version} could not be applied: {exc}",
                                                        seed_digest=seed_digest)
        self._load_lookups(built)
        self.current, self.version = built, latest.version
        return built

    def start(self) -> None:
        """Set Orthanc's registries to the version in force, then follow the versions of other routers."""
        if self.current is not None:
            try:
                self._sync_registries(None, self.current.full)
            except ConfigError as exc:
                log.error("Orthanc's node registries could not be set to configuration version %d: %s",
                          self.version, exc)
        self._thread = threading.Thread(target=self._loop, name="courier-config", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    # -- changes --------------------------------------------------------------------------------
    def change(self, document: Any, actor: str, comment: str = "", base: Optional[int] = None,
               source: str = "api") -> tuple[ConfigVersion, list]:
        """Check, set Orthanc's registries, record, apply. ConfigError (nothing changed) or
        ConfigConflict (someone else changed it since `base`)."""
        with self._lock:
            built = self.build(document)
            self.check(built.config)
            previous = self.current
            changes = runtime.diff(previous.document if previous else {}, built.document)
            if base is not None and base != self.store.config_versions.latest_number():
                raise ConfigConflict(self.store.config_versions.latest_number())
            self._sync_registries(previous.full if previous else None, built.full)
            try:
                version = self.store.config_versions.add(built.document, actor, source, comment, base=base,
                                                         changes=changes)
            except Exception:
                if previous is not None:
                    self._sync_registries(built.full, previous.full)
                raise
            self._take(built, version.version)
            return version, changes

    def restore(self, number: int, actor: str, base: Optional[int] = None) -> tuple[ConfigVersion, list]:
        old = self.store.config_versions.get(number)
        if old is None:
            raise KeyError(number)
        return self.change(old.document, actor, f"restored version {number}", base=base, source="restore")

    def _take(self, built: Built, version: int) -> None:
        self._load_lookups(built)
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
            except Exception:                    # noqa: BLE001 - logged; tried again at the next poll
                log.exception("applying the latest configuration version failed")

    def follow(self) -> bool:
        """Apply a version another router recorded; True when one was applied."""
        if self.store.config_versions.latest_number() == self.version:
            return False
        with self._lock:
            latest = self.store.config_versions.latest()
            if latest is None or latest.version == self.version:
                return False
            try:
                built = self.build(latest.document)
            except ConfigError as exc:
                log.error("configuration version %d cannot be applied on this router: %s", latest.version, exc)
                self.version = latest.version            # not retried at every poll; the error is logged
                return False
            self._sync_registries(self.current.full if self.current else None, built.full)
            self._take(built, latest.version)
            return True

    # -- Orthanc's registries ---------------------------------------------------------------------
    def _sync_registries(self, before: Optional[Mapping[str, Any]], after: Mapping[str, Any]) -> None:
        """PUT the nodes that are new or changed, DELETE those gone, in Orthanc's own registries."""
        if self.rest is None:
            return
        old = {(registry, node_id): entry for registry, node_id, entry in runtime.registry_entries(before or {})}
        new = {(registry, node_id): entry for registry, node_id, entry in runtime.registry_entries(after)}
        for registry, endpoint in ENDPOINTS.items():
            wanted = {node_id: entry for (r, node_id), entry in new.items() if r == registry}
            try:
                present = set(self.rest.get_json(endpoint))
            except OrthancHttpError as exc:
                if exc.status == 404 and not wanted:          # the DICOMweb plugin is not loaded
                    continue
                raise ConfigError(registry, f"Orthanc's registry cannot be read: {exc}") from None
            for node_id in sorted(present - set(wanted)):
                self.rest.delete(f"{endpoint}/{node_id}")
            for node_id, entry in wanted.items():
                if node_id not in present or before is None or old.get((registry, node_id)) != entry:
                    try:
                        self.rest.put_json(f"{endpoint}/{node_id}", orthanc_entry(registry, entry))
                    except OrthancHttpError as exc:
                        raise ConfigError(f"{registry}.{node_id}", f"Orthanc refused the node: {exc}") from None


def orthanc_entry(registry: str, entry: Any) -> dict:
    """A registry entry as the object Orthanc's PUT takes (the list forms spelt out)."""
    if isinstance(entry, list):
        if registry == "DicomModalities":
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
    return {k: v for k, v in entry.items() if k not in NODE_PASSWORD_KEYS}
