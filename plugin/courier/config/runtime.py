"""The part of the configuration that can change while Orthanc runs, as one JSON document (pure).

The document has the shape of orthanc.json, so that the same parser checks it with the same
messages and JSON paths, and an export can be pasted back into orthanc.json:

    {"Courier": {"Routes": [...], "Folders": {...}, "Archives": {...}, "Pseudonymization": {...},
                 "Nodes": {...}},
     "DicomModalities": {...}, "DicomWeb": {"Servers": {...}}, "OrthancPeers": {...},
     "Scripts": {"name.py": "def match(tags, context): ..."}}

`Scripts` holds the source of the condition scripts the routes name (read from ScriptsDirectory
when the document is seeded from orthanc.json).

Secrets never enter the document. A node password written in orthanc.json stays there: the
document holds the marker IN_ORTHANC_JSON instead, resolved from orthanc.json when the document is
applied. A node added or edited at runtime names its password with PasswordFile or PasswordEnv
(kept by Orthanc as user properties of the entry, read by Courier); a literal password is refused.
"""
from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Iterator, Mapping

from courier.errors import ConfigError

COURIER_KEYS = ("Routes", "Folders", "Archives", "Pseudonymization", "Nodes")
REGISTRIES = (("DicomModalities",), ("DicomWeb", "Servers"), ("OrthancPeers",))
IN_ORTHANC_JSON = "(kept in orthanc.json)"
PASSWORD_KEYS = ("PasswordFile", "PasswordEnv")
EMPTY = {"Courier": {"Routes": []}, "DicomModalities": {}, "DicomWeb": {"Servers": {}}, "OrthancPeers": {}, "Scripts": {}}


def _registry(config: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = config
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value if value is not None else {}


def _set_registry(config: dict, path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        inner = config.get(key)
        config[key] = inner = dict(inner) if isinstance(inner, Mapping) else {}
        config = inner
    config[path[-1]] = value


def registry_entries(document: Mapping[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(registry path as written, node id, entry) of every node in the document."""
    for path in REGISTRIES:
        entries = _registry(document, path)
        if isinstance(entries, Mapping):
            for node_id, entry in entries.items():
                yield ".".join(path), node_id, entry


def extract(orthanc: Mapping[str, Any], scripts: Mapping[str, str]) -> dict:
    """The runtime document of an Orthanc configuration, its literal passwords replaced by the marker."""
    courier = orthanc.get("Courier") if isinstance(orthanc.get("Courier"), Mapping) else {}
    document: dict = {"Courier": {key: copy.deepcopy(courier[key]) for key in COURIER_KEYS if key in courier}}
    for path in REGISTRIES:
        _set_registry(document, path, _without_passwords(copy.deepcopy(_registry(orthanc, path))))
    document["Scripts"] = dict(sorted(scripts.items()))
    return document


def _without_passwords(entries: Any) -> Any:
    if not isinstance(entries, dict):
        return entries
    for entry in entries.values():
        if isinstance(entry, list) and len(entry) > 2 and entry[2]:
            entry[2] = IN_ORTHANC_JSON
        elif isinstance(entry, dict) and entry.get("Password"):
            entry["Password"] = IN_ORTHANC_JSON
    return entries


def check_secrets(document: Mapping[str, Any], seed: Mapping[str, Any]) -> None:
    """Refuse a literal password, or the marker for a node orthanc.json does not give one."""
    for registry, node_id, entry in registry_entries(document):
        password = entry[2] if isinstance(entry, list) and len(entry) > 2 else (
            entry.get("Password") if isinstance(entry, dict) else None)
        if not password:
            continue
        where = f"{registry}.{node_id}" + ("[2]" if isinstance(entry, list) else ".Password")
        if password != IN_ORTHANC_JSON:
            raise ConfigError(where, "a password is not kept in Courier's configuration versions",
                              "name it with PasswordFile or PasswordEnv, or declare the node in orthanc.json")
        if _password_of(seed, registry, node_id) is None:
            raise ConfigError(where, "orthanc.json gives no password for this node",
                              "name it with PasswordFile or PasswordEnv")


def _password_of(orthanc: Mapping[str, Any], registry: str, node_id: str) -> Any:
    entry = _registry(orthanc, tuple(registry.split("."))).get(node_id)
    if isinstance(entry, list) and len(entry) > 2:
        return entry[2] or None
    return entry.get("Password") if isinstance(entry, dict) else None


def overlay(orthanc: Mapping[str, Any], document: Mapping[str, Any],
            read_password: Any = None) -> dict:
    """orthanc.json with its runtime sections replaced by the document's: what Courier parses and
    what Orthanc's registries are set to. Markers get orthanc.json's passwords back; PasswordFile /
    PasswordEnv are resolved by `read_password(path, entry) -> str` (config.secrets' rules)."""
    check_secrets(document, orthanc)
    full = copy.deepcopy(dict(orthanc))
    courier = dict(full.get("Courier") or {})
    for key in COURIER_KEYS:
        courier.pop(key, None)
        if key in (document.get("Courier") or {}):
            courier[key] = copy.deepcopy(document["Courier"][key])
    full["Courier"] = courier
    for path in REGISTRIES:
        entries = copy.deepcopy(_registry(document, path))
        registry = ".".join(path)
        if isinstance(entries, dict):
            for node_id, entry in entries.items():
                if isinstance(entry, list) and len(entry) > 2 and entry[2] == IN_ORTHANC_JSON:
                    entry[2] = _password_of(orthanc, registry, node_id)
                elif isinstance(entry, dict):
                    if entry.get("Password") == IN_ORTHANC_JSON:
                        entry["Password"] = _password_of(orthanc, registry, node_id)
                    elif any(k in entry for k in PASSWORD_KEYS) and read_password is not None:
                        entry["Password"] = read_password(f"{registry}.{node_id}", entry)
        _set_registry(full, path, entries)
    return full


def canonical(document: Mapping[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(document: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(document).encode("utf-8")).hexdigest()


def export(document: Mapping[str, Any]) -> dict:
    """The document as orthanc.json sections (the scripts are files of ScriptsDirectory)."""
    return {key: copy.deepcopy(value) for key, value in document.items() if key != "Scripts"}


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
