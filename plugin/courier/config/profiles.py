"""The "Courier.Pseudonymization" section -> Profile records (secrets read here, never logged).

The records say what a profile asks for; courier.deid carries it out. OPTIONS names the PS3.15
Annex E options a profile may enable, with the Table E.1-1 column and the CID 7050 code of each.
A lookup table CSV (PatientID,Pseudonym) is read here too: at start-up from LookupFile, and for
uploads through the REST API, with the same checks. Courier's own private block (group 7FDF,
creator "COURIER 1.0", where courier.deid.marker writes its keyed mark) is Courier's alone: Keep
and SafePrivate may not name it.
"""
from __future__ import annotations

import csv
import difflib
import io
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from pydicom.datadict import tag_for_keyword

from courier.config.reader import Section, resolve, type_name
from courier.config.secrets import read_secret
from courier.errors import ConfigError

TRIAL_KEYWORDS = {"SponsorName": "ClinicalTrialSponsorName", "ProtocolID": "ClinicalTrialProtocolID",
                  "ProtocolName": "ClinicalTrialProtocolName", "SiteID": "ClinicalTrialSiteID",
                  "SiteName": "ClinicalTrialSiteName"}
SOURCES = ("Hmac", "Lookup", "Broker")

# option name in the Courier configuration -> column of Table E.1-1, and its CID 7050 code
OPTIONS: dict[str, tuple[str, str, str]] = {
    "RetainSafePrivate": ("rtnSafePrivOpt", "113111", "Retain Safe Private Option"),
    "RetainUIDs": ("rtnUIDsOpt", "113110", "Retain UIDs Option"),
    "RetainDeviceIdentity": ("rtnDevIdOpt", "113109", "Retain Device Identity Option"),
    "RetainInstitutionIdentity": ("rtnInstIdOpt", "113112", "Retain Institution Identity Option"),
    "RetainPatientCharacteristics": ("rtnPatCharsOpt", "113108", "Retain Patient Characteristics Option"),
    "RetainLongitudinalFullDates": ("rtnLongFullDatesOpt", "113106",
                                    "Retain Longitudinal Temporal Information Full Dates Option"),
    "RetainLongitudinalModifiedDates": ("rtnLongModifDatesOpt", "113107",
                                        "Retain Longitudinal Temporal Information Modified Dates Option"),
    "CleanDescriptors": ("cleanDescOpt", "113105", "Clean Descriptors Option"),
    "CleanStructuredContent": ("cleanStructContOpt", "113104", "Clean Structured Content Option"),
    "CleanGraphics": ("cleanGraphOpt", "113103", "Clean Graphics Option"),
}
BURNED_IN_ACTIONS = ("Reject", "Quarantine", "Pass")
# Courier's own private block, where the pseudonymizer writes the keyed mark of its output
# (courier.deid.marker): the whole group is Courier's, a profile can neither keep nor list it.
COURIER_PRIVATE_GROUP = 0x7FDF
COURIER_PRIVATE_CREATOR = "COURIER 1.0"
DEFAULT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"


@dataclass(frozen=True)
class PseudonymFormat:
    prefix: str = ""
    length: int = 12
    alphabet: str = DEFAULT_ALPHABET


@dataclass(frozen=True)
class Profile:
    name: str
    secret: bytes = field(repr=False)
    options: frozenset = frozenset()
    pseudonym: PseudonymFormat = PseudonymFormat()
    date_shift_days: tuple[int, int] = (-365, -1)
    keep: frozenset = frozenset()             # tags (int)
    remove: frozenset = frozenset()
    replace: Mapping[int, str] = field(default_factory=dict)
    safe_private: frozenset = frozenset()     # (group, private creator, element low byte)
    trial: Mapping[str, str] = field(default_factory=dict)   # DICOM keyword -> value
    burned_in: str = "Quarantine"
    burned_in_modalities: frozenset = frozenset({"US", "SC", "OT", "XC", "ES", "DOC"})
    burned_in_sop_classes: frozenset = frozenset()
    source: str = "Hmac"                      # Hmac | Lookup | Broker (see courier.deid.sources)
    lookup_rows: tuple = field(default=(), repr=False)   # (PatientID, pseudonym) from LookupFile
    broker_url: str = ""
    broker_timeout: float = 10.0


