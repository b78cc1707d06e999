"""The "Courier" section of orthanc.json -> frozen dataclasses.

Every problem raises ConfigError naming the JSON path ("Courier.Routes[2].Trigger") and a hint.
Nothing is silently defaulted except the documented defaults below. `KEYS` declares every key
of every section; the reader refuses to read an undeclared key, and a test checks that each
declared key is documented in the README, so the documentation cannot drift from the parser.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from courier.config import dcmtk_env
from courier.config.database import DatabaseSettings, parse_database
from courier.config.destinations import Archive, Bucket, Folder, parse_archives, parse_buckets, parse_folders
from courier.config.imports import ImportFolder, parse_imports
from courier.config.nodes import Node, NodeSettings, node_registry, parse_node_settings
from courier.config.profiles import Profile, parse_profiles
from courier.config.reader import Section, resolve
from courier.config.retry import RetryPolicy, parse_retry
from courier.config.routes import Route, parse_routes
from courier.config.sop_classes import parse_sop_classes
from courier.config.tls import DicomTls, parse_dicom_tls
from courier.config.users import AccessPolicy, parse_users
from courier.errors import ConfigError

CALLER_MODES = ("KnownModalities", "Any")


@dataclass(frozen=True)
class CourierConfig:
    routes: tuple[Route, ...]
    destinations: Mapping[str, str]               # id -> "dicom" | "dicomweb" | "peer" | "folder" | "archive" | "bucket"
    folders: Mapping[str, Folder]
    known_callers: Mapping[str, tuple[str, ...]]  # calling AET -> hosts allowed for it
    allowed_callers: str = "KnownModalities"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    workers: int = 4
    max_workers_per_destination: int = 2
    batch_size: int = 50
    batch_linger: float = 0.0                     # seconds a short batch of new Instance tasks waits for more
    heartbeat_timeout: float = 60.0
    database_path: str = "courier.sqlite"
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    router_name: str = "courier"
    scripts_directory: str = "lua-free-scripts"
    orthanc_url: str = "http://127.0.0.1:8042"
    nodes: Mapping[str, Node] = field(default_factory=dict)
    profiles: Mapping[str, Profile] = field(default_factory=dict)
    quarantine_directory: str = "quarantine"
    local_aet: str = "ORTHANC"
    dicom_timeout: float = 10.0
    node_settings: Mapping[str, NodeSettings] = field(default_factory=dict)
    archives: Mapping[str, Archive] = field(default_factory=dict)
    buckets: Mapping[str, Bucket] = field(default_factory=dict)
    access: AccessPolicy = field(default_factory=lambda: AccessPolicy({}, authentication=False))
    imports: Mapping[str, ImportFolder] = field(default_factory=dict)
    retention_days: float = 90.0                  # finished routed tasks, audit, import records older: pruned; 0: kept
    echo_interval: float = 60.0                   # seconds between periodic echoes of every node; 0: none
    storage_directory: str = "OrthancStorage"     # Orthanc's, for the free space the dashboard shows
    accepted_sop_classes: Optional[frozenset] = None   # SOP Class UIDs the C-STORE filter lets in; None: all
    orthanc_warnings: tuple[str, ...] = ()        # Orthanc settings that work against Courier (orthanc_warnings())

    @property
    def disabled(self) -> frozenset:
        """Destinations and nodes set `Enabled: false`: their tasks wait, they are not echoed
        periodically and their subscriptions do not run (an Echo by hand still works)."""
        return frozenset([f.id for f in self.folders.values() if not f.enabled]
                         + [a.id for a in self.archives.values() if not a.enabled]
                         + [b.id for b in self.buckets.values() if not b.enabled]
                         + [n for n, s in self.node_settings.items() if not s.enabled])


# --- Orthanc's own registries ------------------------------------------------------------


def _with_tls(nodes: dict[str, Node], tls: Optional[DicomTls]) -> dict[str, Node]:
    """Nodes with UseDicomTls get Orthanc's DICOM TLS files, which they then need."""
    for node_id, node in nodes.items():
        if node.tls:
            if tls is None:
                raise ConfigError(f"DicomModalities.{node_id}.UseDicomTls", "DICOM TLS needs orthanc.json's "
                                  "DicomTlsCertificate, DicomTlsPrivateKey and DicomTlsTrustedCertificates")
            nodes[node_id] = dataclasses.replace(node, tls_settings=tls)
    return nodes


def _linger(section: Section) -> float:
    value = float(section.get("BatchLingerSeconds", float, 0.0))
    if not 0 <= value <= 10:
        raise ConfigError(f"{section.path}.BatchLingerSeconds", f"must be between 0 and 10 seconds, got {value:g}")
    return value


def _router_name(section: Section, hostname: str) -> str:
    """Task and lease owners are `<router name>:<pid>:...`: a name with a colon could be taken for
    another router's prefix (a live router's leases would look like a dead one's)."""
    name = section.get("RouterName", str, hostname.replace(":", "-"))
    if not name or ":" in name:
        raise ConfigError(f"{section.path}.RouterName", f"must be a non-empty name without ':', got {name!r}")
    return name


def _retention(section: Section) -> float:
    value = float(section.get("RetentionDays", float, 90.0))
    if value < 0:
        raise ConfigError(f"{section.path}.RetentionDays", f"must be 0 (keep everything) or more days, got {value:g}")
    return value


def _echo_interval(section: Section) -> float:
    value = float(section.get("EchoIntervalSeconds", float, 60.0))
    if value < 0:
        raise ConfigError(f"{section.path}.EchoIntervalSeconds", f"must be 0 (no periodic echoes) or more, got {value:g}")
    return value


