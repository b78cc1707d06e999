"""The nodes of Orthanc's own registries (DicomModalities, DicomWeb.Servers, OrthancPeers) and
Courier's settings for each ("Courier.Nodes": capabilities, query model, retrieve method, windows,
limits)."""
from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from courier.config.reader import Section, resolve, type_name
from courier.config.secrets import read_secret
from courier.config.tls import DicomTls
from courier.config.windows import parse as parse_window
from courier.errors import ConfigError


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
    local_aet: str = ""           # DicomModalities' LocalAet: the calling AET Orthanc uses for this node
    tls: bool = False             # DicomModalities' UseDicomTls
    tls_settings: Optional["DicomTls"] = None     # Orthanc's DICOM TLS files, for Courier's own associations


@dataclass(frozen=True)
class Registry:
    """One of Orthanc's node registries: where orthanc.json keeps it, the kind of its nodes, and
    Orthanc's REST resource that reads and sets it at runtime."""
    name: str                     # as in JSON paths: "DicomWeb.Servers"
    path: tuple[str, ...]         # its keys in orthanc.json
    kind: str                     # dicom | dicomweb | peer
    endpoint: str                 # /modalities | /dicom-web/servers | /peers


REGISTRIES = (Registry("DicomModalities", ("DicomModalities",), "dicom", "/modalities"),
              Registry("DicomWeb.Servers", ("DicomWeb", "Servers"), "dicomweb", "/dicom-web/servers"),
              Registry("OrthancPeers", ("OrthancPeers",), "peer", "/peers"))
REGISTRY_OF_KIND = {registry.kind: registry for registry in REGISTRIES}
NODE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


def registry_section(orthanc: Mapping[str, Any], registry: Registry) -> Any:
    """The registry's object in a configuration ({} when absent)."""
    value: Any = orthanc
    for key in registry.path:
        value = value.get(key) if isinstance(value, Mapping) else None
        if value is None:
            return {}
    return value


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
    timeouts: "Timeouts" = field(default_factory=lambda: Timeouts())
    enabled: bool = True              # false: nothing is sent to, fetched from or echoed at the node
    authorization: Optional["Authorization"] = None   # DICOMweb: a bearer token or OAuth2 client credentials


@dataclass(frozen=True)
class Authorization:
    """How Courier authenticates to a DICOMweb server (`Courier.Nodes.{id}.Authorization`): a
    static bearer token, or OAuth2 client credentials at TokenUrl. The secret itself is read from
    a file or a variable (repr=False); only its names are in the configuration (`source`)."""
    kind: str                                  # "bearer" | "oauth2"
    source: str                                # where the secret comes from: "BearerTokenFile x", ...
    secret: str = field(default="", repr=False)   # the bearer token, or the client secret
    token_url: str = ""
    client_id: str = ""
    scope: str = ""
    refresh_before: float = 60.0               # seconds before expiry a token is renewed
    files: tuple[str, ...] = ()                # the file named (resolved), for the protected-files check
    variables: tuple[str, ...] = ()            # the variable named


AUTH_BEARER = ("BearerTokenFile", "BearerTokenEnv")
AUTH_CLIENT_SECRET = ("ClientSecretFile", "ClientSecretEnv")


def parse_authorization(raw: Any, path: str, base_dir: str, environ: Mapping[str, str]) -> Authorization:
    """`{"BearerTokenFile" | "BearerTokenEnv"}` or `{"TokenUrl", "ClientId", "ClientSecretFile" |
    "ClientSecretEnv", "Scope"?, "RefreshBeforeSeconds"?}`; secrets through config.secrets."""
    section = Section(raw, path, "Courier.Nodes.{id}.Authorization")
    bearer = any(k in raw for k in AUTH_BEARER)
    oauth = any(k in raw for k in ("TokenUrl", "ClientId", "Scope", "RefreshBeforeSeconds", *AUTH_CLIENT_SECRET))
    if bearer == oauth:
        raise ConfigError(path, "give either BearerTokenFile or BearerTokenEnv (a static token), or TokenUrl, ClientId "
                                "and ClientSecretFile or ClientSecretEnv (OAuth2 client credentials)")
    names = AUTH_BEARER if bearer else AUTH_CLIENT_SECRET
    secret = read_secret(section, path, base_dir, environ, names, minimum=1).decode("utf-8", "replace")
    file_name, variable = section.get(names[0], str, None), section.get(names[1], str, None)
    files = (resolve(file_name, base_dir),) if file_name else ()
    source = f"{names[0]} {file_name}" if file_name else f"{names[1]} {variable}"
    if bearer:
        if any(c in secret for c in "\r\n"):
            raise ConfigError(f"{path}.{names[0] if file_name else names[1]}", "the token holds a line break")
        return Authorization("bearer", source, secret, files=files, variables=(variable,) if variable else ())
    url = section.get("TokenUrl", str)
    if not url.lower().startswith(("http://", "https://")):
        raise ConfigError(f"{path}.TokenUrl", f"expected an http(s) URL, got {url!r}")
    client_id = section.get("ClientId", str)
    if not client_id:
        raise ConfigError(f"{path}.ClientId", "is empty")
    return Authorization("oauth2", source, secret, url, client_id, section.get("Scope", str, ""),
                         float(section.positive("RefreshBeforeSeconds", float, 60.0)), files,
                         (variable,) if variable else ())


