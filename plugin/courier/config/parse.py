"""The "Courier" section of orthanc.json -> frozen dataclasses.

Every problem raises ConfigError naming the JSON path ("Courier.Routes[2].Trigger") and a hint.
Nothing is silently defaulted except the documented defaults below. `KEYS` declares every key
of every section; the reader refuses to read an undeclared key, and a test checks that each
declared key is documented in the README, so the documentation cannot drift from the parser.
"""
from __future__ import annotations

import difflib
import os
import re
import socket
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from courier.web.access import ROLES, AccessPolicy, UserRights
from courier.config.reader import Section as _Section, resolve as _resolve, type_name as _type_name
from courier.errors import ConfigError
from courier.engine.policy import RetryPolicy
from courier.config.profiles import parse_profiles, read_secret
from courier.deid.pseudonymizer import Profile
from courier.config.windows import parse as parse_window
from courier.routing.rules import CONTEXT_KEYS, MatchSyntaxError, Route, compile_condition

TRIGGERS = ("Instance", "StableSeries", "StableStudy")
CALLER_MODES = ("KnownModalities", "Any")

DEFAULT_LAYOUT = "{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm"


@dataclass(frozen=True)
class Folder:
    id: str
    path: str
    layout: str


@dataclass(frozen=True)
class Archive:
    """Encrypted 7-Zip archives (one per study) under a folder."""
    id: str
    path: str
    layout: str
    password: Optional[str] = field(default=None, repr=False)   # default password; a job may give its own


@dataclass(frozen=True)
class Node:
    """Where a destination is, for sends Courier makes itself (pseudonymized data)."""
    id: str
    kind: str                     # dicom | dicomweb | peer
    aet: str = ""
    host: str = ""
    port: int = 0
    url: str = ""
    username: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)


RETRIEVE_METHODS = ("C-MOVE", "C-GET", "WADO")
CAPABILITIES = ("C-ECHO", "C-FIND", "C-MOVE", "C-GET", "C-STORE", "QIDO", "WADO", "STOW")
DEFAULT_CAPABILITIES = {"dicom": ("C-ECHO", "C-FIND", "C-MOVE", "C-STORE"), "dicomweb": ("QIDO", "WADO", "STOW"),
                        "peer": ()}


@dataclass(frozen=True)
class NodeSettings:
    capabilities: tuple[str, ...]
    max_results: int = 0              # a C-FIND cap the node applies silently; 0: none known
    windows: tuple = ()               # windows.parse() results; empty: always open
    retrieve_method: str = "C-MOVE"
    direct_move_to: tuple = ()        # DICOM destinations this node can C-MOVE to itself
    max_parallel_tasks: int = 2       # job tasks fetching from this node at once
    query_model: str = "StudyRoot"    # or PatientRoot (C-FIND information model)


@dataclass(frozen=True)
class CourierConfig:
    routes: tuple[Route, ...]
    destinations: Mapping[str, str]               # id -> "dicom" | "dicomweb" | "peer" | "folder"
    folders: Mapping[str, Folder]
    known_callers: Mapping[str, tuple[str, ...]]  # calling AET -> hosts allowed for it
    allowed_callers: str = "KnownModalities"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    workers: int = 4
    max_workers_per_destination: int = 2
    batch_size: int = 50
    heartbeat_timeout: float = 60.0
    database_path: str = "courier.sqlite"
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
    access: AccessPolicy = field(default_factory=lambda: AccessPolicy({}, authentication=False))


# --- Orthanc's own registries ------------------------------------------------------------

def _node(node_id: str, kind: str, entry: Any, path: str) -> Node:
    if kind == "dicom":
        if isinstance(entry, list) and len(entry) >= 3:
            return Node(node_id, kind, aet=str(entry[0]), host=str(entry[1]), port=int(entry[2]))
        if isinstance(entry, dict) and {"AET", "Host", "Port"} <= set(entry):
            return Node(node_id, kind, aet=str(entry["AET"]), host=str(entry["Host"]), port=int(entry["Port"]))
        raise ConfigError(path, "a modality is [AET, Host, Port] or an object with AET, Host and Port")
    if isinstance(entry, str):
        return Node(node_id, kind, url=entry)
    if isinstance(entry, list) and entry:
        return Node(node_id, kind, url=str(entry[0]), username=entry[1] if len(entry) > 2 else None,
                    password=entry[2] if len(entry) > 2 else None)
    if isinstance(entry, dict) and "Url" in entry:
        return Node(node_id, kind, url=str(entry["Url"]), username=entry.get("Username"), password=entry.get("Password"))
    raise ConfigError(path, "expected a URL, [URL, user, password] or an object with Url")