def _workers(section: Section, orthanc: Mapping[str, Any]) -> int:
    """DICOM, peer and DICOMweb sends run as Orthanc jobs, ConcurrentJobs at a time: a worker
    beyond that would only wait for a slot (and a hung destination could take them all)."""
    slots = orthanc.get("ConcurrentJobs", 2)
    slots = slots if isinstance(slots, int) and slots > 0 else 2
    workers = section.positive("Workers", int, min(4, slots))
    if workers > slots:
        raise ConfigError("Courier.Workers", f"{workers} workers but Orthanc runs {slots} jobs at once",
                          f"set \"ConcurrentJobs\" to at least {workers} in orthanc.json, or lower Courier.Workers")
    return workers


def orthanc_warnings(orthanc: Mapping[str, Any], environ: Optional[Mapping[str, str]] = None) -> tuple[str, ...]:
    """Orthanc settings (and Orthanc's environment) that Courier works with but that work against
    its promises or its speed; each names the key and what to set. Logged at start-up and shown
    by GET /courier/status."""
    found = []
    nagle = dcmtk_env.nagle_kept(environ or {})
    if nagle:
        found.append(nagle)
    if orthanc.get("SaveJobs", True) is not False:
        found.append('SaveJobs is true (Orthanc\'s default): a store job in flight when Orthanc is killed is '
                     'resumed by Orthanc at its restart while Courier sends that batch again; set "SaveJobs": false '
                     'in orthanc.json (Courier keeps its own tasks)')
    return tuple(found)


def _stable_age(orthanc: Mapping[str, Any]) -> float:
    """Orthanc's StableAge (default 60 s): how long Courier waits, by default, for a quiet series or study."""
    value = orthanc.get("StableAge", 60)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else 60.0


def parse(orthanc: Mapping[str, Any], base_dir: str, repo_dir: str,
          environ: Mapping[str, str] = os.environ, hostname: str = "courier") -> CourierConfig:
    """Validate the whole Orthanc configuration as Courier sees it.

    `base_dir` resolves relative paths (the configuration file's folder, as Orthanc does);
    `repo_dir` is the checkout, where the default scripts directory lives; `hostname` is the
    default RouterName (the composition root passes the machine's).
    """
    section = Section(orthanc.get("Courier", {}), "Courier", "Courier")
    kinds, callers, nodes = node_registry(orthanc)
    nodes = _with_tls(nodes, parse_dicom_tls(orthanc, base_dir))
    folders = parse_folders(section.get("Folders", dict, {}), base_dir, kinds)
    archives = parse_archives(section.get("Archives", dict, {}), base_dir, {**kinds, **{f: "folder" for f in folders}}, environ)
    buckets = parse_buckets(section.get("Buckets", dict, {}), base_dir,
                            {**kinds, **{f: "folder" for f in folders}, **{a: "archive" for a in archives}}, environ)
    destinations = {**kinds, **{folder_id: "folder" for folder_id in folders}, **{a: "archive" for a in archives},
                    **{b: "bucket" for b in buckets}}
    storage = orthanc.get("StorageDirectory", "OrthancStorage")
    scheme = "https" if orthanc.get("SslEnabled") else "http"
    mode = section.get("AllowedCallers", str, "KnownModalities")
    if mode not in CALLER_MODES:
        raise ConfigError("Courier.AllowedCallers", f"unknown value {mode!r}", f"one of {', '.join(CALLER_MODES)}")
    profiles = parse_profiles(section.get("Pseudonymization", dict, {}), base_dir, environ)
    database = parse_database(section, resolve(section.get("DatabasePath", str, os.path.join(storage, "courier.sqlite")),
                                               base_dir), base_dir, environ)
    routes = parse_routes(section.get("Routes", list, []), destinations, profiles, _stable_age(orthanc))
    return CourierConfig(
        routes=routes, imports=parse_imports(section.get("Imports", dict, {}), base_dir, routes, destinations, profiles),
        nodes=nodes, profiles=profiles,
        node_settings=parse_node_settings(section.get("Nodes", dict, {}), nodes, base_dir, environ), archives=archives,
        buckets=buckets,
        access=parse_users(section, orthanc, nodes, destinations),
        quarantine_directory=resolve(section.get("QuarantineDirectory", str, os.path.join(storage, "courier-quarantine")),
                                     base_dir),
        local_aet=str(orthanc.get("DicomAet", "ORTHANC")),
        dicom_timeout=float(orthanc.get("DicomScuTimeout", 10) or 10),
        destinations=destinations, folders=folders, known_callers=callers, allowed_callers=mode,
        accepted_sop_classes=parse_sop_classes(section.get("AcceptedSopClasses", list, None)),
        retry=parse_retry(section.get("Retry", dict, {})),
        workers=_workers(section, orthanc),
        max_workers_per_destination=section.positive("MaxWorkersPerDestination", int, 2),
        batch_size=section.positive("BatchSize", int, 50),
        batch_linger=_linger(section),
        echo_interval=_echo_interval(section),
        retention_days=_retention(section),
        storage_directory=resolve(storage, base_dir),
        heartbeat_timeout=float(section.positive("HeartbeatTimeoutSeconds", float, 60.0)),
        database_path=database.path,
        database=database,
        router_name=_router_name(section, hostname),
        scripts_directory=resolve(section.get("ScriptsDirectory", str, os.path.join(repo_dir, "lua-free-scripts")), base_dir),
        orthanc_url=section.get("OrthancUrl", str, f"{scheme}://127.0.0.1:{orthanc.get('HttpPort', 8042)}").rstrip("/"),
        orthanc_warnings=orthanc_warnings(orthanc, environ),
    )
