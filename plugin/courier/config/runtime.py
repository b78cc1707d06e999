"""The part of the configuration that can change while Orthanc runs, as one JSON document (pure).

The document has the shape of orthanc.json, so that the same parser checks it with the same
messages and JSON paths, and an export can be pasted back into orthanc.json:

    {"Courier": {"Routes": [...], "Folders": {...}, "Archives": {...}, "Buckets": {...},
                 "Pseudonymization": {...}, "Nodes": {...}},
     "DicomModalities": {...}, "DicomWeb": {"Servers": {...}}, "OrthancPeers": {...},
     "Scripts": {"name.py": "def match(tags, context): ..."}}

`Scripts` holds the source of the condition scripts the routes name (read from ScriptsDirectory
when the document is seeded from orthanc.json).

Secrets never enter the document. In a DICOMweb server or Orthanc peer, orthanc.json's secrets
(Password, CertificateKeyPassword, the values of HttpHeaders, a Url with credentials) stay in
orthanc.json: the document holds the marker IN_ORTHANC_JSON in their place, resolved from
orthanc.json when the document is applied, and only for the same node id, Url and Username. A
node added or changed at runtime names its password with PasswordFile or PasswordEnv (Courier
reads it and gives it to Orthanc); any other literal secret is refused.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import Any, Iterator, Mapping

from courier.config.nodes import REGISTRIES, Registry, registry_section
from courier.config.reader import resolve
from courier.errors import ConfigError

COURIER_KEYS = ("Routes", "Folders", "Archives", "Buckets", "Pseudonymization", "Nodes")
SECTIONS = ("Courier", "DicomModalities", "DicomWeb", "OrthancPeers", "Scripts")
IN_ORTHANC_JSON = "(kept in orthanc.json)"
PASSWORD_KEYS = ("PasswordFile", "PasswordEnv")
SECRET_KEYS = ("Password", "CertificateKeyPassword")
_CREDENTIALS = re.compile(r"^[a-z]+://[^/@]*:[^/@]*@", re.IGNORECASE)


def _set_registry(config: dict, registry: Registry, value: Any) -> None:
    for key in registry.path[:-1]:
        inner = config.get(key)
        config[key] = inner = dict(inner) if isinstance(inner, Mapping) else {}
        config = inner
    config[registry.path[-1]] = value


def registry_entries(document: Mapping[str, Any]) -> Iterator[tuple[Registry, str, Any]]:
    """(registry, node id, entry) of every node in the document."""
    for registry in REGISTRIES:
        entries = registry_section(document, registry)
        if isinstance(entries, Mapping):
            for node_id, entry in entries.items():
                yield registry, node_id, entry


# -- secrets of the DICOMweb servers and peers -----------------------------------------------
def _secrets(entry: Any) -> Iterator[tuple[str, Any]]:
    """(place, value) of each secret a web registry entry holds; place: "[2]", ".Password",
    ".HttpHeaders.<name>", ".Url"."""
    if isinstance(entry, list):
        if len(entry) > 2 and entry[2]:
            yield "[2]", entry[2]
        if entry and isinstance(entry[0], str) and (entry[0] == IN_ORTHANC_JSON or _CREDENTIALS.match(entry[0])):
            yield "[0]", entry[0]
    elif isinstance(entry, dict):
        for key in SECRET_KEYS:
            if entry.get(key):
                yield f".{key}", entry[key]
        headers = entry.get("HttpHeaders")
        if isinstance(headers, dict):
            for name, value in headers.items():
                yield f".HttpHeaders.{name}", value
        url = entry.get("Url")
        if isinstance(url, str) and (url == IN_ORTHANC_JSON or _CREDENTIALS.match(url)):
            yield ".Url", url


def _get(entry: Any, place: str) -> Any:
    if place.startswith("["):
        index = int(place[1:-1])
        return entry[index] if isinstance(entry, list) and len(entry) > index else None
    if not isinstance(entry, dict):
        return None
    parts = place[1:].split(".", 1)
    if len(parts) == 2:
        inner = entry.get(parts[0])
        return inner.get(parts[1]) if isinstance(inner, dict) else None
    return entry.get(parts[0])


def _put(entry: Any, place: str, value: Any) -> None:
    if place.startswith("["):
        entry[int(place[1:-1])] = value
        return
    parts = place[1:].split(".", 1)
    if len(parts) == 2:
        entry[parts[0]][parts[1]] = value
    else:
        entry[parts[0]] = value


def _address(entry: Any) -> tuple:
    """What a secret kept in orthanc.json belongs to: the Url (without credentials) and Username."""
    if isinstance(entry, list):
        return (entry[0] if entry else None, entry[1] if len(entry) > 1 else None)
    if isinstance(entry, dict):
        return (entry.get("Url"), entry.get("Username"))
    return (entry, None)


def extract(orthanc: Mapping[str, Any], scripts: Mapping[str, str]) -> dict:
    """The runtime document of an Orthanc configuration, its secrets replaced by the marker."""
    courier = orthanc.get("Courier") if isinstance(orthanc.get("Courier"), Mapping) else {}
    document: dict = {"Courier": {key: copy.deepcopy(courier[key]) for key in COURIER_KEYS if key in courier}}
    for registry in REGISTRIES:
        entries = copy.deepcopy(registry_section(orthanc, registry))
        if registry.kind != "dicom" and isinstance(entries, dict):
            for entry in entries.values():
                for place, _ in list(_secrets(entry)):
                    _put(entry, place, IN_ORTHANC_JSON)
        _set_registry(document, registry, entries)
    document["Scripts"] = dict(sorted(scripts.items()))
    return document


def check_secrets(document: Mapping[str, Any], seed: Mapping[str, Any]) -> None:
    """Refuse a literal secret, or a marker orthanc.json cannot resolve for that node and address."""
    for registry, node_id, entry in registry_entries(document):
        if registry.kind == "dicom":
            continue
        kept = registry_section(seed, registry).get(node_id)
        for place, value in _secrets(entry):
            where = f"{registry.name}.{node_id}{place}"
            if value != IN_ORTHANC_JSON:
                raise ConfigError(where, "a secret is not kept in Courier's configuration versions",
                                  "name a password with PasswordFile or PasswordEnv, or declare the node in orthanc.json")
            if kept is None or _get(kept, place) in (None, ""):
                raise ConfigError(where, "orthanc.json gives no such secret for this node",
                                  "name the password with PasswordFile or PasswordEnv")
            url_kept = _get(entry, "[0]" if isinstance(entry, list) else ".Url") == IN_ORTHANC_JSON
            if place not in ("[0]", ".Url") and not url_kept and _address(entry) != _address(kept):
                raise ConfigError(where, "orthanc.json's secret belongs to its Url and Username, which this entry changes",
                                  "name the password with PasswordFile or PasswordEnv")


def overlay(orthanc: Mapping[str, Any], document: Mapping[str, Any], read_password: Any = None) -> dict:
    """orthanc.json with its runtime sections replaced by the document's: what Courier parses and
    what Orthanc's registries are set to. Markers get orthanc.json's secrets back; PasswordFile /
    PasswordEnv are resolved by `read_password(path, entry) -> str` (config.secrets' rules)."""
    check_secrets(document, orthanc)
    full = copy.deepcopy(dict(orthanc))
    courier = dict(full.get("Courier") or {})
    for key in COURIER_KEYS:
        courier.pop(key, None)
        if key in (document.get("Courier") or {}):
            courier[key] = copy.deepcopy(document["Courier"][key])
    full["Courier"] = courier
    for registry in REGISTRIES:
        entries = copy.deepcopy(registry_section(document, registry))
        if registry.kind != "dicom" and isinstance(entries, dict):
            for node_id, entry in entries.items():
                kept = registry_section(orthanc, registry).get(node_id)
                for place, value in list(_secrets(entry)):
                    if value == IN_ORTHANC_JSON:
                        _put(entry, place, _get(kept, place))
                if isinstance(entry, dict) and any(k in entry for k in PASSWORD_KEYS) and read_password is not None:
                    entry["Password"] = read_password(f"{registry.name}.{node_id}", entry)
        _set_registry(full, registry, entries)
    return full


def _sources(section: Any, path: str, files: tuple, variables: tuple, base_dir: str,
             address: Any = None) -> Iterator[tuple[str, str, Any]]:
    if isinstance(section, Mapping):
        for key in files:
            if isinstance(section.get(key), str):
                yield f"{path}.{key}", "file " + resolve(section[key], base_dir), (key, address)
        for key in variables:
            if isinstance(section.get(key), str):
                yield f"{path}.{key}", "variable " + section[key], (key, address)


def secret_sources(full: Mapping[str, Any], base_dir: str) -> tuple[list, list]:
    """(secrets that are sent to a server, secrets that never leave) of a whole configuration, as
    (JSON path, "file <path>" | "variable <name>", (key, the address a sent one goes to))."""
    courier = full.get("Courier") if isinstance(full.get("Courier"), Mapping) else {}
    sent: list = []
    kept: list = [("DicomTlsPrivateKey", "file " + resolve(full["DicomTlsPrivateKey"], base_dir), None)] \
        if isinstance(full.get("DicomTlsPrivateKey"), str) else []
    for name, section in (courier.get("Pseudonymization") or {}).items():
        kept += _sources(section, f"Courier.Pseudonymization.{name}", ("SecretFile", "LookupFile"), ("SecretEnv",), base_dir)
    for name, section in (courier.get("Archives") or {}).items():
        kept += _sources(section, f"Courier.Archives.{name}", ("PasswordFile",), ("PasswordEnv",), base_dir)
    kept += _sources(courier.get("Database"), "Courier.Database", ("PasswordFile",), ("PasswordEnv",), base_dir)
    for name, section in (courier.get("Buckets") or {}).items():
        if isinstance(section, Mapping):
            sent += _sources(section, f"Courier.Buckets.{name}", ("AccessKeyFile", "SecretKeyFile"),
                             ("AccessKeyEnv", "SecretKeyEnv"), base_dir, (section.get("Endpoint"), section.get("Region")))
    urls = {node_id: entry.get("Url") if isinstance(entry, Mapping) else entry[0] if isinstance(entry, list) and entry
            else entry for registry, node_id, entry in registry_entries(full)}
    for name, section in (courier.get("Nodes") or {}).items():
        if isinstance(section, Mapping) and isinstance(section.get("Authorization"), Mapping):
            auth = section["Authorization"]
            sent += _sources(auth, f"Courier.Nodes.{name}.Authorization", ("BearerTokenFile", "ClientSecretFile"),
                             ("BearerTokenEnv", "ClientSecretEnv"), base_dir, auth.get("TokenUrl") or urls.get(name))
    for registry, node_id, entry in registry_entries(full):
        sent += _sources(entry, f"{registry.name}.{node_id}", ("PasswordFile",), ("PasswordEnv",), base_dir,
                         urls.get(node_id))
    return sent, kept


def check_secret_reuse(full: Mapping[str, Any], base_dir: str, seed: Mapping[str, Any] = {}) -> None:
    """A secret Courier sends to a server (a node's password, a bucket's key, a token or client
    secret) may come only from a file or variable of its own, or one that another entry sends as
    the same key to the same address (two buckets of one account): never from another secret of
    this configuration or of orthanc.json (`seed`). A profile's key must not reach an address an
    admin typed, nor a bucket's keys a new endpoint."""
    sent, kept = secret_sources(full, base_dir)
    seed_sent, seed_kept = secret_sources(seed, base_dir)
    owners: dict[str, tuple[str, Any]] = {}
    for path, source, use in kept + seed_kept + seed_sent + sent:
        owners.setdefault(source, (path, use))
    for path, source, use in sent:
        owner, owner_use = owners[source]
        if owner != path and owner_use != use and owner.rsplit(".", 1)[0] != path.rsplit(".", 1)[0]:
            raise ConfigError(path, f"names the {source.split(' ')[0]} that holds the secret of {owner}",
                              "give each secret a file or variable of its own")


def check_shape(document: Any) -> None:
    """The document's sections are the runtime ones, each of the right type (a typo or a list
    must not read as "no nodes", which would delete every node from Orthanc)."""
    if not isinstance(document, dict):
        raise ConfigError("(configuration)", "expected an object with Courier, DicomModalities, ... sections")
    for key, value in document.items():
        if key not in SECTIONS:
            raise ConfigError(key, "not a section of the runtime configuration",
                              "Courier (Routes, Folders, Archives, Buckets, Pseudonymization, Nodes), DicomModalities, "
                              "DicomWeb.Servers, OrthancPeers, Scripts")
        if not isinstance(value, dict):
            raise ConfigError(key, "expected an object")
    for key in document.get("Courier", {}):
        if key not in COURIER_KEYS:
            raise ConfigError(f"Courier.{key}", "is set in orthanc.json only (a restart applies it)",
                              f"at runtime: {', '.join(COURIER_KEYS)}")
    for key in document.get("DicomWeb", {}):
        if key != "Servers":
            raise ConfigError(f"DicomWeb.{key}", "only DicomWeb.Servers changes at runtime")
    scripts = document.get("Scripts", {})
    if not all(isinstance(v, str) for v in scripts.values()):
        raise ConfigError("Scripts", "expected an object of file name -> Python source")


def canonical(document: Mapping[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(document: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(document).encode("utf-8")).hexdigest()


def export(document: Mapping[str, Any]) -> dict:
    """The document as orthanc.json sections; `Scripts` (which Orthanc ignores) lists the files to
    put in ScriptsDirectory."""
    return copy.deepcopy(dict(document))


def diff(old: Any, new: Any, path: str = "") -> list[dict]:
    """What changed from `old` to `new`, by JSON path: {"Path", "Change": added|removed|changed, "Old", "New"}."""
    if isinstance(old, dict) and isinstance(new, dict):
        changes: list[dict] = []
        for key in list(old) + [k for k in new if k not in old]:
            inner = f"{path}.{key}" if path else str(key)
            if key not in new:
                changes.append({"Path": inner, "Change": "removed", "Old": old[key]})
            elif key not in old:
                changes.append({"Path": inner, "Change": "added", "New": new[key]})
            else:
                changes += diff(old[key], new[key], inner)
        return changes
    if isinstance(old, list) and isinstance(new, list) and _named(old) and _named(new):
        return diff({item["Name"]: item for item in old}, {item["Name"]: item for item in new}, path)
    if old != new:
        return [{"Path": path, "Change": "changed", "Old": old, "New": new}]
    return []


def _named(items: list) -> bool:
    """A list of objects with unique names (the routes): compared by name, not position."""
    names = [item.get("Name") for item in items if isinstance(item, dict)]
    return len(names) == len(items) and len(set(names)) == len(names) and all(isinstance(n, str) for n in names)
