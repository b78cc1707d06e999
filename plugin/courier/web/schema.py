"""Pure: request bodies checked before a handler runs, by the route table's declarations.

`parse_json` is a bounded parser: it refuses a body that is not UTF-8 or that is nested deeper
than `max_depth` *before* json.loads sees it. CPython's json decoder recurses in C once per level;
on the 100 KiB stacks of Orthanc 1.10.1's HTTP threads it overflowed at about 530 levels, a
segfault that stopped Orthanc (measured; courier.host now also runs handlers on threads of its
own with big stacks). The depth is counted by a pre-scan of the brackets outside strings, which
needs no recursion.

`validate` checks a parsed value against a schema written with the OpenAPI 3.0 keywords, so the
same dict is published in the OpenAPI document: type (object, array, string, integer, number,
boolean), nullable, properties, required, additionalProperties (false or a schema), items, enum,
pattern, minLength, maxLength, minItems, maxItems, minimum, maximum (description and format are not checked here:
a "byte" string is decoded, and checked, by its handler). The error names the JSON path
of the field at fault: "Items[2].StudyInstanceUID: expected a string, got an integer". Every
string and object key of the body, described by the schema or not, must be Unicode text: a lone
surrogate (JSON "\\ud800", which no UTF-8 can carry) is refused wherever it is.

Semantic checks (does this node exist, is this a date) stay with the handlers.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, Mapping, Optional

from courier.errors import ApiError

MAX_DEPTH = 32                       # no Courier body needs more than 4

_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}
_NAMES = {"object": "an object", "array": "an array", "string": "a string", "integer": "an integer",
          "number": "a number", "boolean": "true or false", "null": "null"}


def nesting_depth(text: str, stop_above: Optional[int] = None) -> int:
    """How deep the arrays and objects of a JSON text nest (brackets inside strings do not count).
    With `stop_above`, returns as soon as the depth exceeds it."""
    depth = deepest = 0
    for token in _TOKENS.finditer(text):
        char = token.group()[0]
        if char == '"':
            continue
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_above is not None and deepest > stop_above:
                    return deepest
        else:
            depth -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is too large for a number")
    return number


def parse_json(data: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of a request body (an empty body is {}); ApiError 400 when it is not UTF-8
    JSON or nests deeper than `max_depth`."""
    if not data:
        return {}
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"the body is not UTF-8 JSON (byte {exc.start})") from None
    if nesting_depth(text, stop_above=max_depth) > max_depth:
        raise ApiError(400, f"the body is nested deeper than {max_depth} levels of arrays and objects")
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except ValueError as exc:      # JSONDecodeError, NaN, 1e999, integers of more than 4300 digits
        raise ApiError(400, f"the body is not JSON: {exc}") from None


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return {dict: "object", list: "array", str: "string"}.get(type(value), type(value).__name__)


def _is(value: Any, wanted: str) -> bool:
    if wanted == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if wanted == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[wanted])


def _key_path(path: str, key: str) -> str:
    shown = key if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", key) else json.dumps(key)
    return f"{path}.{shown}" if path else shown


def _where(path: str) -> str:
    return path or "the body"


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _text(path: str, value: str, what: str = "") -> None:
    found = _SURROGATE.search(value)
    if found:
        raise ApiError(400, f"{_where(path)}: {what}contains a lone surrogate (U+{ord(found.group()):04X} at "
                            f"character {found.start()}), which is not Unicode text")


def check_query(query: Mapping[str, str]) -> None:
    """ApiError 400 for a GET argument that is not UTF-8 text (courier.host decodes the bytes that
    are not UTF-8 to lone surrogates)."""
    for name, value in query.items():
        if _SURROGATE.search(name) or _SURROGATE.search(value):
            shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            raise ApiError(400, f"query parameter {shown!r}: not UTF-8 text")


def validate(value: Any, schema: Optional[Mapping[str, Any]], path: str = "") -> None:
    """ApiError 400 naming the JSON path of the first value that does not fit `schema` (None or {}:
    anything, still checked for lone surrogates)."""
    schema = schema or {}
    if value is None:
        if schema.get("nullable") or "type" not in schema:
            return
        raise ApiError(400, f"{_where(path)}: expected {_NAMES[schema['type']]}, got null")
    wanted = schema.get("type")
    if wanted is not None and not _is(value, wanted):
        raise ApiError(400, f"{_where(path)}: expected {_NAMES[wanted]}, got {_NAMES.get(kind_of(value), kind_of(value))}")
    if isinstance(value, str):
        _text(path, value)
        if len(value) > schema.get("maxLength", len(value)):
            raise ApiError(400, f"{_where(path)}: at most {schema['maxLength']} characters, got {len(value)}")
        if len(value) < schema.get("minLength", 0):
            raise ApiError(400, f"{_where(path)}: " + ("must not be empty" if schema["minLength"] == 1
                                                        else f"at least {schema['minLength']} characters"))
        if "enum" in schema and value not in schema["enum"]:
            raise ApiError(400, f"{_where(path)}: one of {', '.join(map(str, schema['enum']))}, got {_shown(value)}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise ApiError(400, f"{_where(path)}: expected {schema.get('description') or 'a match of ' + schema['pattern']}"
                                f", got {_shown(value)}")
    elif isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            _text(path, key, "a key ")
            if key in properties:
                validate(item, properties[key], _key_path(path, key))
            elif extra is False:
                raise ApiError(400, f"{_key_path(path, key)}: unknown field; use {', '.join(properties)}")
            else:
                validate(item, extra if isinstance(extra, dict) else None, _key_path(path, key))
        for key in schema.get("required", ()):
            if key not in value:
                raise ApiError(400, f"{_key_path(path, key)}: required")
    elif isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise ApiError(400, f"{_where(path)}: at least {schema['minItems']} item(s), got {len(value)}")
        if len(value) > schema.get("maxItems", len(value)):
            raise ApiError(400, f"{_where(path)}: at most {schema['maxItems']} items, got {len(value)}")
        for index, item in enumerate(value):
            validate(item, schema.get("items"), f"{path}[{index}]")
    elif "enum" in schema and value not in schema["enum"]:
        raise ApiError(400, f"{_where(path)}: one of {', '.join(map(str, schema['enum']))}, got {_shown(value)}")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < schema.get("minimum", value) or value > schema.get("maximum", value):
            raise ApiError(400, f"{_where(path)}: from {schema.get('minimum', '-inf')} to {schema.get('maximum', 'inf')},"
                                f" got {_shown(value)}")
