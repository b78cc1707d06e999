"""Applying a route's or job's `Modify` (config.modify) to an instance about to be sent (pure, on a
pydicom Dataset): Copy, Replace, Set, Remove, then the hook script. Any error raises ModifyError
and the instance is quarantined by the caller, never sent half-modified."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from courier.config.modify import FORBIDDEN, IDENTIFYING, Modification, Path


class ModifyError(Exception):
    """A Modify could not be applied (its hook raised, or a value does not fit its element)."""


@dataclass(frozen=True)
class ModifyContext:
    """What a hook is told: `def modify(ds, context)`."""
    route: str
    destination: str
    job_id: Optional[int] = None


@dataclass(frozen=True)
class Modifier:
    modification: Modification
    hook: Optional[Callable[[Dataset, ModifyContext], Any]] = None

    def apply(self, ds: Dataset, context: ModifyContext) -> None:
        """Change `ds` in place; ModifyError says what failed (and `ds` must then be thrown away).
        The reason names the step and the exception's type, never a value (values may be PHI)."""
        where = "Copy"
        before = {tag: ds.get(tag).value if tag in ds else None for tag in IDENTIFYING}
        had_pixels = any(tag in ds for tag in FORBIDDEN)
        try:
            m = self.modification
            for source, target in m.copy:
                for parent in _parents(ds, source):
                    if source.last.tag in parent and parent[source.last.tag].value not in (None, ""):
                        for into in _parents(ds, target):
                            _set(into, target.last.tag, copy.deepcopy(parent[source.last.tag].value))
            where = "Replace"
            for path, pattern, replacement in m.replace:
                for parent in _parents(ds, path):
                    if path.last.tag in parent:
                        element = parent[path.last.tag]
                        if isinstance(element.value, (MultiValue, list, tuple)):
                            element.value = [pattern.sub(replacement, str(v)) for v in element.value]
                        elif element.value is not None:
                            element.value = pattern.sub(replacement, str(element.value))
            where = "Set"
            for path, value in m.set:
                for parent in _parents(ds, path):
                    _set(parent, path.last.tag, copy.deepcopy(value))
            where = "Remove"
            for path in m.remove:
                for parent in _parents(ds, path):
                    if path.last.index is None:
                        if path.last.tag in parent:
                            del parent[path.last.tag]
                    elif path.last.tag in parent:           # an item of a sequence
                        items = parent[path.last.tag].value
                        if path.last.index == "*":
                            del parent[path.last.tag]
                        elif path.last.index < len(items):
                            del items[path.last.index]
            if self.hook is not None:
                where = f"script {m.script}"
                self.hook(ds, context)
        except Exception as exc:                      # noqa: BLE001 - a hook may raise anything
            raise ModifyError(f"Modify {where} failed: {type(exc).__name__}{_line_in(exc, m.script)}") from None
        changed = [name for tag, name in IDENTIFYING.items() if (ds.get(tag).value if tag in ds else None) != before[tag]]
        if changed:
            raise ModifyError(f"Modify script {m.script} changed {', '.join(changed)}, which only "
                              "pseudonymization may remap")
        if not had_pixels and any(tag in ds for tag in FORBIDDEN):
            raise ModifyError(f"Modify script {m.script} set Pixel Data, which Modify may not change")


def _line_in(exc: Exception, script: Optional[str]) -> str:
    """Where in the hook it raised (its own message may quote the instance's values)."""
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if script and tb.tb_frame.f_code.co_filename.endswith(script):
            line = tb.tb_lineno
        tb = tb.tb_next
    return f" at line {line} of {script}" if line else ""


def _set(parent: Dataset, tag: int, value: Any) -> None:
    if tag in parent:
        parent[tag].value = value
    else:
        parent.add_new(tag, dictionary_VR(tag), value)


def _parents(ds: Dataset, path: Path) -> Iterator[Dataset]:
    """The datasets that hold the path's last element: `ds` itself, or the items its sequence
    steps select ([n]: that item, when there is one; [*]: every item). Items are never made: an
    instance without the sequence is left as it is."""
    current = [ds]
    for step in path.steps[:-1]:
        following = []
        for parent in current:
            if step.tag not in parent:
                continue
            items = parent[step.tag].value or []
            if step.index == "*":
                following.extend(items)
            elif isinstance(step.index, int) and step.index < len(items):
                following.append(items[step.index])
        current = following
    yield from current
