"""What every REST handler shares: the services it may use (Context) and small request helpers.

A handler is a plain function `handler(ctx, request, args) -> JSON-able value | HttpResponse`;
it raises ApiError (courier.errors) with the status and a message naming the field at fault.
"""
from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from courier.config.parse import CourierConfig
from courier.deid.pseudonymizer import Pseudonymizer
from courier.engine.runtime import RuntimeConfig
from courier.errors import ApiError, DeliveryError
from courier.host import HttpRequest, HttpResponse
from courier.imports.importer import Importer
from courier.imports.watch import FolderWatcher
from courier.orthanc_rest import OrthancRest
from courier.store.records import Task
from courier.store.store import Store
from courier.web.schema import parse_json

PREFIX = "/courier/"
MAX_PAGE = 1000
MAX_ID = 10**12


@dataclass
class Context:
    """The services of the REST API and the UI, given once by the composition root."""
    config: CourierConfig
    store: Store
    is_healthy: Callable[[], bool]
    pseudonymizers: Mapping[str, Pseudonymizer] = field(default_factory=dict)
    rest: Optional[OrthancRest] = None
    wake_workers: Callable[[], None] = lambda: None
    wake_follower: Callable[[], None] = lambda: None
    wake_scheduler: Callable[[], None] = lambda: None
    importer: Optional[Importer] = None     # stores uploaded files
    watcher: Optional[FolderWatcher] = None  # the watched folders, for their status
    run_script: Optional[Callable] = None
    runtime: Optional[RuntimeConfig] = None     # the runtime configuration and its versions
    hooks: Mapping[str, Callable] = field(default_factory=dict)     # route -> its Modify script
    csrf_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    started_at: float = field(default_factory=time.time)     # this process's start, for the uptime


def int_param(value: Optional[str], name: str, default: int, low: int = 0, high: int = MAX_ID,
              where: str = "query parameter") -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ApiError(400, f"{where} '{name}' must be an integer, got {value!r}") from None
    if not low <= number <= high:
        raise ApiError(400, f"{where} '{name}' must be between {low} and {high}, got {number}")
    return number


def row_id(args: dict) -> int:
    """The {id} of a path that names a task, job, batch or quarantine entry."""
    return int_param(args["id"], "id", 0, 1, where="path parameter")


def paging(request: HttpRequest) -> tuple[int, int]:
    """(limit, offset) from ?limit=&offset=."""
    return (int_param(request.query.get("limit"), "limit", 100, 1, MAX_PAGE),
            int_param(request.query.get("offset"), "offset", 0))


def user_of(request: HttpRequest) -> Optional[str]:
    """The HTTP Basic user Orthanc authenticated, if any."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            return base64.b64decode(header[6:]).decode("utf-8", "replace").split(":", 1)[0] or None
        except (binascii.Error, ValueError):
            pass
    return None


def actor_of(request: HttpRequest) -> str:
    return user_of(request) or "anonymous"


class MethodNotAllowed(ApiError):
    """405, with the methods the path takes (sent as Allow)."""

    def __init__(self, allowed: list[str], message: str) -> None:
        super().__init__(405, message)
        self.allowed = list(dict.fromkeys(allowed))


def json_body(request: HttpRequest) -> Any:
    """The JSON body: as the dispatcher checked it against the endpoint's schema (courier.web.routes),
    or else parsed with the same bounds (depth, UTF-8)."""
    if request.parsed is not None:
        return request.parsed
    return parse_json(request.body)


def json_response(status: int, body: Any) -> HttpResponse:
    return HttpResponse(status, json.dumps(body, default=str).encode())


def task_json(store: Store, task: Task, with_missing: bool = False) -> dict:
    answer = task.as_json()
    if with_missing:
        answer["missing"] = store.tasks.missing(task.id)
    return answer


def present(ctx: Context, level_path: str, resource_id: str) -> bool:
    """Is this study or series (by Orthanc ID) in Courier's Orthanc?"""
    try:
        ctx.rest.get_json(f"/{level_path}/{resource_id}")
        return True
    except DeliveryError:
        return False
