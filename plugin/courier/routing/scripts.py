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
from typing import Any, Callable, Iterable, Mapping, Optional

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


def compile_script(name: str, source: str, config_path: str, file: str = "",
                   function_name: Optional[str] = "match") -> Optional[Callable]:
    """A script from its source: syntax, loading and its function (a condition's match(tags,
    context), a Modify hook's modify(ds, context); None: not looked for) checked, as at start-up."""
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
    if function_name is None:
        return None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ConfigError(config_path, f"script {name!r} defines no {function_name}({ARGUMENTS[function_name]}) function")
    return function


ARGUMENTS = {"match": "tags, context", "modify": "ds, context"}


def read_scripts(directory: str, routes: Iterable[Route]) -> dict[str, str]:
    """The source of every script the routes name, from `directory` (those missing are left out:
    loading them reports it)."""
    sources = {}
    for route in routes:
        for name in (route.condition_script, route.modify.script):
            if name and os.path.isfile(os.path.join(directory, name)):
                with open(os.path.join(directory, name), encoding="utf-8") as handle:
                    sources[name] = handle.read()
    return sources


def load_script(directory: str, name: str, config_path: str, sources: Mapping[str, str] = {},
                function_name: str = "match") -> Callable:
    """A route's script: its source from `sources` (the runtime configuration), else its file."""
    if name in sources:
        return compile_script(name, sources[name], config_path, function_name=function_name)
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
        raise ConfigError(config_path, f"script {name!r} not found in {directory}", "check Courier.ScriptsDirectory")
    with open(path, encoding="utf-8") as handle:
        return compile_script(name, handle.read(), config_path, file=path, function_name=function_name)


def load_modify_hooks(directory: str, routes: tuple[Route, ...], sources: Mapping[str, str] = {}) -> dict[str, Callable]:
    """Each route's Modify hook (`def modify(ds, context)`), loaded once and checked like conditions."""
    return {route.name: load_script(directory, route.modify.script, f"Courier.Routes[{index}].Modify.Script", sources,
                                    function_name="modify")
            for index, route in enumerate(routes) if route.modify.script}


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
