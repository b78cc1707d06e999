"""`Modify` on a route or a job: tag changes applied to what is sent (the stored original is never
touched), before any pseudonymization.

    "Modify": {"Copy": {"AccessionNumber": "StudyID"},
               "Replace": {"StudyDescription": {"Pattern": "^CT ", "With": ""}},
               "Set": {"InstitutionName": "Research", "RequestAttributesSequence[*].RequestedProcedureID": "X"},
               "Remove": ["OperatorsName", "00091001"],
               "Script": "my_modify.py"}

Applied in that order: Copy, Replace, Set, Remove, then the Script (`def modify(ds, context)` in
ScriptsDirectory). A path is a keyword, or a sequence keyword with an item index (`[0]`) or every
item (`[*]`) and a keyword inside, to any depth; Remove also takes a tag as 8 hex digits (private
tags). Pixel Data and the file meta group cannot be changed here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from courier.config.reader import Section, type_name
from courier.errors import ConfigError

_STEP = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9]*|[0-9A-Fa-f]{8})(?:\[(?P<index>\*|[0-9]+)\])?$")
_SCRIPT = re.compile(r"^[A-Za-z0-9_\-]+\.py$")
FORBIDDEN = {0x7FE00010, 0x7FE00008, 0x7FE00009}        # pixel data: set aside while instances are rewritten
# what identifies the instance (deliveries are acknowledged by it, the file meta repeats it, and a
# profile remaps it): left to pseudonymization
IDENTIFYING = {0x00080016: "SOPClassUID", 0x00080018: "SOPInstanceUID", 0x0020000D: "StudyInstanceUID",
               0x0020000E: "SeriesInstanceUID"}
TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}


@dataclass(frozen=True)
class Step:
    tag: int
    keyword: str                      # "" for a tag given in hex
    index: Union[int, str, None]      # item index, "*" for every item, None: the element itself


@dataclass(frozen=True)
class Path:
    steps: tuple[Step, ...]
    text: str                         # as written, for messages

    @property
    def last(self) -> Step:
        return self.steps[-1]


@dataclass(frozen=True)
class Modification:
    copy: tuple[tuple[Path, Path], ...] = ()
    replace: tuple[tuple[Path, "re.Pattern", str], ...] = ()
    set: tuple[tuple[Path, Any], ...] = ()
    remove: tuple[Path, ...] = ()
    script: Optional[str] = None
    spec: Any = field(default=None, compare=False)       # the JSON as written

    def __bool__(self) -> bool:
        return bool(self.copy or self.replace or self.set or self.remove or self.script)


def parse_path(text: Any, where: str, allow_hex: bool = False) -> Path:
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    if not isinstance(text, str) or not text:
        raise ConfigError(where, f"expected a path such as 'Keyword' or 'Sequence[*].Keyword', got {text!r}")
    steps = []
    parts = text.split(".")
    for position, part in enumerate(parts):
        found = _STEP.match(part)
        if not found:
            raise ConfigError(where, f"{part!r} is not a keyword, 'Sequence[n]' or 'Sequence[*]' (in {text!r})")
        name, index = found["name"], found["index"]
        if re.fullmatch(r"[0-9A-Fa-f]{8}", name):
            if not allow_hex or position != len(parts) - 1:
                raise ConfigError(where, f"{name}: a tag in hex may end a path of Remove only")
            tag, keyword = int(name, 16), ""
        else:
            tag = tag_for_keyword(name)
            if tag is None:
                raise ConfigError(where, f"{name!r} is not a DICOM keyword (in {text!r})")
            keyword = name
        is_last = position == len(parts) - 1
        vr = dictionary_VR(tag) if keyword else "UN"
        if not is_last and (index is None or vr != "SQ"):
            raise ConfigError(where, f"{name!r} must be a sequence with an item, such as {name}[*] (in {text!r})")
        if index is not None and vr != "SQ":
            raise ConfigError(where, f"{name!r} is not a sequence (in {text!r})")
        if tag in FORBIDDEN or tag >> 16 == 0x0002:
            raise ConfigError(where, f"{name} cannot be changed by Modify")
        if tag in IDENTIFYING and position == 0:
            raise ConfigError(where, f"{name} cannot be changed by Modify", "the identifying UIDs are the "
                              "pseudonymization's to remap (Pseudonymize)")
        steps.append(Step(tag, keyword, None if index is None else (index if index == "*" else int(index))))
    return Path(tuple(steps), text)


def _element_path(text: Any, where: str, action: str, text_only: bool = False) -> Path:
    from pydicom.datadict import dictionary_VR

    path = parse_path(text, where)
    if path.last.index is not None:
        raise ConfigError(where, f"{action} takes an element, not an item ({text!r})")
    vr = dictionary_VR(path.last.tag)
    if vr == "SQ":
        raise ConfigError(where, f"{action} takes a value, and {path.last.keyword} is a sequence")
    if text_only and vr not in TEXT_VRS:
        raise ConfigError(where, f"{action} works on text, and {path.last.keyword} is {vr}")
    return path


def vr_of(path: Path) -> str:
    from pydicom.datadict import dictionary_VR
    return dictionary_VR(path.last.tag)


def _fitting(value: Any, path: Path, where: str) -> Any:
    """A Set value as its element takes it (numbers as text for text VRs), or ConfigError."""
    from pydicom.valuerep import validate_value

    vr = vr_of(path)
    values = value if isinstance(value, list) else [value]
    if vr in TEXT_VRS:
        values = [v if isinstance(v, str) else (str(int(v)) if float(v).is_integer() else repr(v)) for v in values]
    try:
        for one in values:
            validate_value(vr, one, 2)
    except (ValueError, TypeError) as exc:
        raise ConfigError(where, f"does not fit {path.last.keyword} ({vr}): {exc}") from None
    return values if isinstance(value, list) else values[0]


def _check_template(pattern: "re.Pattern", replacement: str, where: str) -> None:
    """A With that names a group the pattern does not have fails at once, not on each instance."""
    for number in re.findall(r"\\(\d+)|\\g<(\d+)>", replacement):
        group = int(number[0] or number[1])
        if group > pattern.groups:
            raise ConfigError(where, f"refers to group {group}, and the pattern has {pattern.groups}")
    for name in re.findall(r"\\g<([A-Za-z_]\w*)>", replacement):
        if name not in pattern.groupindex:
            raise ConfigError(where, f"refers to group {name!r}, which the pattern does not name")


def parse_modify(raw: Any, path: str, scripts_named: Optional[set] = None) -> Modification:
    """A `Modify` object; ConfigError names the JSON path of what is wrong."""
    if raw is None:
        return Modification()
    section = Section(raw, path, "Courier.Routes[].Modify")
    copies = []
    for source, target in section.get("Copy", dict, {}).items():
        where = f"{path}.Copy.{source}"
        origin, into = _element_path(source, where, "Copy"), _element_path(target, where, "Copy")
        if vr_of(origin) != vr_of(into) and not {vr_of(origin), vr_of(into)} <= TEXT_VRS:
            raise ConfigError(where, f"{origin.last.keyword} ({vr_of(origin)}) cannot be copied into "
                              f"{into.last.keyword} ({vr_of(into)})")
        copies.append((origin, into))
    replaces = []
    for text, rule in section.get("Replace", dict, {}).items():
        where = f"{path}.Replace.{text}"
        inner = Section(rule, where, "Courier.Routes[].Modify.Replace.{path}")
        try:
            pattern = re.compile(inner.get("Pattern", str))
        except re.error as exc:
            raise ConfigError(f"{where}.Pattern", f"not a regular expression: {exc}") from None
        replacement = inner.get("With", str, "")
        _check_template(pattern, replacement, f"{where}.With")
        replaces.append((_element_path(text, where, "Replace", text_only=True), pattern, replacement))
    sets = []
    for text, value in section.get("Set", dict, {}).items():
        where = f"{path}.Set.{text}"
        if not (isinstance(value, (str, int, float)) and not isinstance(value, bool)) and not (
                isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value)):
            raise ConfigError(where, f"expected a string, a number or a list of them, got {type_name(value)}")
        target = _element_path(text, where, "Set")
        sets.append((target, _fitting(value, target, where)))
    removes = []
    for index, text in enumerate(section.get("Remove", list, [])):
        removes.append(parse_path(text, f"{path}.Remove[{index}]", allow_hex=True))
    script = section.get("Script", str, None)
    if script is not None:
        if not _SCRIPT.match(script):
            raise ConfigError(f"{path}.Script", f"expected a file name like 'my_modify.py', got {script!r}",
                              "scripts live in Courier.ScriptsDirectory")
        if scripts_named is not None:
            scripts_named.add(script)
    return Modification(tuple(copies), tuple(replaces), tuple(sets), tuple(removes), script, raw)
