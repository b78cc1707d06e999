"""Python condition scripts from lua-free-scripts/: what Orthanc users wrote in Lua.

A script is a .py file with one function:

    def match(tags: Mapping[str, Any], context: RouteContext) -> bool

`tags` holds the resource's DICOM tags by keyword (Orthanc's simplified JSON: strings, and
lists for sequences) plus CallingAet, CalledAet and RemoteIp. Return True to let the route fire.
An exception is recorded in the audit trail (action "condition-error") and counts as False.
"""
from __future__ import annotations

import os
import re
import types
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

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


SCRIPT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\.py$")


def compile_script(name: str, source: str, config_path: str, file: str = "") -> MatchFunction:
    """A condition script from its source: syntax, loading and match() checked, as at start-up."""
    if not SCRIPT_NAME.match(name):
        raise ConfigError(config_path, f"script name {name!r} is not a plain file name ending in .py")
    try:
        code = compile(source, file or name, "exec")
    except SyntaxError as exc:
        raise ConfigError(config_path, f"script {name!r} line {exc.lineno}: {exc.msg}") from None
    module = types.ModuleType(f"courier_script_{name[:-3]}")
    module.__file__ = file or name
    try:
        exec(code, module.__dict__)          # noqa: S102 - the administrator's own condition script
    except Exception as exc:
        raise ConfigError(config_path, f"script {name!r} failed to load: {type(exc).__name__}: {exc}") from None
    function = getattr(module, "match", None)
    if not callable(function):
        raise ConfigError(config_path, f"script {name!r} defines no match(tags, context) function")
    return function


def read_scripts(directory: str, routes: Iterable[Route]) -> dict[str, str]:
    """The source of every script the routes name, from `directory` (those missing are left out:
    loading them reports it)."""
    sources = {}
    for route in routes:
        name = route.condition_script
        if name and os.path.isfile(os.path.join(directory, name)):
            with open(os.path.join(directory, name), encoding="utf-8") as handle:
                sources[name] = handle.read()
    return sources


def load_script(directory: str, name: str, config_path: str, sources: Mapping[str, str] = {}) -> MatchFunction:
    """A route's script: its source from `sources` (the runtime configuration), else its file."""
    if name in sources:
        return compile_script(name, sources[name], config_path)
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
        raise ConfigError(config_path, f"script {name!r} not found in {directory}", "check Courier.ScriptsDirectory")
    with open(path, encoding="utf-8") as handle:
        return compile_script(name, handle.read(), config_path, file=path)


def load_conditions(directory: str, routes: tuple[Route, ...],
                    sources: Mapping[str, str] = {}) -> Callable[[Route, Mapping[str, Any]], bool]:
    """Load every route's condition script once (from `sources` when given there, else from
    `directory`); return the runner rules.evaluate uses."""
    functions = {route.name: load_script(directory, route.condition_script, f"Courier.Routes[{index}].Condition", sources)
                 for index, route in enumerate(routes) if route.condition_script}

    def run(route: Route, tags: Mapping[str, Any]) -> bool:
        context = RouteContext(route.name, route.trigger, str(tags.get("CallingAet") or ""),
                               str(tags.get("CalledAet") or ""), str(tags.get("RemoteIp") or ""))
        return bool(functions[route.name](tags, context))
    return run