def node_registry(orthanc: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, tuple[str, ...]], dict[str, Node]]:
    """Destination ids by kind from DicomModalities, DicomWeb.Servers and OrthancPeers, the
    calling AETs (and their hosts) that DicomModalities declares, and every node's address."""
    kinds: dict[str, str] = {}
    callers: dict[str, tuple[str, ...]] = {}
    nodes: dict[str, Node] = {}
    sources = [("DicomModalities", orthanc.get("DicomModalities") or {}, "dicom"),
               ("DicomWeb.Servers", (orthanc.get("DicomWeb") or {}).get("Servers") or {}, "dicomweb"),
               ("OrthancPeers", orthanc.get("OrthancPeers") or {}, "peer")]
    for section, entries, kind in sources:
        if not isinstance(entries, dict):
            raise ConfigError(section, f"expected an object, got {_type_name(entries)}")
        for node_id, entry in entries.items():
            if node_id in kinds:
                raise ConfigError(f"{section}.{node_id}", f"the id is also used by a {kinds[node_id]} node",
                                  "destination ids must be unique across registries")
            kinds[node_id] = kind
            node = nodes[node_id] = _node(node_id, kind, entry, f"{section}.{node_id}")
            if kind == "dicom":
                callers[node.aet] = callers.get(node.aet, ()) + (node.host,)
    return kinds, callers, nodes


# --- the Courier section -----------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9]+)\}")


def _check_layout(layout: str, path: str) -> None:
    from pydicom.datadict import tag_for_keyword

    for keyword in _PLACEHOLDER.findall(layout):
        if tag_for_keyword(keyword) is None:
            raise ConfigError(path, f"{{{keyword}}} is not a DICOM keyword",
                              "placeholders are keywords such as {PatientID} or {SeriesNumber}")
    if not layout.strip("/") or layout.endswith("/"):
        raise ConfigError(path, "the layout must end with a file name")


def _destination_sections(raw: Any, name: str, taken: Mapping[str, str]):
    """(id, JSON path, section) of each entry of Courier.Folders or Courier.Archives."""
    if not isinstance(raw, dict):
        raise ConfigError(f"Courier.{name}", f"expected an object, got {_type_name(raw)}")
    for entry_id, spec in raw.items():
        path = f"Courier.{name}.{entry_id}"
        if entry_id in taken:
            raise ConfigError(path, f"the id is also used by a {taken[entry_id]} destination",
                              "destination ids must be unique across registries")
        yield entry_id, path, _Section(spec, path, f"Courier.{name}.{{id}}")


def _folders(raw: Any, base_dir: str, taken: Mapping[str, str]) -> dict[str, Folder]:
    folders = {}
    for folder_id, path, section in _destination_sections(raw, "Folders", taken):
        target = section.get("Path", str)
        layout = section.get("Layout", str, DEFAULT_LAYOUT)
        _check_layout(layout, f"{path}.Layout")
        folders[folder_id] = Folder(folder_id, _resolve(target, base_dir), layout)
    return folders


def _archives(raw: Any, base_dir: str, taken: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, Archive]:
    archives = {}
    for archive_id, path, section in _destination_sections(raw, "Archives", taken):
        layout = section.get("Layout", str, DEFAULT_LAYOUT)
        _check_layout(layout, f"{path}.Layout")
        password = None
        if "PasswordFile" in section.data or "PasswordEnv" in section.data:
            password = read_secret(section, path, base_dir, environ, names=("PasswordFile", "PasswordEnv"),
                                   minimum=8).decode()
        archives[archive_id] = Archive(archive_id, _resolve(section.get("Path", str), base_dir), layout, password)
    return archives


def _match(raw: Any, path: str) -> tuple[tuple[tuple[str, Any], ...], dict]:
    from pydicom.datadict import tag_for_keyword

    if not isinstance(raw, dict):
        raise ConfigError(path, f"expected an object, got {_type_name(raw)}")
    compiled = []
    for key, spec in raw.items():
        if key not in CONTEXT_KEYS and tag_for_keyword(key) is None:
            close = difflib.get_close_matches(key, list(CONTEXT_KEYS) + ["Modality", "SeriesDescription",
                                              "StudyDescription", "BodyPartExamined", "SOPClassUID"], n=1)
            hint = f"did you mean '{close[0]}'?" if close else "use a DICOM keyword or CallingAet, CalledAet, RemoteIp"
            raise ConfigError(f"{path}.{key}", "is not a DICOM keyword", hint)
        try:
            compiled.append((key, compile_condition(spec)))
        except MatchSyntaxError as exc:
            raise ConfigError(f"{path}.{key}", exc.problem, exc.hint) from None
    return tuple(compiled), dict(raw)


