"""Python condition scripts from lua-free-scripts/: what Orthanc users wrote in Lua.

A script is a .py file with one function:

    def match(tags: Mapping[str, Any], context: RouteContext) -> bool

`tags` holds the resource's DICOM tags by keyword (Orthanc's simplified JSON: strings, and
lists for sequences) plus CallingAet, CalledAet and RemoteIp. Return True to let the route fire.
An exception is recorded in the audit trail (action "condition-error") and counts as False.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from courier.config.routes import Route
from courier.errors import ConfigError


@dataclass(frozen=True)
class RouteContext:
    route: str
    trigger: str
    calling_aet: str
    called_aet: str
    remote_ip: str


MatchFunction = Callable[[Mapping[str, Any], RouteContext], bool]


def load_script(directory: str, name: str, config_path: str) -> MatchFunction:
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
        raise ConfigError(config_path, f"script {name!r} not found in {directory}", "check Courier.ScriptsDirectory")
    spec = importlib.util.spec_from_file_location(f"courier_script_{name[:-3]}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ConfigError(config_path, f"script {name!r} failed to load: {type(exc).__name__}: {exc}") from None
    function = getattr(module, "match", None)
    if not callable(function):
        raise ConfigError(config_path, f"script {name!r} defines no match(tags, context) function")
    return function


def load_conditions(directory: str, routes: tuple[Route, ...]) -> Callable[[Route, Mapping[str, Any]], bool]:
    """Load every route's condition script once, at start-up; return the runner rules.evaluate uses."""
    functions = {route.name: load_script(directory, route.condition_script, f"Courier.Routes[{index}].Condition")
                 for index, route in enumerate(routes) if route.condition_script}

    def run(route: Route, tags: Mapping[str, Any]) -> bool:
        context = RouteContext(route.name, route.trigger, str(tags.get("CallingAet") or ""),
                               str(tags.get("CalledAet") or ""), str(tags.get("RemoteIp") or ""))
        return bool(functions[route.name](tags, context))
    return run
