"""The /courier/ route table, from which requests are dispatched and the OpenAPI document is made.

Orthanc authenticates every request before it reaches a plugin route (RegisteredUsers,
AuthenticationEnabled), so handlers only see allowed callers; `Api.handle` then checks the role
each endpoint needs (courier.web.guard), then the body the endpoint declares (`check_body`: size,
depth, the schema of courier.web.bodies, the same one the OpenAPI document shows), and turns an
ApiError into a JSON answer (405 carries Allow). Pages under /courier/ui/ go to the UI
(courier.web.ui). Handlers live in one module per area (api_*.py).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

from courier import VERSION
from courier.errors import ApiError
from courier.host import HttpRequest, HttpResponse
from courier.store.records import STATES, TRAFFIC_SERVICES, TRAFFIC_STATUSES
from courier.web import (
    api_audit,
    api_batches,
    api_completion,
    api_config,
    api_dashboard,
    api_deid,
    api_imports,
    api_jobs,
    api_nodes,
    api_quarantine,
    api_routes,
    api_status,
    api_subscriptions,
    api_tasks,
    api_traffic,
    bodies,
)
from courier.web.bodies import Body
from courier.web.guard import authorize, csrf_token, media_type, rights_of
from courier.web.http import MAX_ID, MAX_PAGE, PREFIX, Context, MethodNotAllowed, actor_of, json_response
from courier.web.schema import check_query, parse_json, validate
from courier.web.ui import Ui

log = logging.getLogger("courier")

Handler = Callable[[Context, HttpRequest, dict], Any]


@dataclass(frozen=True)
class Endpoint:
    method: str
    pattern: str                   # OpenAPI-style path below /courier/, e.g. "tasks/{id}"
    handler: Handler
    summary: str
    query: tuple[tuple[str, str], ...] = ()   # (name, description)
    role: str = "viewer"                       # the least role that may call it (courier.web.access), or "internal":
                                               # Orthanc's internal calls only (courier.web.guard.INTERNAL_ROUTES)
    body: Optional[Body] = None                # what a POST reads (courier.web.bodies), checked before the handler
    path: tuple[tuple[str, dict], ...] = ()    # path parameters whose schema is not PATH_SCHEMAS' (OpenAPI)

    @property
    def regex(self) -> re.Pattern:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.pattern) + "$")


def openapi(ctx: Context, request: HttpRequest, args: dict) -> Any:
    return openapi_document()


_PAGING = (("limit", "page size (1-1000, default 100)"), ("offset", "rows to skip"))
# The OpenAPI schemas of the parameters, by name; the handlers check them (int_param...).
PATH_SCHEMAS = {"id": {"type": "integer", "minimum": 1, "maximum": MAX_ID}, "profile": {"type": "string"}}
QUERY_SCHEMAS = {"limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                 "offset": {"type": "integer", "minimum": 0, "maximum": MAX_ID},
                 "task": {"type": "integer", "minimum": 0, "maximum": MAX_ID},
                 "since": {"type": "number"}, "until": {"type": "number"},
                 "state": {"type": "string", "enum": list(STATES)},
                 "service": {"type": "string", "enum": list(TRAFFIC_SERVICES)},
                 "status": {"type": "string", "enum": list(TRAFFIC_STATUSES)},
                 "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"}}
_TRAFFIC_FILTERS = (("service", "C-STORE or C-FIND (C-ECHO, C-MOVE, C-GET: not seen by Courier on Orthanc 1.10.1)"),
                    ("caller", "calling AE title"), ("status", "accepted or refused"),
                    ("since", "Unix time"), ("until", "Unix time"), ("from", "first day, YYYY-MM-DD"),
                    ("to", "last day, YYYY-MM-DD (included)"))
_ORTHANC_ID = {"type": "string", "pattern": bodies.ORTHANC_ID, "description": "the Orthanc ID of a series or study"}

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "health", api_status.health, "200 once the workers and the change follower run, else 503"),
    Endpoint("GET", "status", api_status.status, "Version, queue depth by state, per-destination counts"),
    Endpoint("GET", "dashboard", api_dashboard.dashboard, "The live dashboard's numbers: uptime, queue and queue "
             "wait, received today, storage, node states, routes, hourly (24 h) and daily (30 days) series"),
    Endpoint("GET", "routes", api_routes.routes, "The configured routes with task counts by state"),
    Endpoint("GET", "tasks", api_tasks.tasks, "Tasks, newest first",
             (("state", "PENDING, RUNNING, SUCCESS, WARNING, FAILURE or CANCELED"), ("route", "route name"),
              ("destination", "destination id"), ("since", "created at or after, Unix time"),
              ("until", "created before, Unix time")) + _PAGING),
    Endpoint("GET", "tasks.csv", api_tasks.tasks_csv, "The tasks matching the filters of /courier/tasks, as CSV",
             (("state", "a task state"), ("route", "route name"), ("destination", "destination id"),
              ("since", "created at or after, Unix time"), ("until", "created before, Unix time"))),
    Endpoint("POST", "tasks/bulk", api_tasks.bulk,
             'Retry, cancel or reprioritise tasks: {"Action": retry|cancel|priority, "Ids": [...] | "Filter": {state, '
             'route, destination, since, until}, "Priority"?}; audited', role="admin", body=bodies.TASKS_BULK),
    Endpoint("GET", "tasks/{id}", api_tasks.task, "One task, with the SOP Instance UIDs still missing"),
    Endpoint("POST", "tasks/{id}/retry", api_tasks.retry, "Put a FAILURE, WARNING or CANCELED task back in the queue",
             role="admin", body=bodies.NOTHING),
    Endpoint("POST", "tasks/{id}/cancel", api_tasks.cancel, "Cancel a PENDING or RUNNING task", role="admin",
             body=bodies.NOTHING),
    Endpoint("GET", "audit", api_audit.audit, "The audit trail, newest first",
             (("action", "e.g. task-delivered, instance-rejected"), ("actor", "user or calling AE"),
              ("route", "route name"), ("task", "task id"), ("node", "destination or node id"),
              ("since", "Unix time"), ("until", "Unix time")) + _PAGING),
    Endpoint("POST", "pseudonymize/{profile}", api_deid.pseudonymize,
             "Pseudonymize the DICOM instance in the body with a profile and return it (to try a profile)",
             role="operator", body=bodies.PSEUDONYMIZE),
    Endpoint("GET", "quarantine", api_quarantine.quarantine, "Instances refused or quarantined, with the reason", _PAGING),
    Endpoint("GET", "crosswalk/{profile}/patid_mapping.csv", api_deid.patid_mapping,
             "CSV old_patient_id,new_patient_id of a profile (honest-broker crosswalk)", role="admin"),
    Endpoint("GET", "crosswalk/{profile}/uid_mapping.csv", api_deid.uid_mapping, "CSV old_uid,new_uid of a profile",
             role="admin"),
    Endpoint("POST", "crosswalk/{profile}/lookup", api_deid.upload_lookup,
             "Add rows (CSV with PatientID,Pseudonym columns) to a profile's lookup table", role="admin",
             body=bodies.LOOKUP_CSV),
    Endpoint("GET", "nodes", api_nodes.nodes, "The nodes of Orthanc's registries, with capabilities and last echo"),
    Endpoint("POST", "nodes/{id}/echo", api_nodes.echo, "C-ECHO a DICOM node (or call a DICOMweb server) and record the result",
             role="operator", body=bodies.NOTHING, path=(("id", {"type": "string", "description": "a node id"}),)),
    Endpoint("POST", "query", api_nodes.query,
             'C-FIND on a node: {"Node", "Level": PATIENT|STUDY|SERIES, "Filters": {keyword: value}}; answers re-filtered',
             role="operator", body=bodies.QUERY),
    Endpoint("POST", "jobs", api_jobs.create_job,
             'Transfer job: {"Source", "Destination", "Pseudonymize"?, "Urgent"?, "Items": [{"StudyInstanceUID"} | '
             '{"AccessionNumber"} | {"PatientID", "StudyDate"?, "ModalitiesInStudy"?}]}', role="operator", body=bodies.JOB),
    Endpoint("POST", "jobs/batch", api_batches.create_batch,
             'Batch file as JSON {"File": base64 CSV/XLSX, "FileName", "Kind": transfer|query, "Source", "Destination", '
             '"Pseudonymize", "Urgent", "ArchivePassword", "DryRun"}; validated whole first, errors by line and column',
             role="operator", body=bodies.BATCH),
    Endpoint("GET", "batches/{id}", api_batches.get_batch, "A batch: counts and lists of its rows, results and "
             "failed rows, its job", role="operator"),
    Endpoint("GET", "batches/{id}/{name}", api_batches.batch_export,
             "results.csv, results.xlsx, failed.csv or failed.xlsx of a batch", role="operator",
             path=(("name", {"type": "string", "enum": list(api_batches.EXPORTS)}),)),
    Endpoint("GET", "jobs", api_jobs.list_jobs, "Transfer jobs with status and progress, newest first", _PAGING),
    Endpoint("GET", "jobs/{id}", api_jobs.get_job, "One job: status, progress (instances, bytes, rate, ETA) and its tasks"),
    Endpoint("POST", "jobs/{id}/items", api_jobs.add_items,
             'More items for a job ({"Items": [...]}, at most 20): studies it has not got yet become tasks; own jobs, '
             'or admin', role="operator", body=bodies.JOB_ITEMS),
    Endpoint("DELETE", "jobs/{id}", api_jobs.delete_job,
             "Forget a finished job with its tasks, batches and pseudonyms (the audit entries stay)", role="admin"),
    Endpoint("DELETE", "batches/{id}", api_batches.delete_batch,
             "Forget a batch, and its job once finished (the audit entries stay)", role="admin"),
    Endpoint("POST", "subscriptions", api_subscriptions.create,
             'A source asked on a Schedule (cron) or Every ("15m") for new studies, its past from From transferred in '
             'Day or Week partitions, oldest first; each study transferred once, topped up when it grows',
             role="operator", body=bodies.SUBSCRIPTION),
    Endpoint("POST", "subscriptions/preview", api_subscriptions.preview,
             "What a subscription with this body would fetch at its first run; nothing is stored", role="operator",
             body=bodies.SUBSCRIPTION),
    Endpoint("GET", "subscriptions", api_subscriptions.list_all, "Subscriptions with next run, last run, studies "
             "transferred and errors"),
    Endpoint("GET", "subscriptions/{id}", api_subscriptions.get_one, "One subscription with the studies it transferred",
             _PAGING),
    Endpoint("PUT", "subscriptions/{id}", api_subscriptions.edit,
             "Edit a subscription (the body of create): its Schedule or Every, limits, Query, Match and Name; the "
             "next run is at once. Source, Destination, Pseudonymize, Trial, Urgent, From, Till, Partition: 409",
             role="operator", body=bodies.SUBSCRIPTION_EDIT),
    Endpoint("POST", "subscriptions/{id}/{action}", api_subscriptions.control, "pause | resume; own subscriptions, or admin",
             role="operator", body=bodies.NOTHING,
             path=(("action", {"type": "string", "enum": list(api_subscriptions.ACTIONS)}),)),
    Endpoint("DELETE", "subscriptions/{id}", api_subscriptions.delete,
             "Stop a subscription: its pending tasks are cancelled, its job and the audit stay; own, or admin",
             role="operator"),
    Endpoint("POST", "jobs/{id}/{action}", api_jobs.control_job,
             'cancel | pause | resume | retry (failed tasks) | priority ({"Urgent": true|false}) | start (a READY job); '
             'own jobs, or admin',
             role="operator", body=bodies.CONTROL_JOB,
             path=(("action", {"type": "string", "enum": list(api_jobs.ACTIONS)}),)),
    Endpoint("GET", "audit.csv", api_audit.audit_csv, "The audit trail as CSV, with the filters of /courier/audit",
             (("action", "action"), ("actor", "user or calling AE"), ("node", "destination or node id"),
              ("since", "Unix time"), ("until", "Unix time"))),
    Endpoint("POST", "routes/test", api_routes.test_routes,
             'Rule tester: a DICOM file (application/dicom) or {"Tags": {...}, "CallingAet"?} -> routes that fire, '
             'refusals, and each profile\'s result; nothing is stored or sent', role="operator", body=bodies.ROUTE_TEST),
    Endpoint("POST", "send", api_tasks.send,
             'Send a study of Courier\'s Orthanc: {"Study": Orthanc ID, "Destination", "Pseudonymize"?}', role="operator",
             body=bodies.SEND),
    Endpoint("POST", "quarantine/{id}/release", api_quarantine.release_quarantined,
             "Deliver a reviewed quarantined instance anyway, pseudonymized, burned-in check waived", role="admin",
             body=bodies.NOTHING),
    Endpoint("POST", "quarantine/{id}/delete", api_quarantine.delete_quarantined,
             "Forget a quarantine entry and delete the original it kept", role="admin", body=bodies.NOTHING),
    Endpoint("GET", "completion", api_completion.pending,
             "Series and studies that StableSeries/StableStudy routes still wait for, with when each completes them"),
    Endpoint("POST", "completion/{id}/force", api_completion.force,
             "Complete a series or study (Orthanc ID) now, for every route that waits for it", role="operator",
             body=bodies.NOTHING, path=(("id", _ORTHANC_ID),)),
    Endpoint("GET", "imports", api_imports.imports, "The watched folders (Courier.Imports) with their files' outcomes"),
    Endpoint("GET", "imports/{id}/files", api_imports.import_files, "A watched folder's files: outcome, reason, instance",
             _PAGING, path=(("id", {"type": "string", "description": "an import id of Courier.Imports"}),)),
    Endpoint("GET", "uploads", api_imports.list_uploads, "Uploads, newest first (an OPEN one holds its instances until "
             "it is routed, sent or discarded)", _PAGING, role="operator"),
    Endpoint("POST", "uploads", api_imports.new_upload, "Begin an upload: files are then posted one by one, held, "
             "previewed, and routed, sent or discarded", role="operator", body=bodies.NOTHING),
    Endpoint("POST", "uploads/{id}/files", api_imports.upload_file,
             "One DICOM file, or a ZIP / TAR / TAR.GZ / 7z archive unpacked safely (name in X-Courier-Filename): "
             "each file's outcome (imported, duplicate, not DICOM, unreadable, skipped) with the reason",
             role="operator", body=bodies.UPLOAD_FILE),
    Endpoint("GET", "uploads/{id}", api_imports.get_upload,
             "An upload: its files' outcomes and what they hold by patient, study and series, with thumbnails",
             role="operator"),
    Endpoint("POST", "uploads/{id}/{action}", api_imports.upload_action,
             'route ({} as received, or {"Route"}) | send ({"Destination", "Pseudonymize"?}) | discard',
             role="operator", body=bodies.UPLOAD_ACTION,
             path=(("action", {"type": "string", "enum": list(api_imports.ACTIONS)}),)),
    Endpoint("GET", "config", api_config.current, "The runtime configuration in force (routes, destinations, "
             "profiles, nodes, scripts) and its version; node passwords never appear", role="admin"),
    Endpoint("PUT", "config", api_config.replace, "Replace the whole runtime configuration: checked as orthanc.json "
             "is, applied without a restart, recorded as a new version", role="admin", body=bodies.CONFIG_DOCUMENT),
    Endpoint("PUT", "config/{section}/{name}", api_config.put_entry,
             "Create or replace one entry: routes (by Name), folders, archives, profiles, node-settings, modalities, "
             "dicomweb, peers, scripts", role="admin", body=bodies.CONFIG_ENTRY,
             path=(("section", {"type": "string", "enum": list(api_config.SECTIONS)}),)),
    Endpoint("DELETE", "config/{section}/{name}", api_config.delete_entry, "Delete one entry (a new version)",
             (("base", "the version the change was made from"), ("comment", "why")), role="admin",
             path=(("section", {"type": "string", "enum": list(api_config.SECTIONS)}),)),
    Endpoint("GET", "config/versions", api_config.versions, "The configuration's versions, newest first: who, when, "
             "why, from where (orthanc.json, api, restore)", _PAGING, role="admin"),
    Endpoint("GET", "config/versions/{id}", api_config.version, "One version with its document", role="admin"),
    Endpoint("GET", "config/versions/{id}/diff", api_config.compare, "What changed from version `from` (default: "
             "the one before) to this one, by JSON path", (("from", "a version number"),), role="admin"),
    Endpoint("POST", "config/versions/{id}/restore", api_config.restore, "Make this version's document the "
             "configuration in force again (a new version)", role="admin", body=bodies.CONFIG_RESTORE),
    Endpoint("GET", "config/export", api_config.export, "The configuration in force as orthanc.json sections",
             role="admin"),
    Endpoint("GET", "traffic", api_traffic.traffic, "The DICOM traffic log, latest first: per burst of one caller, "
             "the service, calling and called AE, IP, status, operations, instances and bytes; no patient identifiers",
             _TRAFFIC_FILTERS + _PAGING),
    Endpoint("GET", "traffic.csv", api_traffic.traffic_csv, "The traffic log as CSV, with the filters of /courier/traffic",
             _TRAFFIC_FILTERS),
    Endpoint("POST", "traffic/events", api_traffic.record_event,
             'One C-FIND Orthanc served, from Courier\'s Lua script: {"Service": "C-FIND", "CallingAet", "CalledAet", '
             '"RemoteIp", "Level"}; Orthanc\'s internal calls only (refused to every HTTP client)', role="internal",
             body=bodies.TRAFFIC_EVENT),
    Endpoint("GET", "openapi.json", openapi, "This document"),
)


def openapi_document() -> dict:
    paths: dict[str, dict] = {}
    for endpoint in ENDPOINTS:
        own = dict(endpoint.path)
        parameters = [{"name": name, "in": "path", "required": True,
                       "schema": own.get(name) or PATH_SCHEMAS.get(name, {"type": "string"})}
                      for name in re.findall(r"\{(\w+)\}", endpoint.pattern)]
        parameters += [{"name": name, "in": "query", "required": False, "description": text,
                        "schema": QUERY_SCHEMAS.get(name, {"type": "string"})} for name, text in endpoint.query]
        operation = {"summary": endpoint.summary, "parameters": parameters, "x-courier-role": endpoint.role,
                     "responses": {"200": {"description": "JSON"},
                                   "4XX": {"description": 'JSON {"error": message, "status": code}'}}}
        if endpoint.body is not None:
            operation["requestBody"] = bodies.request_body(endpoint.body)
        paths.setdefault(PREFIX + endpoint.pattern, {})[endpoint.method.lower()] = operation
    return {"openapi": "3.0.3", "info": {"title": "Courier", "version": VERSION}, "paths": paths}


def check_body(endpoint: Endpoint, request: HttpRequest) -> None:
    """The one validation layer of request bodies: size, then (JSON) nesting depth, parsing and
    the endpoint's schema; the parsed body is kept on the request for the handler (json_body)."""
    if endpoint.body is None:
        return
    largest, as_json = endpoint.body.limit(media_type(request))
    size = len(request.body or b"")
    if size > largest:
        raise ApiError(413, f"the body is {size} bytes; {endpoint.method} /courier/{endpoint.pattern} takes at most "
                            f"{bodies.size_text(largest)}")
    if as_json:
        value = parse_json(request.body)
        validate(value, endpoint.body.schema)
        request.parsed = value


