"""The /courier/ route table, from which requests are dispatched and the OpenAPI document is made.

Orthanc authenticates every request before it reaches a plugin route (RegisteredUsers,
AuthenticationEnabled), so handlers only see allowed callers; `Api.handle` then checks the role
each endpoint needs (courier.web.guard) and turns an ApiError into a JSON answer. Pages under
/courier/ui/ go to the UI (courier.web.ui). Handlers live in one module per area (api_*.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from courier import VERSION
from courier.errors import ApiError
from courier.host import HttpRequest, HttpResponse
from courier.web import (
    api_audit,
    api_batches,
    api_completion,
    api_deid,
    api_jobs,
    api_nodes,
    api_quarantine,
    api_routes,
    api_status,
    api_tasks,
)
from courier.web.guard import authorize, csrf_token, rights_of
from courier.web.http import PREFIX, Context, actor_of, json_response
from courier.web.ui import Ui

Handler = Callable[[Context, HttpRequest, dict], Any]


@dataclass(frozen=True)
class Endpoint:
    method: str
    pattern: str                   # OpenAPI-style path below /courier/, e.g. "tasks/{id}"
    handler: Handler
    summary: str
    query: tuple[tuple[str, str], ...] = ()   # (name, description)
    role: str = "viewer"                       # the least role that may call it (courier.web.access)

    @property
    def regex(self) -> re.Pattern:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.pattern) + "$")


def openapi(ctx: Context, request: HttpRequest, args: dict) -> Any:
    return openapi_document()


_PAGING = (("limit", "page size (1-1000, default 100)"), ("offset", "rows to skip"))

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "health", api_status.health, "200 once the workers and the change follower run, else 503"),
    Endpoint("GET", "status", api_status.status, "Version, queue depth by state, per-destination counts"),
    Endpoint("GET", "routes", api_routes.routes, "The configured routes with task counts by state"),
    Endpoint("GET", "tasks", api_tasks.tasks, "Tasks, newest first",
             (("state", "PENDING, RUNNING, SUCCESS, WARNING, FAILURE or CANCELED"), ("route", "route name"),
              ("destination", "destination id")) + _PAGING),
    Endpoint("GET", "tasks/{id}", api_tasks.task, "One task, with the SOP Instance UIDs still missing"),
    Endpoint("POST", "tasks/{id}/retry", api_tasks.retry, "Put a FAILURE, WARNING or CANCELED task back in the queue",
             role="admin"),
    Endpoint("POST", "tasks/{id}/cancel", api_tasks.cancel, "Cancel a PENDING or RUNNING task", role="admin"),
    Endpoint("GET", "audit", api_audit.audit, "The audit trail, newest first",
             (("action", "e.g. task-delivered, instance-rejected"), ("actor", "user or calling AE"),
              ("route", "route name"), ("task", "task id"), ("node", "destination or node id"),
              ("since", "Unix time"), ("until", "Unix time")) + _PAGING),
    Endpoint("POST", "pseudonymize/{profile}", api_deid.pseudonymize,
             "Pseudonymize the DICOM instance in the body with a profile and return it (to try a profile)",
             role="operator"),
    Endpoint("GET", "quarantine", api_quarantine.quarantine, "Instances refused or quarantined, with the reason", _PAGING),
    Endpoint("GET", "crosswalk/{profile}/patid_mapping.csv", api_deid.patid_mapping,
             "CSV old_patient_id,new_patient_id of a profile (honest-broker crosswalk)", role="admin"),
    Endpoint("GET", "crosswalk/{profile}/uid_mapping.csv", api_deid.uid_mapping, "CSV old_uid,new_uid of a profile",
             role="admin"),
    Endpoint("POST", "crosswalk/{profile}/lookup", api_deid.upload_lookup,
             "Add rows (CSV with PatientID,Pseudonym columns) to a profile's lookup table", role="admin"),
    Endpoint("GET", "nodes", api_nodes.nodes, "The nodes of Orthanc's registries, with capabilities and last echo"),
    Endpoint("POST", "nodes/{id}/echo", api_nodes.echo, "C-ECHO a DICOM node (or call a DICOMweb server) and record the result",
             role="operator"),
    Endpoint("POST", "query", api_nodes.query,
             'C-FIND on a node: {"Node", "Level": PATIENT|STUDY|SERIES, "Filters": {keyword: value}}; answers re-filtered',
             role="operator"),
    Endpoint("POST", "jobs", api_jobs.create_job,
             'Transfer job: {"Source", "Destination", "Pseudonymize"?, "Urgent"?, "Items": [{"StudyInstanceUID"} | '
             '{"AccessionNumber"} | {"PatientID", "StudyDate"?, "ModalitiesInStudy"?}]}', role="operator"),
    Endpoint("POST", "jobs/batch", api_batches.create_batch,
             'Batch file as JSON {"File": base64 CSV/XLSX, "FileName", "Kind": transfer|query, "Source", "Destination", '
             '"Pseudonymize", "Urgent", "ArchivePassword", "DryRun"}; validated whole first, errors by line and column',
             role="operator"),
    Endpoint("GET", "batches/{id}", api_batches.get_batch, "A batch: rows, results, failed rows, its job"),
    Endpoint("GET", "batches/{id}/{name}", api_batches.batch_export,
             "results.csv, results.xlsx, failed.csv or failed.xlsx of a batch", role="operator"),
    Endpoint("GET", "jobs", api_jobs.list_jobs, "Transfer jobs with status and progress, newest first", _PAGING),
    Endpoint("GET", "jobs/{id}", api_jobs.get_job, "One job: status, progress (instances, bytes, rate, ETA) and its tasks"),
    Endpoint("POST", "jobs/{id}/{action}", api_jobs.control_job,
             'cancel | pause | resume | retry (failed tasks) | priority ({"Urgent": true|false}); own jobs, or admin',
             role="operator"),
    Endpoint("GET", "audit.csv", api_audit.audit_csv, "The audit trail as CSV, with the filters of /courier/audit",
             (("action", "action"), ("actor", "user or calling AE"), ("node", "destination or node id"),
              ("since", "Unix time"), ("until", "Unix time"))),
    Endpoint("POST", "routes/test", api_routes.test_routes,
             'Rule tester: a DICOM file (application/dicom) or {"Tags": {...}, "CallingAet"?} -> routes that fire, '
             'refusals, and each profile\'s result; nothing is stored or sent', role="operator"),
    Endpoint("POST", "send", api_tasks.send,
             'Send a study of Courier\'s Orthanc: {"Study": Orthanc ID, "Destination", "Pseudonymize"?}', role="operator"),
    Endpoint("POST", "quarantine/{id}/release", api_quarantine.release_quarantined,
             "Deliver a reviewed quarantined instance anyway, pseudonymized, burned-in check waived", role="admin"),
    Endpoint("POST", "quarantine/{id}/delete", api_quarantine.delete_quarantined,
             "Forget a quarantine entry and delete the original it kept", role="admin"),
    Endpoint("GET", "completion", api_completion.pending,
             "Series and studies that StableSeries/StableStudy routes still wait for, with when each completes them"),
    Endpoint("POST", "completion/{id}/force", api_completion.force,
             "Complete a series or study (Orthanc ID) now, for every route that waits for it", role="operator"),
    Endpoint("GET", "openapi.json", openapi, "This document"),
)


def openapi_document() -> dict:
    paths: dict[str, dict] = {}
    for endpoint in ENDPOINTS:
        parameters = [{"name": name, "in": "path", "required": True,
                       "schema": {"type": "integer" if name == "id" else "string"}}
                      for name in re.findall(r"\{(\w+)\}", endpoint.pattern)]
        parameters += [{"name": name, "in": "query", "required": False, "description": text,
                        "schema": {"type": "string"}} for name, text in endpoint.query]
        paths.setdefault(PREFIX + endpoint.pattern, {})[endpoint.method.lower()] = {
            "summary": endpoint.summary, "parameters": parameters,
            "x-courier-role": endpoint.role,
            "responses": {"200": {"description": "JSON"},
                          "4XX": {"description": 'JSON {"error": message, "status": code}'}}}
    return {"openapi": "3.0.3", "info": {"title": "Courier", "version": VERSION}, "paths": paths}


class Api:
    """Dispatches /courier/ requests: UI pages, then the route table."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.ui = Ui(ctx)

    def handle(self, request: HttpRequest) -> HttpResponse:
        try:
            if not request.path.startswith(PREFIX):
                raise ApiError(404, f"no route {request.path}")
            path = request.path[len(PREFIX):]
            if path == "ui" or path.startswith("ui/"):
                return self._page(request, path[3:])
            allowed = []
            for endpoint in ENDPOINTS:
                found = endpoint.regex.match(path)
                if found:
                    if endpoint.method == request.method:
                        authorize(self.ctx, request, endpoint.method, endpoint.pattern, endpoint.role)
                        answer = endpoint.handler(self.ctx, request, found.groupdict())
                        return answer if isinstance(answer, HttpResponse) else json_response(200, answer)
                    allowed.append(endpoint.method)
            if allowed:
                raise ApiError(405, f"{request.method} is not allowed on {request.path}; use {', '.join(allowed)}")
            raise ApiError(404, f"no route {request.path}")
        except ApiError as exc:
            return json_response(exc.status, {"error": exc.message, "status": exc.status})

    def _page(self, request: HttpRequest, page: str) -> HttpResponse:
        if request.method != "GET":
            raise ApiError(405, "the UI pages are read with GET; actions go through the REST API")
        rights = rights_of(self.ctx, request)
        if rights is None:
            raise ApiError(401, "authentication required")
        user = actor_of(request)
        return self.ui.handle(page, {"user": user, "role": rights.role, "csrf": csrf_token(self.ctx, user),
                                     "query": dict(request.query)})