def _tag(text: Any, path: str) -> int:
    """A DICOM keyword or "(gggg,eeee)" / "gggg,eeee" -> tag number."""
    if isinstance(text, str):
        found = re.fullmatch(r"\(?([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)?", text.strip())
        if found:
            return int(found.group(1) + found.group(2), 16)
        tag = tag_for_keyword(text)
        if tag is not None:
            return tag
    raise ConfigError(path, f"{text!r} is neither a DICOM keyword nor a tag like \"0010,0020\"")


def _profile(name: str, raw: Any, base_dir: str, environ: Mapping[str, str]) -> Profile:
    path = f"Courier.Pseudonymization.{name}"
    section = Section(raw, path, "Courier.Pseudonymization.{name}")
    options = section.get("Options", list, [])
    for index, option in enumerate(options):
        if option not in OPTIONS:
            close = difflib.get_close_matches(str(option), list(OPTIONS), n=1)
            raise ConfigError(f"{path}.Options[{index}]", f"unknown option {option!r}",
                              f"did you mean '{close[0]}'?" if close else f"one of {', '.join(OPTIONS)}")
    if {"RetainLongitudinalFullDates", "RetainLongitudinalModifiedDates"} <= set(options):
        raise ConfigError(f"{path}.Options", "RetainLongitudinalFullDates and RetainLongitudinalModifiedDates exclude each other")
    fmt_section = Section(section.get("Pseudonym", dict, {}), f"{path}.Pseudonym", "Courier.Pseudonymization.{name}.Pseudonym")
    fmt = PseudonymFormat(prefix=fmt_section.get("Prefix", str, ""),
                          length=fmt_section.positive("Length", int, 12),
                          alphabet=fmt_section.get("Alphabet", str, DEFAULT_ALPHABET))
    if len(set(fmt.alphabet)) < 2 or len(set(fmt.alphabet)) != len(fmt.alphabet):
        raise ConfigError(f"{path}.Pseudonym.Alphabet", "needs at least two distinct characters, none repeated")
    if len(fmt.prefix) + fmt.length > 64:
        raise ConfigError(f"{path}.Pseudonym", "Prefix + Length exceed 64 characters (the size of a PatientID)")
    source = fmt_section.get("Source", str, "Hmac")
    if source not in SOURCES:
        raise ConfigError(f"{path}.Pseudonym.Source", f"unknown source {source!r}", f"one of {', '.join(SOURCES)}")
    lookup_rows: list = []
    lookup_file = fmt_section.get("LookupFile", str, None)
    if lookup_file is not None:
        full = resolve(lookup_file, base_dir)
        try:
            with open(full, encoding="utf-8-sig") as handle:
                lookup_rows = parse_lookup_csv(handle.read(), full)
        except OSError as exc:
            raise ConfigError(f"{path}.Pseudonym.LookupFile", f"cannot read {full}: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError(f"{path}.Pseudonym.LookupFile", str(exc)) from None
    broker_url = fmt_section.get("BrokerUrl", str, "")
    if source == "Broker" and not re.match(r"https?://", broker_url):
        raise ConfigError(f"{path}.Pseudonym.BrokerUrl", "the Broker source needs an http(s) URL")
    broker_timeout = float(fmt_section.positive("BrokerTimeoutSeconds", float, 10.0))
    days = section.get("DateShiftDays", list, [-365, -1])
    if len(days) != 2 or not all(isinstance(d, int) and not isinstance(d, bool) for d in days) or days[0] > days[1]:
        raise ConfigError(f"{path}.DateShiftDays", f"expected [lowest, highest] whole days, got {days!r}")
    replace = section.get("Replace", dict, {})
    safe_private = set()
    for index, entry in enumerate(section.get("SafePrivate", list, [])):
        found = re.fullmatch(r"([0-9A-Fa-f]{4}),([^,]+),([0-9A-Fa-f]{2})", str(entry))
        if not found or int(found.group(1), 16) % 2 == 0:
            raise ConfigError(f"{path}.SafePrivate[{index}]", f"expected \"gggg,Private Creator,ee\", got {entry!r}",
                              'e.g. "0019,SIEMENS MR HEADER,0C" (odd group, element low byte)')
        if int(found.group(1), 16) == COURIER_PRIVATE_GROUP or found.group(2) == COURIER_PRIVATE_CREATOR:
            raise ConfigError(f"{path}.SafePrivate[{index}]", f"{entry!r} names Courier's own private block",
                              f"group {COURIER_PRIVATE_GROUP:04X} and creator {COURIER_PRIVATE_CREATOR!r} are written by "
                              "Courier itself, never kept from a received instance")
        safe_private.add((int(found.group(1), 16), found.group(2), int(found.group(3), 16)))
    trial_section = Section(section.get("Trial", dict, {}), f"{path}.Trial", "Courier.Pseudonymization.{name}.Trial")
    trial = {TRIAL_KEYWORDS[key]: trial_section.get(key, str) for key in TRIAL_KEYWORDS if key in trial_section.data}
    burned_in = section.get("BurnedInAnnotation", str, "Quarantine")
    if burned_in not in BURNED_IN_ACTIONS:
        raise ConfigError(f"{path}.BurnedInAnnotation", f"unknown value {burned_in!r}", f"one of {', '.join(BURNED_IN_ACTIONS)}")
    modalities = section.get("BurnedInModalities", list, sorted(Profile.__dataclass_fields__["burned_in_modalities"].default))
    keep = []
    for index, text in enumerate(section.get("Keep", list, [])):
        keep.append(_tag(text, f"{path}.Keep[{index}]"))
        if keep[-1] >> 16 == COURIER_PRIVATE_GROUP:
            raise ConfigError(f"{path}.Keep[{index}]", f"{text!r} is in Courier's own private group "
                              f"{COURIER_PRIVATE_GROUP:04X}", "Courier writes that group itself")
    return Profile(
        name=name, secret=read_secret(section, path, base_dir, environ), options=frozenset(options), pseudonym=fmt,
        date_shift_days=(days[0], days[1]),
        keep=frozenset(keep),
        remove=frozenset(_tag(t, f"{path}.Remove[{i}]") for i, t in enumerate(section.get("Remove", list, []))),
        replace={_tag(k, f"{path}.Replace.{k}"): str(v) for k, v in replace.items()},
        safe_private=frozenset(safe_private), trial=trial, burned_in=burned_in,
        burned_in_modalities=frozenset(str(m) for m in modalities),
        burned_in_sop_classes=frozenset(str(u) for u in section.get("BurnedInSopClasses", list, [])),
        source=source, lookup_rows=tuple(lookup_rows),
        broker_url=broker_url, broker_timeout=broker_timeout)


def parse_profiles(raw: Any, base_dir: str, environ: Mapping[str, str] = os.environ) -> dict[str, Profile]:
    if not isinstance(raw, dict):
        raise ConfigError("Courier.Pseudonymization", f"expected an object, got {type_name(raw)}")
    return {name: _profile(name, spec, base_dir, environ) for name, spec in raw.items()}


LOOKUP_COLUMNS = ("PatientID", "Pseudonym")


def parse_lookup_csv(text: str, origin: str) -> list[tuple[str, str]]:
    """Rows of a PatientID,Pseudonym CSV (comma or semicolon, with or without BOM).
    ValueError naming the line and column for the first problem."""
    text = text.lstrip("\ufeff")
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in LOOKUP_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{origin}: line 1: missing column(s) {', '.join(missing)} (found {', '.join(header) or 'nothing'})")
    index = {name: header.index(name) for name in LOOKUP_COLUMNS}
    rows, seen = [], {}
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        values = {name: (row[i].strip() if i < len(row) else "") for name, i in index.items()}
        for name in LOOKUP_COLUMNS:
            if not values[name]:
                raise ValueError(f"{origin}: line {line}, column {name}: empty")
        if values["PatientID"] in seen and seen[values["PatientID"]] != values["Pseudonym"]:
            raise ValueError(f"{origin}: line {line}, column Pseudonym: PatientID {values['PatientID']!r} already has "
                             f"another pseudonym (one patient, one pseudonym)")
        seen[values["PatientID"]] = values["Pseudonym"]
        rows.append((values["PatientID"], values["Pseudonym"]))
    return rows
