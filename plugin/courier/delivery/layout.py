"""Pure: file paths of a folder destination, built from tags and kept inside the folder."""
from __future__ import annotations

import os
import re
from typing import Any, Mapping

_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9]+)\}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._\-^ ]")


def safe_component(value: Any) -> str:
    """One path component from a tag value: no separators, no '..', never empty."""
    text = _UNSAFE.sub("_", str(value if value is not None else "")).strip(" ")
    text = text.lstrip(".") or "_"
    return text[:128]


def layout_tags(data: bytes) -> dict[str, str]:
    """The top-level tags of a DICOM file, as text, that layouts name (its header only is read)."""
    import io

    import pydicom

    dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return {element.keyword: str(element.value) for element in dataset if element.keyword and element.VR != "SQ"}


def relative_path(layout: str, tags: Mapping[str, Any]) -> str:
    """Fill `layout` with tag values; each placeholder yields exactly one safe component."""
    def fill(match: re.Match) -> str:
        value = tags.get(match.group(1))
        return safe_component(value if value not in (None, "") else "UNKNOWN")
    parts = [part for part in _PLACEHOLDER.sub(fill, layout).split("/") if part not in ("", ".")]
    return "/".join(safe_component(p) if p == ".." else p for p in parts)


def contained_path(base: str, relative: str) -> str:
    """Absolute path of `relative` under `base`; ValueError if it would leave `base`."""
    root = os.path.realpath(base)
    target = os.path.realpath(os.path.join(root, relative))
    if os.path.commonpath([root, target]) != root or target == root:
        raise ValueError(f"path {relative!r} leaves the folder {base!r}")
    return target
