"""The "Courier.Routes" list -> Route records: what to match, where to send, how to pseudonymize.

Evaluating routes against an instance is routing's job (courier.routing.rules); this module only
reads and checks what orthanc.json says, with errors that name the JSON path.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from courier.config.match import CONTEXT_KEYS, Condition, MatchSyntaxError, compile_condition
from courier.config.modify import Modification, parse_modify
from courier.config.profiles import Profile
from courier.config.reader import Section, type_name
from courier.errors import ConfigError

TRIGGERS = ("Instance", "StableSeries", "StableStudy")
LEVEL_OF_TRIGGER = {"Instance": "Instance", "StableSeries": "Series", "StableStudy": "Study"}


@dataclass(frozen=True)
class CompleteWhen:
    """A study is complete as soon as it holds a series of each description (wildcards `*` `?`,
    case-insensitive) and of each modality listed (Mercure's "named list of series")."""
    series_descriptions: tuple[str, ...] = ()
    modalities: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.series_descriptions or self.modalities)


@dataclass(frozen=True)
class Route:
    name: str
    trigger: str                                  # Instance | StableSeries | StableStudy
    match: tuple[tuple[str, Condition], ...]
    destinations: tuple[str, ...]
    condition_script: Optional[str] = None
    delete_after_delivery: bool = False
    priority: int = 0
    allowed_calling_aets: Optional[tuple[str, ...]] = None
    fallback: bool = False
    match_spec: Mapping[str, Any] = None          # the JSON as written, for GET /courier/routes
    pseudonymize: Optional[str] = None            # profile to apply
    pseudonymize_on: str = "Send"                 # Send: a pseudonymized copy is sent; Ingest: only that is stored
    stable_after: float = 60.0                    # StableSeries/StableStudy: seconds of quiet that complete a resource
    force_after: Optional[float] = None           # complete anyway this long after its first instance
    complete_when: CompleteWhen = CompleteWhen()
    modify: Modification = Modification()        # tag changes on what is sent (config.modify)

    @property
    def level(self) -> str:
        return LEVEL_OF_TRIGGER[self.trigger]

    def matches(self, tags: Mapping[str, Any]) -> bool:
        """Every `Match` condition holds for these tags (scripts and callers are checked by routing)."""
        return all(condition(tags.get(key)) for key, condition in self.match)


def _match(raw: Any, path: str) -> tuple[tuple[tuple[str, Any], ...], dict]:
    from pydicom.datadict import tag_for_keyword

    if not isinstance(raw, dict):
        raise ConfigError(path, f"expected an object, got {type_name(raw)}")
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
        raise ConfigError(path, f"expected a list of strings, got {type_name(value)}")
    return tuple(value)


def _complete_when(raw: Any, path: str) -> CompleteWhen:
    section = Section(raw, path, "Courier.Routes[].CompleteWhen")
    when = CompleteWhen(_string_list(section.get("SeriesDescriptions", list, []), f"{path}.SeriesDescriptions"),
                        _string_list(section.get("Modalities", list, []), f"{path}.Modalities"))
    if not when:
        raise ConfigError(path, "lists neither SeriesDescriptions nor Modalities")
    return when


def parse_routes(raw: Any, destinations: Mapping[str, str], profiles: Mapping[str, Profile],
                 stable_age: float = 60.0) -> tuple[Route, ...]:
    """`stable_age` is Orthanc's StableAge: the default StableAfterSeconds."""
    if not isinstance(raw, list):
        raise ConfigError("Courier.Routes", f"expected a list, got {type_name(raw)}")
    routes, names = [], set()
    for index, spec in enumerate(raw):
        path = f"Courier.Routes[{index}]"
        section = Section(spec, path, "Courier.Routes[]")
        name = section.get("Name", str)
        if not name or name in names:
            raise ConfigError(f"{path}.Name", f"route names must be unique and not empty, got {name!r}")
        if ":" in name:
            raise ConfigError(f"{path}.Name", f"a route name has no ':', got {name!r}",
                              "manual:, release:, import: and upload: name the tasks made outside routes")
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
                        "declare it in DicomModalities, DicomWeb.Servers, OrthancPeers, Courier.Folders, "
                        "Courier.Archives or Courier.Buckets")
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
        if stage == "Ingest" and "Modify" in section.data:
            raise ConfigError(f"{path}.Modify", "not with PseudonymizeOn Ingest: Orthanc stores, and sends, the "
                                                "pseudonymized instance as it is", "use PseudonymizeOn Send")
        if stage == "Ingest":
            _check_ingest_route(section, path, profile, match_spec, routes)
        stable_after = float(section.positive("StableAfterSeconds", float, stable_age))
        force_after = section.get("ForceAfterSeconds", float, None)
        if force_after is not None and force_after <= 0:
            raise ConfigError(f"{path}.ForceAfterSeconds", f"must be greater than 0, got {force_after}")
        complete_when = section.get("CompleteWhen", dict, None)
        if complete_when is not None and trigger != "StableStudy":
            raise ConfigError(f"{path}.CompleteWhen", "only for StableStudy routes",
                              "a study is complete as soon as it holds the series listed")
        if trigger == "Instance":
            for key in ("StableAfterSeconds", "ForceAfterSeconds"):
                if key in section.data:
                    raise ConfigError(f"{path}.{key}", "only for StableSeries and StableStudy routes",
                                      "an Instance route fires for each instance as it arrives")
        if not section.get("Enabled", bool, True):
            continue                         # checked like the others, but it fires for nothing
        routes.append(Route(
            name=name, trigger=trigger, match=match, destinations=targets, condition_script=condition,
            delete_after_delivery=section.get("DeleteAfterDelivery", bool, False),
            priority=section.get("Priority", int, 0),
            allowed_calling_aets=None if allowed is None else _string_list(allowed, f"{path}.AllowedCallingAets"),
            fallback=section.get("Fallback", bool, False), match_spec=match_spec, pseudonymize=profile,
            pseudonymize_on=stage, stable_after=stable_after,
            force_after=None if force_after is None else float(force_after),
            complete_when=CompleteWhen() if complete_when is None else _complete_when(complete_when, f"{path}.CompleteWhen"),
            modify=parse_modify(section.get("Modify", dict, None), f"{path}.Modify")))
    return tuple(routes)


def _check_ingest_route(section: Section, path: str, profile: Optional[str], match_spec: dict,
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
