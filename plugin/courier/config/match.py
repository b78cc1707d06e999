"""Pure: the `Match` language of routes, compiled once at start-up into predicates on tag values.

A route's `Match` maps a DICOM keyword (or one of CONTEXT_KEYS) to a condition:

    "CT"                 exact value; `*` and `?` are wildcards ("CT*", "?R")
    5 / 2.5              a number, compared numerically
    ["CT", "MR"]         any of the listed conditions
    {"regex": "^AX"}     a Python regular expression, searched anywhere in the value
    {"lt": 20240101}     lt / lte / gt / gte: numeric comparison (DA, DT, TM, IS, DS values)
    {"not": <cond>}      negation of any condition
    {"exists": true}     the element is present and not empty (false: absent or empty)

Multi-valued elements (ImageType "ORIGINAL\\PRIMARY\\LOCALIZER") match when the whole value
or any single value matches. A missing element matches nothing but `not` and `exists: false`.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Optional

CONTEXT_KEYS = ("CallingAet", "CalledAet", "RemoteIp")
OPERATORS = ("regex", "lt", "lte", "gt", "gte", "not", "exists")

Condition = Callable[[Any], bool]


class MatchSyntaxError(ValueError):
    def __init__(self, problem: str, hint: str = "") -> None:
        self.problem, self.hint = problem, hint
        super().__init__(problem)


def _values(value: Any) -> list[str]:
    """The whole value and, for multi-valued strings, each single value."""
    if value is None or isinstance(value, (list, dict)):
        return []
    text = str(value)
    if text == "":
        return []
    parts = text.split("\\")
    return [text] + parts if len(parts) > 1 else [text]


def _number(text: Any) -> Optional[float]:
    """A float from IS/DS/DA/DT/TM text; "2024-01-31" is read as 20240131. None if not numeric."""
    s = str(text).strip()
    if len(s) == 10 and s[4] == "-" and s[7] == "-":
        s = s.replace("-", "")
    try:
        return float(s)
    except ValueError:
        return None


def _string_condition(pattern: str) -> Condition:
    if any(ch in pattern for ch in "*?"):
        regex = re.compile(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", "."), re.DOTALL)
        return lambda value: any(regex.fullmatch(v) for v in _values(value))
    return lambda value: pattern in _values(value)


def _number_condition(expected: float) -> Condition:
    return lambda value: any(_number(v) == expected for v in _values(value))


def _compare(op: str, bound: Any) -> Condition:
    limit = _number(bound)
    if limit is None:
        raise MatchSyntaxError(f"'{op}' needs a number or a date, got {bound!r}",
                               'dates are written 20240131 or "2024-01-31"')
    test = {"lt": lambda x: x < limit, "lte": lambda x: x <= limit,
            "gt": lambda x: x > limit, "gte": lambda x: x >= limit}[op]
    return lambda value: any((n := _number(v)) is not None and test(n) for v in _values(value))


def compile_condition(spec: Any) -> Condition:
    """Turn one JSON condition into a predicate on a tag value; MatchSyntaxError if malformed."""
    if isinstance(spec, bool):
        raise MatchSyntaxError("true/false is not a condition", 'use {"exists": true}')
    if isinstance(spec, str):
        return _string_condition(spec)
    if isinstance(spec, (int, float)):
        return _number_condition(float(spec))
    if isinstance(spec, list):
        if not spec:
            raise MatchSyntaxError("an empty list matches nothing", "list the accepted values")
        parts = [compile_condition(item) for item in spec]
        return lambda value: any(part(value) for part in parts)
    if isinstance(spec, dict):
        if len(spec) != 1:
            raise MatchSyntaxError(f"an operator object has exactly one key, got {sorted(spec)}",
                                   f"one of {', '.join(OPERATORS)}")
        (op, arg), = spec.items()
        if op == "regex":
            if not isinstance(arg, str):
                raise MatchSyntaxError("'regex' needs a string")
            try:
                regex = re.compile(arg)
            except re.error as exc:
                raise MatchSyntaxError(f"invalid regular expression {arg!r}: {exc}") from None
            return lambda value: any(regex.search(v) for v in _values(value))
        if op in ("lt", "lte", "gt", "gte"):
            return _compare(op, arg)
        if op == "not":
            inner = compile_condition(arg)
            return lambda value: not inner(value)
        if op == "exists":
            if not isinstance(arg, bool):
                raise MatchSyntaxError("'exists' needs true or false")
            return lambda value: bool(_values(value)) == arg
        raise MatchSyntaxError(f"unknown operator {op!r}", f"one of {', '.join(OPERATORS)}")
    raise MatchSyntaxError(f"unsupported condition {spec!r}",
                           "a string, a number, a list or an object with one operator")
