"""Watched folders ("Courier.Imports.{id}"): where files are dropped, when a folder of them is
complete, what happens to the files once Orthanc has them, and where the instances go."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from courier.config.reader import Section, resolve, type_name
from courier.config.routes import Route
from courier.errors import ConfigError

AFTER = ("Keep", "Move", "Delete")
COMPLETE_WHEN = ("QuietSeconds", "Renamed")


@dataclass(frozen=True)
class ImportFolder:
    id: str
    path: str
    recursive: bool = True
    pattern: str = "*"                 # fnmatch on file names
    after: str = "Keep"                # what becomes of a file once Orthanc stored it
    move_to: str = ""                  # After Move: where the files go (their relative paths kept)
    rejected: str = ""                 # files that cannot be imported, each with a .reason file
    complete_when: str = "QuietSeconds"
    quiet_seconds: float = 5.0
    route: Optional[str] = None        # the instances go where this route sends them
    destinations: tuple[str, ...] = ()  # or straight to these
    pseudonymize: Optional[str] = None  # with Destinations: this profile on the way
    rescan_seconds: float = 30.0       # the safety net under file events (lost on network mounts)


def parse_imports(raw: Any, base_dir: str, routes: tuple[Route, ...], destinations: Mapping[str, str],
                  profiles: Mapping[str, Any]) -> dict[str, ImportFolder]:
    if not isinstance(raw, dict):
        raise ConfigError("Courier.Imports", f"expected an object, got {type_name(raw)}")
    folders = {}
    for import_id, entry in raw.items():
        path = f"Courier.Imports.{import_id}"
        section = Section(entry, path, "Courier.Imports.{id}")
        folder = resolve(section.get("Path", str), base_dir)
        after = section.get("After", str, "Keep")
        if after not in AFTER:
            raise ConfigError(f"{path}.After", f"unknown value {after!r}", f"one of {', '.join(AFTER)}")
        complete = section.get("CompleteWhen", str, "QuietSeconds")
        if complete not in COMPLETE_WHEN:
            raise ConfigError(f"{path}.CompleteWhen", f"unknown value {complete!r}", f"one of {', '.join(COMPLETE_WHEN)}")
        route = section.get("Route", str, None)
        targets = tuple(section.get("Destinations", list, []))
        if (route is None) == (not targets):
            raise ConfigError(path, "give Route (a route's name) or Destinations, one of them")
        if route is not None and route not in {r.name for r in routes}:
            raise ConfigError(f"{path}.Route", f"no route named {route!r}", "name one of Courier.Routes")
        for index, target in enumerate(targets):
            if target not in destinations:
                raise ConfigError(f"{path}.Destinations[{index}]", f"no destination named {target!r}")
        profile = section.get("Pseudonymize", str, None)
        if profile is not None and (route is not None or profile not in profiles):
            raise ConfigError(f"{path}.Pseudonymize", f"no pseudonymization profile {profile!r}" if route is None
                              else "with Route, the route's own Pseudonymize applies")
        move_to = resolve(section.get("MoveTo", str, os.path.join(folder, "imported")), base_dir)
        quiet = float(section.positive("QuietSeconds", float, 5.0))
        folders[import_id] = ImportFolder(
            import_id, folder, section.get("Recursive", bool, True), section.get("Pattern", str, "*"), after, move_to,
            resolve(section.get("RejectedPath", str, os.path.join(folder, "rejected")), base_dir), complete, quiet,
            route, targets, profile, float(section.positive("RescanSeconds", float, 30.0)))
    return folders