@dataclass(frozen=True)
class Timeouts:
    """Seconds Courier waits on a node: to associate (and for each network read), for a whole
    retrieve (C-MOVE, C-GET, WADO-RS), and for the retrieve of a study the node says is OFFLINE
    or NEARLINE (InstanceAvailability), which may never come."""
    connect: float = 30.0
    retrieve: float = 3600.0
    offline_retrieve: float = 300.0

    def for_availability(self, availability: Optional[str]) -> float:
        return self.offline_retrieve if (availability or "").upper() in ("OFFLINE", "NEARLINE") else self.retrieve


def _timeouts(section: Section) -> Timeouts:
    return Timeouts(section.positive("ConnectTimeoutSeconds", float, 30.0),
                    section.positive("RetrieveTimeoutSeconds", float, 3600.0),
                    section.positive("OfflineRetrieveTimeoutSeconds", float, 300.0))


def _port(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit() \
            or not 0 < int(value) < 65536:
        raise ConfigError(path, f"expected a port number (1-65535), got {value!r}")
    return int(value)


def _node(node_id: str, kind: str, entry: Any, path: str) -> Node:
    if kind == "dicom":
        if isinstance(entry, list) and len(entry) >= 3:
            return Node(node_id, kind, aet=str(entry[0]), host=str(entry[1]), port=_port(entry[2], f"{path}[2]"))
        if isinstance(entry, dict) and {"AET", "Host", "Port"} <= set(entry):
            return Node(node_id, kind, aet=str(entry["AET"]), host=str(entry["Host"]),
                        port=_port(entry["Port"], f"{path}.Port"),
                        local_aet=str(entry.get("LocalAet") or ""), tls=bool(entry.get("UseDicomTls")))
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
    if not isinstance(orthanc.get("DicomWeb", {}), dict):
        raise ConfigError("DicomWeb", f"expected an object, got {type_name(orthanc['DicomWeb'])}")
    for registry in REGISTRIES:
        section, kind = registry.name, registry.kind
        entries = registry_section(orthanc, registry)
        if not isinstance(entries, dict):
            raise ConfigError(section, f"expected an object, got {type_name(entries)}")
        for node_id, entry in entries.items():
            if not NODE_ID.match(node_id):
                raise ConfigError(f"{section}.{node_id}", "a node id is letters, digits, '_', '.' and '-' (at most 64)")
            if node_id in kinds:
                raise ConfigError(f"{section}.{node_id}", f"the id is also used by a {kinds[node_id]} node",
                                  "destination ids must be unique across registries")
            kinds[node_id] = kind
            node = nodes[node_id] = _node(node_id, kind, entry, f"{section}.{node_id}")
            if kind == "dicom":
                callers[node.aet] = callers.get(node.aet, ()) + (node.host,)
    return kinds, callers, nodes


def parse_node_settings(raw: Any, nodes: Mapping[str, Node], base_dir: str = ".",
                        environ: Mapping[str, str] = os.environ) -> dict[str, NodeSettings]:
    if not isinstance(raw, dict):
        raise ConfigError("Courier.Nodes", f"expected an object, got {type_name(raw)}")
    for node_id in raw:
        if node_id not in nodes:
            close = difflib.get_close_matches(node_id, list(nodes), n=1)
            raise ConfigError(f"Courier.Nodes.{node_id}", "no such node in DicomModalities, DicomWeb.Servers or OrthancPeers",
                              f"did you mean '{close[0]}'?" if close else "declare the node in Orthanc's registry first")
    settings = {}
    for node_id, node in nodes.items():
        path = f"Courier.Nodes.{node_id}"
        section = Section(raw.get(node_id, {}), path, "Courier.Nodes.{id}")
        capabilities = section.get("Capabilities", list, list(DEFAULT_CAPABILITIES[node.kind]))
        for index, capability in enumerate(capabilities):
            if capability not in CAPABILITIES:
                raise ConfigError(f"{path}.Capabilities[{index}]", f"unknown capability {capability!r}",
                                  f"one of {', '.join(CAPABILITIES)}")
        authorization = None
        if "Authorization" in section.data:
            if node.kind != "dicomweb":
                raise ConfigError(f"{path}.Authorization", "only a DICOMweb server (DicomWeb.Servers) takes an Authorization",
                                  "a peer's credentials are its Username and Password")
            if node.username:
                raise ConfigError(f"{path}.Authorization", "the server also has a Username: its Basic credentials "
                                  "would replace the token", f"remove Username and Password from DicomWeb.Servers.{node_id}")
            authorization = parse_authorization(section.get("Authorization", dict), f"{path}.Authorization", base_dir,
                                                environ)
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
                                             max_parallel_tasks=section.positive("MaxParallelTasks", int, 2),
                                             timeouts=_timeouts(section), enabled=section.get("Enabled", bool, True))
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
                                         section.positive("MaxParallelTasks", int, 2), model, _timeouts(section),
                                         section.get("Enabled", bool, True), authorization)
    return settings