def _string_list(value: Any, path: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(path, f"expected a list of strings, got {_type_name(value)}")
    return tuple(value)


def _routes(raw: Any, destinations: Mapping[str, str], profiles: Mapping[str, Profile]) -> tuple[Route, ...]:
    if not isinstance(raw, list):
        raise ConfigError("Courier.Routes", f"expected a list, got {_type_name(raw)}")
    routes, names = [], set()
    for index, spec in enumerate(raw):
        path = f"Courier.Routes[{index}]"
        section = _Section(spec, path, "Courier.Routes[]")
        name = section.get("Name", str)
        if not name or name in names:
            raise ConfigError(f"{path}.Name", f"route names must be unique and not empty, got {name!r}")
        names.add(name)
        trigger = section.get("Trigger", str, "Instance")
        if trigger not in TRIGGERS:
            raise ConfigError(f"{path}.Trigger", f"unknown trigger {trigger!r}", f"one of {', '.join(TRIGGERS)}")
        match, match_spec = _match(section.get("Match", dict, {}), f"{path}.Match")
        targets = _string_list(section.get("Destinations", list), f"{path}.Destinations")
        if not targets:
            raise ConfigError(f"{path}.Destinations", "a route needs at least one destination")
        for position, target in enumerate(targets):
            if target not in destinations:
                close = difflib.get_close_matches(target, list(destinations), n=1)
                hint = (f"did you mean '{close[0]}'?" if close else
                        "declare it in DicomModalities, DicomWeb.Servers, OrthancPeers or Courier.Folders")
                raise ConfigError(f"{path}.Destinations[{position}]", f"no destination named {target!r}", hint)
        condition = section.get("Condition", str, None)
        if condition is not None and not re.fullmatch(r"[A-Za-z0-9_\-]+\.py", condition):
            raise ConfigError(f"{path}.Condition", f"expected a file name like 'my_rule.py', got {condition!r}",
                              "scripts live in Courier.ScriptsDirectory")
        allowed = section.get("AllowedCallingAets", list, None)
        profile = section.get("Pseudonymize", str, None)
        if profile is not None and profile not in profiles:
            close = difflib.get_close_matches(profile, list(profiles), n=1)
            raise ConfigError(f"{path}.Pseudonymize", f"no pseudonymization profile named {profile!r}",
                              f"did you mean '{close[0]}'?" if close else "declare it in Courier.Pseudonymization")
        stage = section.get("PseudonymizeOn", str, "Send")
        if stage not in ("Send", "Ingest"):
            raise ConfigError(f"{path}.PseudonymizeOn", f"unknown value {stage!r}", "Send or Ingest")
        if stage == "Ingest":
            _check_ingest_route(section, path, profile, match_spec, routes)
        routes.append(Route(
            name=name, trigger=trigger, match=match, destinations=targets, condition_script=condition,
            delete_after_delivery=section.get("DeleteAfterDelivery", bool, False),
            priority=section.get("Priority", int, 0),
            allowed_calling_aets=None if allowed is None else _string_list(allowed, f"{path}.AllowedCallingAets"),
            fallback=section.get("Fallback", bool, False), match_spec=match_spec, pseudonymize=profile,
            pseudonymize_on=stage))
    return tuple(routes)


def _workers(section: _Section, orthanc: Mapping[str, Any]) -> int:
    """DICOM, peer and DICOMweb sends run as Orthanc jobs, ConcurrentJobs at a time: a worker
    beyond that would only wait for a slot (and a hung destination could take them all)."""
    slots = orthanc.get("ConcurrentJobs", 2)
    slots = slots if isinstance(slots, int) and slots > 0 else 2
    workers = section.positive("Workers", int, min(4, slots))
    if workers > slots:
        raise ConfigError("Courier.Workers", f"{workers} workers but Orthanc runs {slots} jobs at once",
                          f"set \"ConcurrentJobs\" to at least {workers} in orthanc.json, or lower Courier.Workers")
    return workers


def _node_settings(raw: Any, nodes: Mapping[str, Node]) -> dict[str, NodeSettings]:
    if not isinstance(raw, dict):
        raise ConfigError("Courier.Nodes", f"expected an object, got {_type_name(raw)}")
    for node_id in raw:
        if node_id not in nodes:
            close = difflib.get_close_matches(node_id, list(nodes), n=1)
            raise ConfigError(f"Courier.Nodes.{node_id}", "no such node in DicomModalities, DicomWeb.Servers or OrthancPeers",
                              f"did you mean '{close[0]}'?" if close else "declare the node in Orthanc's registry first")
    settings = {}
    for node_id, node in nodes.items():
        path = f"Courier.Nodes.{node_id}"
        section = _Section(raw.get(node_id, {}), path, "Courier.Nodes.{id}")
        capabilities = section.get("Capabilities", list, list(DEFAULT_CAPABILITIES[node.kind]))
        for index, capability in enumerate(capabilities):
            if capability not in CAPABILITIES:
                raise ConfigError(f"{path}.Capabilities[{index}]", f"unknown capability {capability!r}",
                                  f"one of {', '.join(CAPABILITIES)}")
        max_results = section.get("MaxResults", int, 0)
        if max_results < 0:
            raise ConfigError(f"{path}.MaxResults", "must be 0 (no cap) or more")
        parsed = []
        for index, text in enumerate(section.get("Windows", list, [])):
            try:
                parsed.append(parse_window(str(text)))
            except ValueError as exc:
                raise ConfigError(f"{path}.Windows[{index}]", str(exc), "days Mon..Sun, hours HH:MM, local time") from None
        method = section.get("RetrieveMethod", str, {"dicomweb": "WADO", "dicom": "C-MOVE"}.get(node.kind, ""))
        if node.kind == "peer" and not method:
            settings[node_id] = NodeSettings(tuple(capabilities), max_results, tuple(parsed), "",
                                             max_parallel_tasks=section.positive("MaxParallelTasks", int, 2))
            continue
        if method not in RETRIEVE_METHODS:
            raise ConfigError(f"{path}.RetrieveMethod", f"unknown method {method!r}", f"one of {', '.join(RETRIEVE_METHODS)}")
        if method not in capabilities:
            raise ConfigError(f"{path}.RetrieveMethod", f"{method} is not among the node's Capabilities",
                              f"add it to Courier.Nodes.{node_id}.Capabilities")
        direct = tuple(section.get("DirectMoveTo", list, []))
        for index, target in enumerate(direct):
            if target not in nodes or nodes[target].kind != "dicom":
                raise ConfigError(f"{path}.DirectMoveTo[{index}]", f"{target!r} is not a DICOM modality of DicomModalities")
        if direct and "C-MOVE" not in capabilities:
            raise ConfigError(f"{path}.DirectMoveTo", "needs C-MOVE among the node's Capabilities")
        model = section.get("QueryModel", str, "StudyRoot")
        if model not in ("StudyRoot", "PatientRoot"):
            raise ConfigError(f"{path}.QueryModel", f"unknown model {model!r}", "StudyRoot or PatientRoot")
        settings[node_id] = NodeSettings(tuple(capabilities), max_results, tuple(parsed), method, direct,
                                         section.positive("MaxParallelTasks", int, 2), model)
    return settings


def _access(section: _Section, orthanc: Mapping[str, Any], nodes: Mapping[str, Node],
            destinations: Mapping[str, str]) -> AccessPolicy:
    raw = section.get("Users", dict, {})
    registered = orthanc.get("RegisteredUsers") or {}
    users = {}
    for name, spec in raw.items():
        path = f"Courier.Users.{name}"
        if name not in registered:
            raise ConfigError(path, "not a user of Orthanc's RegisteredUsers", "Orthanc authenticates; Courier gives roles")
        user = _Section(spec, path, "Courier.Users.{name}")
        role = user.get("Role", str)
        if role not in ROLES:
            raise ConfigError(f"{path}.Role", f"unknown role {role!r}", f"one of {', '.join(ROLES)}")
        lists = {}
        for key, known in (("MayQuery", nodes), ("MaySendTo", destinations)):
            value = user.get(key, list, None)
            if value is not None:
                for index, item in enumerate(value):
                    if item not in known:
                        raise ConfigError(f"{path}.{key}[{index}]", f"no node or destination named {item!r}")
                value = frozenset(value)
            lists[key] = value
        users[name] = UserRights(role, lists["MayQuery"], lists["MaySendTo"])
    roles = {}
    for key, default in (("DefaultRole", "viewer"), ("AnonymousRole", "admin")):
        roles[key] = section.get(key, str, default)
        if roles[key] not in ROLES:
            raise ConfigError(f"Courier.{key}", f"unknown role {roles[key]!r}", f"one of {', '.join(ROLES)}")
    return AccessPolicy(users, roles["DefaultRole"], roles["AnonymousRole"],
                        authentication=bool(orthanc.get("AuthenticationEnabled", orthanc.get("RemoteAccessAllowed", False))))


def _check_ingest_route(section: _Section, path: str, profile: Optional[str], match_spec: dict,
                        earlier: list[Route]) -> None:
    """An ingest route is decided from the received bytes alone, before Orthanc stores them."""
    if profile is None:
        raise ConfigError(f"{path}.PseudonymizeOn", "Ingest needs Pseudonymize (the profile to apply)")
    context = [key for key in match_spec if key in CONTEXT_KEYS]
    if context or section.get("Condition", str, None) or section.get("AllowedCallingAets", list, None) is not None \
            or section.get("Fallback", bool, False):
        raise ConfigError(f"{path}.PseudonymizeOn", "an Ingest route can match DICOM tags only",
                          "calling AE, IP, scripts and fallback are not known when Orthanc receives the instance")
    for other in earlier:
        if other.pseudonymize_on == "Ingest" and other.pseudonymize != profile:
            raise ConfigError(f"{path}.Pseudonymize", f"Ingest routes must share one profile; "
                              f"route {other.name!r} uses {other.pseudonymize!r}", "Orthanc stores one copy")


def _retry(raw: Any) -> RetryPolicy:
    section = _Section(raw, "Courier.Retry", "Courier.Retry")
    d = RetryPolicy()
    policy = RetryPolicy(
        max_attempts=section.positive("MaxAttempts", int, d.max_attempts),
        initial_delay=float(section.positive("InitialDelaySeconds", float, d.initial_delay)),
        multiplier=float(section.get("Multiplier", float, d.multiplier)),
        max_delay=float(section.positive("MaxDelaySeconds", float, d.max_delay)))
    if policy.multiplier < 1:
        raise ConfigError("Courier.Retry.Multiplier", f"must be at least 1, got {policy.multiplier}")
    return policy


def parse(orthanc: Mapping[str, Any], base_dir: str, repo_dir: str,
          environ: Mapping[str, str] = os.environ) -> CourierConfig:
    """Validate the whole Orthanc configuration as Courier sees it.

    `base_dir` resolves relative paths (the configuration file's folder, as Orthanc does);
    `repo_dir` is the checkout, where the default scripts directory lives.
    """
    section = _Section(orthanc.get("Courier", {}), "Courier", "Courier")
    kinds, callers, nodes = node_registry(orthanc)
    folders = _folders(section.get("Folders", dict, {}), base_dir, kinds)
    archives = _archives(section.get("Archives", dict, {}), base_dir, {**kinds, **{f: "folder" for f in folders}}, environ)
    destinations = {**kinds, **{folder_id: "folder" for folder_id in folders}, **{a: "archive" for a in archives}}
    storage = orthanc.get("StorageDirectory", "OrthancStorage")
    scheme = "https" if orthanc.get("SslEnabled") else "http"
    mode = section.get("AllowedCallers", str, "KnownModalities")
    if mode not in CALLER_MODES:
        raise ConfigError("Courier.AllowedCallers", f"unknown value {mode!r}", f"one of {', '.join(CALLER_MODES)}")
    profiles = parse_profiles(section.get("Pseudonymization", dict, {}), base_dir, environ)
    return CourierConfig(
        routes=_routes(section.get("Routes", list, []), destinations, profiles), nodes=nodes, profiles=profiles,
        node_settings=_node_settings(section.get("Nodes", dict, {}), nodes), archives=archives,
        access=_access(section, orthanc, nodes, destinations),
        quarantine_directory=_resolve(section.get("QuarantineDirectory", str, os.path.join(storage, "courier-quarantine")), base_dir),
        local_aet=str(orthanc.get("DicomAet", "ORTHANC")),
        dicom_timeout=float(orthanc.get("DicomScuTimeout", 10) or 10),
        destinations=destinations, folders=folders, known_callers=callers, allowed_callers=mode,
        retry=_retry(section.get("Retry", dict, {})),
        workers=_workers(section, orthanc),
        max_workers_per_destination=section.positive("MaxWorkersPerDestination", int, 2),
        batch_size=section.positive("BatchSize", int, 50),
        heartbeat_timeout=float(section.positive("HeartbeatTimeoutSeconds", float, 60.0)),
        database_path=_resolve(section.get("DatabasePath", str, os.path.join(storage, "courier.sqlite")), base_dir),
        router_name=section.get("RouterName", str, socket.gethostname()),
        scripts_directory=_resolve(section.get("ScriptsDirectory", str, os.path.join(repo_dir, "lua-free-scripts")), base_dir),
        orthanc_url=section.get("OrthancUrl", str, f"{scheme}://127.0.0.1:{orthanc.get('HttpPort', 8042)}").rstrip("/"),
    )