class Api:
    """Dispatches /courier/ requests: UI pages, then the route table."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.ui = Ui(ctx)

    def handle(self, request: HttpRequest) -> HttpResponse:
        try:
            return self._dispatch(request)
        except ApiError as exc:
            answer = json_response(exc.status, {"error": exc.message, "status": exc.status})
            if isinstance(exc, MethodNotAllowed):
                answer.headers["Allow"] = ", ".join(exc.allowed)
            return answer
        except RecursionError:          # a DICOM file whose sequences nest hundreds deep...
            log.warning("%s %s: recursion limit reached", request.method, request.path)
            return json_response(400, {"error": "the request nests too deeply to be processed", "status": 400})
        except Exception as exc:        # a bug: still a JSON answer, the traceback in Orthanc's log
            log.exception("%s %s", request.method, request.path)
            return json_response(500, {"error": f"internal error ({type(exc).__name__}); see Orthanc's log",
                                       "status": 500})

    def _dispatch(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(PREFIX):
            raise ApiError(404, f"no route {request.path}")
        path = request.path[len(PREFIX):]
        check_query(request.query)
        if path == "ui" or path.startswith("ui/"):
            return self._page(request, path[3:])
        allowed = []
        for endpoint in ENDPOINTS:
            found = endpoint.regex.match(path)
            if found:
                if endpoint.method == request.method:
                    if endpoint.role != "internal":     # internal: Orthanc's HTTP filter let no client through
                        authorize(self.ctx, request, endpoint.method, endpoint.pattern, endpoint.role)
                    check_body(endpoint, request)
                    answer = endpoint.handler(self.ctx, request, found.groupdict())
                    return answer if isinstance(answer, HttpResponse) else json_response(200, answer)
                allowed.append(endpoint.method)
        if allowed:
            raise MethodNotAllowed(allowed, f"{request.method} is not allowed on {request.path}; use {', '.join(allowed)}")
        raise ApiError(404, f"no route {request.path}")

    def _page(self, request: HttpRequest, page: str) -> HttpResponse:
        if request.method != "GET":
            raise MethodNotAllowed(["GET"], "the UI pages are read with GET; actions go through the REST API")
        rights = rights_of(self.ctx, request)
        if rights is None:
            raise ApiError(401, "authentication required")
        user = actor_of(request)
        return self.ui.handle(page, {"user": user, "role": rights.role, "csrf": csrf_token(self.ctx, user),
                                     "query": dict(request.query)})
