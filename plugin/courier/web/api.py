"""The /courier/ REST API: one route table, from which the OpenAPI document is generated.

Orthanc authenticates every request before it reaches a plugin route (RegisteredUsers,
AuthenticationEnabled), so these handlers only see allowed callers. The user name, when HTTP
Basic authentication is used, becomes the actor of audit entries.
"""
from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import hmac
import os
import secrets
import io
import json
import re
import time

import pydicom
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from courier import VERSION
from courier.config.parse import CourierConfig
from courier.web import access
from courier.transfer import batch_files as batch
from courier.transfer import batches
from courier.transfer import jobs
from courier.config.users import UserRights
from courier.transfer import query as query_module
from courier.transfer import remote
from courier.errors import ApiError, DeliveryError
from courier.orthanc_rest import OrthancRest
from courier.host import HttpRequest, HttpResponse
from courier.store.records import CANCELED, FAILURE, PENDING, RUNNING, STATES, WARNING
from courier.config.profiles import parse_lookup_csv
from courier.deid.pseudonymizer import PseudonymizationError, Pseudonymizer
from courier.config.routes import TRIGGERS
from courier.deid.ingest_gate import top_level_tags
from courier.config.match import CONTEXT_KEYS
from courier.routing.rules import evaluate
from courier.store.records import AuditEvent, NewTask
from courier.store.store import Store
from courier.web.ui import Ui

PREFIX = "/courier/"
MAX_PAGE = 1000


@dataclass(frozen=True)
class Endpoint:
    method: str
    pattern: str                   # OpenAPI-style path below /courier/, e.g. "tasks/{id}"
    handler: Callable[["Api", HttpRequest, dict], Any]
    summary: str
    query: tuple[tuple[str, str], ...] = ()   # (name, description)
    role: str = "viewer"                       # the least role that may call it (access.py)

    @property
    def regex(self) -> re.Pattern:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.pattern) + "$")


def _int(value: Optional[str], name: str, default: int, low: int = 0, high: int = 10**12) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ApiError(400, f"query parameter '{name}' must be an integer, got {value!r}") from None
    if not low <= number <= high:
        raise ApiError(400, f"query parameter '{name}' must be between {low} and {high}, got {number}")
    return number


