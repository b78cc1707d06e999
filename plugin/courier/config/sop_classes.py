"""Courier.AcceptedSopClasses: the SOP classes Courier's C-STORE filter lets Orthanc store, by UID
or by the standard's name ("CT Image Storage", or its keyword "CTImageStorage")."""
from __future__ import annotations

import difflib
import re
from typing import Any, Optional

from courier.config.reader import type_name
from courier.errors import ConfigError

_UID = re.compile(r"^[0-9]+(\.[0-9]+)+$")


def _names() -> dict[str, tuple[str, str]]:
    """lower-case name or keyword -> (UID, the standard's name)."""
    from pydicom._uid_dict import UID_dictionary

    names = {}
    for uid, (name, kind, _, _, keyword) in UID_dictionary.items():
        if kind == "SOP Class":
            names[name.lower()] = names[keyword.lower()] = (uid, name)
    return names


def parse_sop_classes(raw: Any) -> Optional[frozenset]:
    """The accepted SOP Class UIDs, or None (the key absent: every class Orthanc accepts)."""
    if raw is None:
        return None
    path = "Courier.AcceptedSopClasses"
    if not isinstance(raw, list) or not raw:
        raise ConfigError(path, f"expected a non-empty list of SOP class UIDs or names, got {type_name(raw)}",
                          "leave the key out to accept every class Orthanc accepts")
    names, uids = _names(), set()
    for index, entry in enumerate(raw):
        if not isinstance(entry, str):
            raise ConfigError(f"{path}[{index}]", f"expected a string, got {type_name(entry)}")
        if _UID.match(entry):
            uids.add(entry)
        elif entry.lower() in names:
            uids.add(names[entry.lower()][0])
        else:
            close = difflib.get_close_matches(entry.lower(), list(names), n=1)
            raise ConfigError(f"{path}[{index}]", f"unknown SOP class {entry!r}",
                              f"did you mean '{names[close[0]][1]}'?" if close else "a UID, or a name such as 'CT Image Storage'")
    return frozenset(uids)


def sop_class_name(uid: str) -> str:
    from pydicom._uid_dict import UID_dictionary

    entry = UID_dictionary.get(uid)
    return entry[0] if entry else uid