def _user(request: HttpRequest) -> Optional[str]:
    """The HTTP Basic user Orthanc authenticated, if any."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            return base64.b64decode(header[6:]).decode("utf-8", "replace").split(":", 1)[0] or None
        except (binascii.Error, ValueError):
            pass
    return None


def _actor(request: HttpRequest) -> str:
    return _user(request) or "anonymous"


class Api:
    def __init__(self, config: CourierConfig, store: Store, is_healthy: Callable[[], bool],
                 pseudonymizers: Mapping[str, Pseudonymizer] = {}, rest: Optional[OrthancRest] = None,
                 wake_workers: Optional[Callable[[], None]] = None,
                 run_script: Optional[Callable] = None) -> None:
        self.config, self.store, self.is_healthy = config, store, is_healthy
        self.pseudonymizers, self.rest, self.wake_workers = pseudonymizers, rest, wake_workers
        self.run_script = run_script
        self.csrf_secret = secrets.token_bytes(32)
        self.ui = Ui(self)

    # -- handlers -----------------------------------------------------------------------------
    def health(self, request: HttpRequest, args: dict) -> Any:
        if not self.is_healthy():
            raise ApiError(503, "Courier is starting: workers are not running yet")
        return {"status": "ok"}

    def status(self, request: HttpRequest, args: dict) -> Any:
        return {"version": VERSION, "router": self.config.router_name, "workers": self.config.workers,
                "healthy": self.is_healthy(), "queue": self.store.queue_depth(),
                "destinations": self.store.destination_stats()}

    def routes(self, request: HttpRequest, args: dict) -> Any:
        counts = self.store.route_counts()
        return [{"Name": r.name, "Trigger": r.trigger, "Match": r.match_spec, "Condition": r.condition_script,
                 "Destinations": list(r.destinations), "DeleteAfterDelivery": r.delete_after_delivery,
                 "Priority": r.priority, "AllowedCallingAets": None if r.allowed_calling_aets is None
                 else list(r.allowed_calling_aets), "Fallback": r.fallback, "Pseudonymize": r.pseudonymize,
                 "PseudonymizeOn": r.pseudonymize_on if r.pseudonymize else None, "Tasks": counts.get(r.name, {})}
                for r in self.config.routes]

    def tasks(self, request: HttpRequest, args: dict) -> Any:
        q = request.query
        state = q.get("state") or None
        if state is not None and state not in STATES:
            raise ApiError(400, f"unknown state {state!r}; one of {', '.join(STATES)}")
        limit = _int(q.get("limit"), "limit", 100, 1, MAX_PAGE)
        offset = _int(q.get("offset"), "offset", 0)
        total, rows = self.store.tasks(state, q.get("route") or None, q.get("destination") or None, limit, offset)
        return {"total": total, "limit": limit, "offset": offset, "tasks": rows}

    def _task_id(self, args: dict) -> int:
        return _int(args["id"], "id", 0, 1)

    def task(self, request: HttpRequest, args: dict) -> Any:
        task = self.store.task(self._task_id(args))
        if task is None:
            raise ApiError(404, f"no task {args['id']}")
        return task

    def _transition(self, request: HttpRequest, args: dict, allowed: tuple, state: str, action: str) -> Any:
        task_id = self._task_id(args)
        former = self.store.set_state(task_id, allowed, state, _actor(request), action)
        if former is None:
            raise ApiError(404, f"no task {task_id}")
        if former.startswith("!"):
            raise ApiError(409, f"task {task_id} is {former[1:]}; only {', '.join(allowed)} tasks can be "
                                f"{'retried' if state == PENDING else 'cancelled'}")
        return self.store.task(task_id)

    def retry(self, request: HttpRequest, args: dict) -> Any:
        return self._transition(request, args, (FAILURE, WARNING, CANCELED), PENDING, "task-retried")

    def cancel(self, request: HttpRequest, args: dict) -> Any:
        return self._transition(request, args, (PENDING, RUNNING), CANCELED, "task-cancelled")

    def _audit_query(self, request: HttpRequest, limit: int, offset: int) -> tuple[int, list[dict]]:
        q = request.query
        times = {}
        for name in ("since", "until"):
            if q.get(name):
                try:
                    times[name] = float(q[name])
                except ValueError:
                    raise ApiError(400, f"query parameter '{name}' must be a Unix time, got {q[name]!r}") from None
        return self.store.audit_log(q.get("action") or None, q.get("actor") or None, q.get("route") or None,
                                    _int(q.get("task"), "task", 0) or None, times.get("since"), limit, offset,
                                    node=q.get("node") or None, until=times.get("until"))

    def audit(self, request: HttpRequest, args: dict) -> Any:
        limit = _int(request.query.get("limit"), "limit", 100, 1, MAX_PAGE)
        offset = _int(request.query.get("offset"), "offset", 0)
        total, rows = self._audit_query(request, limit, offset)
        return {"total": total, "limit": limit, "offset": offset, "entries": rows}

    def audit_csv(self, request: HttpRequest, args: dict) -> Any:
        _, rows = self._audit_query(request, 100000, 0)
        columns = ["id", "at", "actor", "action", "route", "destination", "resource_id", "task_id", "detail"]
        for row in rows:
            row["at"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(row["at"]))
            row["detail"] = json.dumps(row["detail"]) if row["detail"] else ""
        return HttpResponse(200, batch.to_csv(columns, rows), "text/csv; charset=utf-8")

    def test_routes(self, request: HttpRequest, args: dict) -> Any:
        """Which routes a DICOM file (application/dicom) or typed tags (JSON) would fire, and what
        each route's pseudonymization would make of it. Nothing is stored or sent."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        data = bytes(request.body or b"")
        if content_type == "application/dicom":
            try:
                tags = top_level_tags(data)
            except Exception as exc:  # noqa: BLE001 - any unreadable file
                raise ApiError(400, f"not a readable DICOM file: {type(exc).__name__}") from None
            context = {}
        else:
            body = self._body(request)
            if not isinstance(body.get("Tags", {}), dict):
                raise ApiError(400, "Tags: an object of DICOM keyword -> value")
            tags = {k: str(v) for k, v in body.get("Tags", {}).items()}
            context = {k: str(body[k]) for k in ("CallingAet", "CalledAet", "RemoteIp") if body.get(k)}
            data = None
        tags.update(context)
        fired, refused, errors = [], [], []
        for trigger in TRIGGERS:
            result = evaluate(self.config.routes, trigger, tags, self.run_script)
            fired += [r.name for r in result.fired]
            refused += [{"Route": r.name, "Reason": reason} for r, reason in result.refused]
            errors += [{"Route": r.name, "Error": error} for r, error in result.errors]
        previews = {}
        for route in self.config.routes:
            if route.name in fired and route.pseudonymize and route.pseudonymize not in previews:
                previews[route.pseudonymize] = self._preview(route.pseudonymize, data, tags)
        return {"Fired": fired, "Refused": refused, "Errors": errors, "Pseudonymized": previews}

    def _preview(self, profile: str, data: Optional[bytes], tags: Mapping[str, str]) -> dict:
        from pydicom.dataset import Dataset
        try:
            if data is not None:
                out, _ = self.pseudonymizers[profile].pseudonymize_bytes(data)
                dataset = pydicom.dcmread(io.BytesIO(out), stop_before_pixels=True)
            else:
                dataset = Dataset()
                for keyword, value in tags.items():
                    if keyword not in CONTEXT_KEYS:
                        try:
                            setattr(dataset, keyword, value)
                        except (ValueError, TypeError):
                            raise ApiError(400, f"Tags.{keyword}: not a DICOM keyword or not a valid value") from None
                dataset = self.pseudonymizers[profile].pseudonymize(dataset).dataset
        except PseudonymizationError as exc:
            return {"Refused": f"{exc.disposition}: {exc.reason}"}
        return {e.keyword: str(e.value) for e in dataset if e.keyword and e.VR not in ("SQ", "OB", "OW", "UN")}

    def send(self, request: HttpRequest, args: dict) -> Any:
        """A study stored in Courier's Orthanc, sent (optionally pseudonymized) by a durable task."""
        body = self._body(request)
        study, destination, profile = body.get("Study"), body.get("Destination"), body.get("Pseudonymize")
        if not isinstance(study, str) or not re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{8}){4}", study):
            raise ApiError(400, "Study: the Orthanc ID of a study")
        if destination not in self.config.destinations:
            raise ApiError(400, f"Destination: no destination named {destination!r}")
        if profile is not None and profile not in self.config.profiles:
            raise ApiError(400, f"Pseudonymize: no pseudonymization profile {profile!r}")
        self._check_nodes(request, send_to=destination)
        if not self._present("studies", study):
            raise ApiError(404, f"Study: no study {study} in Courier's Orthanc")
        actor = _actor(request)
        (task_id,) = self.store.enqueue([NewTask(f"manual:{actor}", destination, "Study", study, profile=profile)],
                                        [AuditEvent("manual-send", actor=actor, destination=destination, resource_id=study,
                                                    detail={"pseudonymize": profile})])
        if self.wake_workers:
            self.wake_workers()
        return self.store.task(task_id)

    def release_quarantined(self, request: HttpRequest, args: dict) -> Any:
        """An admin reviewed a quarantined instance: deliver it anyway, pseudonymized, with the
        burned-in check waived for it alone. On send: a task to the same destination. On ingest:
        the kept original, pseudonymized, is stored (and then routed as usual)."""
        entry = self.store.quarantine_entry(_int(args["id"], "id", 0, 1))
        if entry is None:
            raise ApiError(404, f"no quarantine entry {args['id']}")
        profile = entry["profile"]
        if profile not in self.pseudonymizers:
            raise ApiError(409, f"profile {profile!r} of this entry is no longer configured")
        reviewed = self.pseudonymizers[profile].reviewed()
        actor = _actor(request)
        if entry.get("file"):
            try:
                with open(entry["file"], "rb") as handle:
                    data, result = reviewed.pseudonymize_bytes(handle.read())
            except OSError as exc:
                raise ApiError(409, f"the kept original cannot be read: {exc.strerror}") from None
            except PseudonymizationError as exc:
                raise ApiError(409, f"still cannot be pseudonymized: {exc.reason}") from None
            self.rest.post_bytes("/instances", data)
            self.store.record_crosswalk(profile, [result.patient_id], result.uids)
            self.store.release_quarantined(entry["id"], actor, None)
            os.remove(entry["file"])
            return {"released": entry["id"], "stored": True}
        task = self.store.task(entry["task_id"]) if entry.get("task_id") else None
        if task is None or not entry.get("instance_id"):
            raise ApiError(409, "this entry names no task or instance to deliver")
        created = self.store.release_quarantined(entry["id"], actor, NewTask(
            f"release:{actor}", task["destination"], "Instance", entry["instance_id"], profile=profile, reviewed=True))
        if self.wake_workers:
            self.wake_workers()
        return {"released": entry["id"], "task": created[0]}

    def delete_quarantined(self, request: HttpRequest, args: dict) -> Any:
        entry = self.store.delete_quarantined(_int(args["id"], "id", 0, 1), _actor(request))
        if entry is None:
            raise ApiError(404, f"no quarantine entry {args['id']}")
        if entry.get("file") and os.path.isfile(entry["file"]):
            os.remove(entry["file"])
        return {"deleted": entry["id"]}

    def openapi(self, request: HttpRequest, args: dict) -> Any:
        return openapi_document()

    # -- transfer jobs -------------------------------------------------------------------------
    def _body(self, request: HttpRequest) -> Any:
        try:
            return json.loads(bytes(request.body or b"{}"))
        except ValueError:
            raise ApiError(400, "the body is not JSON") from None

    def create_job(self, request: HttpRequest, args: dict) -> Any:
        wanted = jobs.validate(self._body(request), self.config)
        self._check_nodes(request, query=wanted["source"], send_to=wanted["destination"])
        studies = jobs.resolve(self.rest, self.config, wanted["source"], wanted["items"])
        job_id = self.store.create_job(_actor(request), wanted["source"], wanted["destination"], wanted["profile"],
                                       wanted["urgent"], studies, wanted["archive_password"], wanted["trial"])
        if self.wake_workers:
            self.wake_workers()
        return jobs.summary(self.store.job(job_id), time.time(), self.config)

    # -- batch files ---------------------------------------------------------------------------
    def create_batch(self, request: HttpRequest, args: dict) -> Any:
        # JSON with the file in base64: Orthanc 1.10.1's HTTP server intercepts multipart/form-data.
        fields = batches.fields(self._body(request))
        file_name, data = fields["FileName"], fields["File"]
        kind, source, dry_run = fields["Kind"], fields["Source"], fields["DryRun"]
        self._check_nodes(request, query=source, send_to=fields["Destination"] if kind == "transfer" else None)
        try:
            parsed = batch.validate(batch.read_table(data, file_name or "upload"), kind)
        except ValueError as exc:
            return _json(400, {"Valid": False, "Rows": 0, "Problems": [{"line": 0, "column": "", "message": str(exc)}]})
        extra: list = []
        if kind == "transfer" and any(row.get("Pseudonym") for row in parsed.rows) and not fields["Pseudonymize"]:
            extra.append(batch.Problem(1, "Pseudonym", "a Pseudonym column needs a Pseudonymize profile"))
        if source not in self.config.nodes or self.config.nodes[source].kind not in ("dicom", "dicomweb"):
            raise ApiError(400, f"Source: {source!r} is neither a DICOM modality nor a DICOMweb server")
        if parsed.ok and not extra and kind == "transfer":
            extra += batches.check_transfer_rows(self.rest, source, parsed.rows, remote.search_of(self.config, source))
        verdict = batches.report(parsed, extra)
        if not verdict["Valid"] or dry_run:
            return _json(200 if dry_run else 400, {**verdict, "DryRun": dry_run})
        actor = _actor(request)
        if kind == "query":
            results = batches.run_query_rows(self.rest, self.config, source, parsed.rows)
            batch_id = self.store.create_batch(actor, kind, source, file_name, parsed.rows, results=results)
            return {**verdict, "DryRun": False, "Batch": batch_id, "Results": len(results)}
        wanted = jobs.validate({"Source": source, "Destination": fields["Destination"],
                                "Pseudonymize": fields["Pseudonymize"], "Trial": fields["Trial"], "Urgent": fields["Urgent"],
                                "ArchivePassword": fields["ArchivePassword"],
                                "Items": [{"StudyInstanceUID": r["StudyInstanceUID"]} for r in parsed.rows]}, self.config)
        targets = batches.targets_of(parsed.rows, self._present)
        job_id = self.store.create_job(actor, source, wanted["destination"], wanted["profile"], wanted["urgent"],
                                       targets, wanted["archive_password"], wanted["trial"])
        pseudonyms = {r["PatientID"]: r["Pseudonym"] for r in parsed.rows if r.get("Pseudonym")}
        batch_id = self.store.create_batch(actor, kind, source, file_name, parsed.rows, job_id=job_id, pseudonyms=pseudonyms)
        if self.wake_workers:
            self.wake_workers()
        return {**verdict, "DryRun": False, "Batch": batch_id, "Job": job_id}

    def _present(self, level_path: str, resource_id: str) -> bool:
        try:
            self.rest.get_json(f"/{level_path}/{resource_id}")
            return True
        except DeliveryError:
            return False

    def _batch_results(self, args: dict) -> tuple[dict, list[dict], list[str]]:
        found = self.store.batch(_int(args["id"], "id", 0, 1))
        if found is None:
            raise ApiError(404, f"no batch {args['id']}")
        if found["kind"] == "query":
            return found, found["results"] or [], batches.QUERY_RESULT_COLUMNS
        rows = batches.transfer_results(found["rows"], self.store.job_tasks_by_target(found["job_id"]))
        return found, rows, batches.TRANSFER_RESULT_COLUMNS

    def get_batch(self, request: HttpRequest, args: dict) -> Any:
        found, rows, _ = self._batch_results(args)
        return {"Id": found["id"], "Kind": found["kind"], "Source": found["source"], "File": found["file_name"],
                "Job": found["job_id"], "Rows": len(found["rows"]), "Results": len(rows),
                "Failed": len(batches.failed(found["kind"], rows)), "CreatedBy": found["created_by"]}

    def batch_export(self, request: HttpRequest, args: dict) -> Any:
        name = args["name"]
        if name not in ("results.csv", "results.xlsx", "failed.csv", "failed.xlsx"):
            raise ApiError(404, f"no export {name!r}; results.csv, results.xlsx, failed.csv or failed.xlsx")
        found, rows, columns = self._batch_results(args)
        if name.startswith("failed"):
            rows = batches.failed(found["kind"], rows)
        self.store.record(AuditEvent("batch-exported", actor=_actor(request), detail={"batch": found["id"], "file": name}))
        if name.endswith(".csv"):
            return HttpResponse(200, batch.to_csv(columns, rows), "text/csv; charset=utf-8")
        return HttpResponse(200, batch.to_xlsx(columns, rows),
                            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")

    def list_jobs(self, request: HttpRequest, args: dict) -> Any:
        limit = _int(request.query.get("limit"), "limit", 100, 1, MAX_PAGE)
        offset = _int(request.query.get("offset"), "offset", 0)
        total, rows = self.store.jobs(limit, offset)
        return {"total": total, "limit": limit, "offset": offset, "jobs": [jobs.summary(j, time.time(), self.config) for j in rows]}

    def _job(self, args: dict) -> dict:
        job = self.store.job(_int(args["id"], "id", 0, 1))
        if job is None:
            raise ApiError(404, f"no job {args['id']}")
        return job

    def get_job(self, request: HttpRequest, args: dict) -> Any:
        job = self._job(args)
        _, rows = self.store.tasks(job_id=job["id"], limit=MAX_PAGE)
        return {**jobs.summary(job, time.time(), self.config), "TaskList": rows}

    def control_job(self, request: HttpRequest, args: dict) -> Any:
        job = self._job(args)
        self._check_owner(request, job)
        action = args["action"]
        if action == "priority":
            urgent = self._body(request).get("Urgent")
            if not isinstance(urgent, bool):
                raise ApiError(400, 'Urgent: expected true or false, e.g. {"Urgent": true}')
            action = "urgent" if urgent else "normal"
        elif action not in ("cancel", "pause", "resume", "retry"):
            raise ApiError(404, f"no job action {action!r}; use cancel, pause, resume, retry or priority")
        self.store.control_job(job["id"], action, _actor(request))
        if self.wake_workers:
            self.wake_workers()
        return jobs.summary(self.store.job(job["id"]), time.time(), self.config)

    # -- nodes and queries ---------------------------------------------------------------------
    def nodes(self, request: HttpRequest, args: dict) -> Any:
        statuses = self.store.node_statuses()
        return [{"Id": node.id, "Kind": node.kind, "Aet": node.aet or None, "Host": node.host or None,
                 "Port": node.port or None, "Url": node.url or None,
                 "Capabilities": list(self.config.node_settings[node.id].capabilities),
                 "MaxResults": self.config.node_settings[node.id].max_results, "LastEcho": statuses.get(node.id)}
                for node in self.config.nodes.values()]

    def _node(self, node_id: str, capability: Optional[str] = None):
        node = self.config.nodes.get(node_id)
        if node is None:
            raise ApiError(404, f"no node {node_id!r}; see GET /courier/nodes")
        if capability and capability not in self.config.node_settings[node_id].capabilities:
            raise ApiError(409, f"node {node_id!r} does not offer {capability} (Courier.Nodes.{node_id}.Capabilities)")
        return node

    def echo(self, request: HttpRequest, args: dict) -> Any:
        node = self._node(args["id"])
        self._check_nodes(request, query=node.id)
        ok, message = remote.echo(self.rest, node.id, node.kind)
        self.store.record_echo(node.id, ok, message, _actor(request))
        return {"Id": node.id, "Ok": ok, "Message": message}

    def query(self, request: HttpRequest, args: dict) -> Any:
        try:
            body = json.loads(bytes(request.body or b"{}"))
        except ValueError:
            raise ApiError(400, "the body is not JSON") from None
        node_id, level, filters = query_module.validate(body)
        self._check_nodes(request, query=node_id)
        node = self._node(node_id, "QIDO" if self.config.nodes.get(node_id) and self.config.nodes[node_id].kind == "dicomweb"
                          else "C-FIND")
        if node.kind == "peer":
            raise ApiError(409, f"node {node_id!r} is an Orthanc peer; query a DICOM modality or a DICOMweb server")
        try:
            result = remote.find(self.rest, node.id, level, filters, self.config.node_settings[node.id].max_results,
                                 search=remote.search_of(self.config, node.id))
        except DeliveryError as exc:
            raise ApiError(502, f"C-FIND on {node_id}: {exc}") from None
        self.store.record(AuditEvent("query", actor=_actor(request), destination=node_id,
                                     detail={"level": level, "filters": sorted(filters), "answers": len(result["Answers"])}))
        return {"Node": node_id, "Level": level, "Count": len(result["Answers"]), **result}

    def _pseudonymizer(self, name: Optional[str]) -> Pseudonymizer:
        if not name:
            raise ApiError(400, "query parameter 'profile' is required")
        if name not in self.pseudonymizers:
            raise ApiError(404, f"no pseudonymization profile {name!r}; configured: {', '.join(self.pseudonymizers) or 'none'}")
        return self.pseudonymizers[name]

    def pseudonymize(self, request: HttpRequest, args: dict) -> Any:
        # Orthanc 1.10.1 gives plugins the query string of GET requests only: the profile is in the path.
        pseudonymizer = self._pseudonymizer(args.get("profile") or request.query.get("profile"))
        if not request.body:
            raise ApiError(400, "send one DICOM instance as the request body")
        try:
            data, result = pseudonymizer.pseudonymize_bytes(bytes(request.body))
        except PseudonymizationError as exc:
            raise ApiError(422, f"{exc.disposition}: {exc.reason}") from None
        return HttpResponse(200, data, "application/dicom",
                            {"X-Courier-Dates-Shifted": str(result.dates_shifted),
                             "X-Courier-Dates-Removed": str(result.dates_removed)})

    def quarantine(self, request: HttpRequest, args: dict) -> Any:
        limit = _int(request.query.get("limit"), "limit", 100, 1, MAX_PAGE)
        offset = _int(request.query.get("offset"), "offset", 0)
        total, rows = self.store.quarantined(limit, offset)
        return {"total": total, "limit": limit, "offset": offset, "entries": rows}

    def _crosswalk(self, request: HttpRequest, args: dict, kind: str, header: tuple[str, str]) -> Any:
        self._pseudonymizer(args["profile"])
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(self.store.crosswalk(args["profile"], kind))
        self.store.record(AuditEvent("crosswalk-exported", actor=_actor(request),
                                     detail={"profile": args["profile"], "kind": kind}))
        return HttpResponse(200, out.getvalue().encode(), "text/csv; charset=utf-8")

    def upload_lookup(self, request: HttpRequest, args: dict) -> Any:
        self._pseudonymizer(args["profile"])
        try:
            rows = parse_lookup_csv(bytes(request.body).decode("utf-8-sig"), "uploaded file")
        except UnicodeDecodeError:
            raise ApiError(400, "uploaded file: not UTF-8 text") from None
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        count = self.store.load_lookup(args["profile"], rows)
        self.store.record(AuditEvent("lookup-uploaded", actor=_actor(request),
                                     detail={"profile": args["profile"], "rows": count}))
        return {"profile": args["profile"], "rows": count}

    def patid_mapping(self, request: HttpRequest, args: dict) -> Any:
        return self._crosswalk(request, args, "patients", ("old_patient_id", "new_patient_id"))

    def uid_mapping(self, request: HttpRequest, args: dict) -> Any:
        return self._crosswalk(request, args, "uids", ("old_uid", "new_uid"))

    # -- access --------------------------------------------------------------------------------
    def _rights(self, request: HttpRequest) -> Optional[UserRights]:
        return self.config.access.rights(_user(request))

    def _authorize(self, request: HttpRequest, endpoint: "Endpoint") -> None:
        rights = self._rights(request)
        if rights is None:
            raise ApiError(401, "authentication required")
        if endpoint.method != "GET":
            # A cross-site <form> can only send these content types (no CORS preflight), with the
            # browser's cached Basic credentials: refusing them is the CSRF protection.
            token = request.headers.get("x-courier-csrf")
            if token is not None and not hmac.compare_digest(token, self.csrf_token(_actor(request))):
                raise ApiError(403, "the CSRF token does not belong to this user; reload the page")
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if content_type in ("", "application/x-www-form-urlencoded", "multipart/form-data", "text/plain"):
                raise ApiError(415, f"{endpoint.method} /courier/{endpoint.pattern} needs a Content-Type such as "
                                    "application/json (form content types are refused against cross-site requests)")
        if not access.allows(rights, endpoint.role):
            raise ApiError(403, f"{endpoint.method} /courier/{endpoint.pattern} needs the {endpoint.role} role; "
                                f"{_actor(request)} is {rights.role}")

    def csrf_token(self, user: str) -> str:
        return hmac.new(self.csrf_secret, user.encode(), hashlib.sha256).hexdigest()

    def _page(self, request: HttpRequest, page: str) -> HttpResponse:
        if request.method != "GET":
            raise ApiError(405, "the UI pages are read with GET; actions go through the REST API")
        rights = self._rights(request)
        if rights is None:
            raise ApiError(401, "authentication required")
        user = _actor(request)
        return self.ui.handle(page, {"user": user, "role": rights.role, "csrf": self.csrf_token(user),
                                     "query": dict(request.query)})

    def _check_nodes(self, request: HttpRequest, query: Optional[str] = None, send_to: Optional[str] = None) -> None:
        rights = self._rights(request)
        if query and not access.may_query(rights, query):
            raise ApiError(403, f"{_actor(request)} may not query {query!r} (Courier.Users.{_actor(request)}.MayQuery)")
        if send_to and not access.may_send_to(rights, send_to):
            raise ApiError(403, f"{_actor(request)} may not send to {send_to!r} (Courier.Users.{_actor(request)}.MaySendTo)")

    def _check_owner(self, request: HttpRequest, job: dict) -> None:
        rights = self._rights(request)
        if rights.role != "admin" and job["created_by"] != _actor(request):
            raise ApiError(403, f"job {job['id']} belongs to {job['created_by']}; only its owner or an admin may change it")

    # -- dispatch -----------------------------------------------------------------------------
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
                        self._authorize(request, endpoint)
                        answer = endpoint.handler(self, request, found.groupdict())
                        return answer if isinstance(answer, HttpResponse) else _json(200, answer)
                    allowed.append(endpoint.method)
            if allowed:
                raise ApiError(405, f"{request.method} is not allowed on {request.path}; use {', '.join(allowed)}")
            raise ApiError(404, f"no route {request.path}")
        except ApiError as exc:
            return _json(exc.status, {"error": exc.message, "status": exc.status})


def _json(status: int, body: Any) -> HttpResponse:
    return HttpResponse(status, json.dumps(body, default=str).encode())


_PAGING = (("limit", "page size (1-1000, default 100)"), ("offset", "rows to skip"))

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "health", Api.health, "200 once the workers and the change follower run, else 503"),
    Endpoint("GET", "status", Api.status, "Version, queue depth by state, per-destination counts"),
    Endpoint("GET", "routes", Api.routes, "The configured routes with task counts by state"),
    Endpoint("GET", "tasks", Api.tasks, "Tasks, newest first",
             (("state", "PENDING, RUNNING, SUCCESS, WARNING, FAILURE or CANCELED"), ("route", "route name"),
              ("destination", "destination id")) + _PAGING),
    Endpoint("GET", "tasks/{id}", Api.task, "One task, with the SOP Instance UIDs still missing"),
    Endpoint("POST", "tasks/{id}/retry", Api.retry, "Put a FAILURE, WARNING or CANCELED task back in the queue",
             role="admin"),
    Endpoint("POST", "tasks/{id}/cancel", Api.cancel, "Cancel a PENDING or RUNNING task", role="admin"),
    Endpoint("GET", "audit", Api.audit, "The audit trail, newest first",
             (("action", "e.g. task-delivered, instance-rejected"), ("actor", "user or calling AE"),
              ("route", "route name"), ("task", "task id"), ("node", "destination or node id"),
              ("since", "Unix time"), ("until", "Unix time")) + _PAGING),
    Endpoint("POST", "pseudonymize/{profile}", Api.pseudonymize,
             "Pseudonymize the DICOM instance in the body with a profile and return it (to try a profile)",
             role="operator"),
    Endpoint("GET", "quarantine", Api.quarantine, "Instances refused or quarantined, with the reason", _PAGING),
    Endpoint("GET", "crosswalk/{profile}/patid_mapping.csv", Api.patid_mapping,
             "CSV old_patient_id,new_patient_id of a profile (honest-broker crosswalk)", role="admin"),
    Endpoint("GET", "crosswalk/{profile}/uid_mapping.csv", Api.uid_mapping, "CSV old_uid,new_uid of a profile",
             role="admin"),
    Endpoint("POST", "crosswalk/{profile}/lookup", Api.upload_lookup,
             "Add rows (CSV with PatientID,Pseudonym columns) to a profile's lookup table", role="admin"),
    Endpoint("GET", "nodes", Api.nodes, "The nodes of Orthanc's registries, with capabilities and last echo"),
    Endpoint("POST", "nodes/{id}/echo", Api.echo, "C-ECHO a DICOM node (or call a DICOMweb server) and record the result",
             role="operator"),
    Endpoint("POST", "query", Api.query,
             'C-FIND on a node: {"Node", "Level": PATIENT|STUDY|SERIES, "Filters": {keyword: value}}; answers re-filtered',
             role="operator"),
    Endpoint("POST", "jobs", Api.create_job,
             'Transfer job: {"Source", "Destination", "Pseudonymize"?, "Urgent"?, "Items": [{"StudyInstanceUID"} | '
             '{"AccessionNumber"} | {"PatientID", "StudyDate"?, "ModalitiesInStudy"?}]}', role="operator"),
    Endpoint("POST", "jobs/batch", Api.create_batch,
             'Batch file as JSON {"File": base64 CSV/XLSX, "FileName", "Kind": transfer|query, "Source", "Destination", '
             '"Pseudonymize", "Urgent", "ArchivePassword", "DryRun"}; validated whole first, errors by line and column',
             role="operator"),
    Endpoint("GET", "batches/{id}", Api.get_batch, "A batch: rows, results, failed rows, its job"),
    Endpoint("GET", "batches/{id}/{name}", Api.batch_export,
             "results.csv, results.xlsx, failed.csv or failed.xlsx of a batch", role="operator"),
    Endpoint("GET", "jobs", Api.list_jobs, "Transfer jobs with status and progress, newest first", _PAGING),
    Endpoint("GET", "jobs/{id}", Api.get_job, "One job: status, progress (instances, bytes, rate, ETA) and its tasks"),
    Endpoint("POST", "jobs/{id}/{action}", Api.control_job,
             'cancel | pause | resume | retry (failed tasks) | priority ({"Urgent": true|false}); own jobs, or admin',
             role="operator"),
    Endpoint("GET", "audit.csv", Api.audit_csv, "The audit trail as CSV, with the filters of /courier/audit",
             (("action", "action"), ("actor", "user or calling AE"), ("node", "destination or node id"),
              ("since", "Unix time"), ("until", "Unix time"))),
    Endpoint("POST", "routes/test", Api.test_routes,
             'Rule tester: a DICOM file (application/dicom) or {"Tags": {...}, "CallingAet"?} -> routes that fire, '
             'refusals, and each profile\'s result; nothing is stored or sent', role="operator"),
    Endpoint("POST", "send", Api.send,
             'Send a study of Courier\'s Orthanc: {"Study": Orthanc ID, "Destination", "Pseudonymize"?}', role="operator"),
    Endpoint("POST", "quarantine/{id}/release", Api.release_quarantined,
             "Deliver a reviewed quarantined instance anyway, pseudonymized, burned-in check waived", role="admin"),
    Endpoint("POST", "quarantine/{id}/delete", Api.delete_quarantined,
             "Forget a quarantine entry and delete the original it kept", role="admin"),
    Endpoint("GET", "openapi.json", Api.openapi, "This document"),
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
