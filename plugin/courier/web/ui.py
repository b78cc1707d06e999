"""The bundled web UI under /courier/ui/: jinja2 templates from web/templates (autoescaped), a
little plain JavaScript from web/static. Every link is relative, so the UI works behind a reverse
proxy under any sub-path. Pages read the same store the REST API reads; buttons call the REST API.
"""
from __future__ import annotations

import json
import mimetypes
import os
import time
from typing import Any, Optional
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape

from courier import VERSION
from courier.errors import ApiError
from courier.host import HttpResponse
from courier.store.records import STATES, TRAFFIC_SERVICES, TRAFFIC_STATUSES
from courier.transfer import jobs
from courier.transfer.query import FILTERS
from courier.web import api_completion, api_config, api_routes, api_subscriptions, api_traffic
from courier.web.http import Context, int_param

REPO_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
WEB_DIR = os.path.join(REPO_DIR, "web")
STATIC = {"courier.css", "job.js", "explorer.js", "actions.js", "send.js", "routes.js", "batch.js", "subscriptions.js",
          "upload.js", "tasks.js",
          "dashboard.js", "theme.js", "config.js"}
TRAFFIC_PAGE = 100          # rows per page of the Traffic page


class Ui:
    def __init__(self, ctx: Context, web_dir: str = WEB_DIR) -> None:
        self.ctx = ctx
        self.env = Environment(loader=FileSystemLoader(os.path.join(web_dir, "templates")),
                               autoescape=select_autoescape(["html"]))
        self.static_dir = os.path.join(web_dir, "static")

    def handle(self, page: str, context: dict) -> HttpResponse:
        """`page` is the path below /courier/ui/ ("", "jobs", "jobs/3", "static/x")."""
        if page.startswith("static/"):
            return self._static(page[len("static/"):])
        root = "../" * page.count("/")
        context = dict(context, root=root)
        if page == "":
            return self._render("dashboard.html", context, **self._dashboard(),
                                can_force=context["role"] in ("operator", "admin"))
        if page == "jobs":
            _, rows = self.ctx.store.jobs.list(500, 0)
            summaries = [jobs.summary(j, time.time(), self.ctx.config) for j in rows]
            wanted = context["query"].get("status") or ""
            by = context["query"].get("by") or ""
            shown = [j for j in summaries if (not wanted or j["Status"] == wanted) and (not by or j["CreatedBy"] == by)]
            return self._render("jobs.html", context, jobs=shown, status=wanted, by=by,
                                imports=[dict(i, LastAt=_when(i["LastAt"]) if i["LastAt"] else "")
                                         for i in (self.ctx.watcher.status() if self.ctx.watcher else [])],
                                statuses=("QUERYING", "READY", "PENDING", "RUNNING", "WAITING_FOR_WINDOW", "UNREACHABLE",
                                          "PAUSED", "SUCCESS", "WARNING", "FAILURE", "CANCELED"))
        if page == "explorer":
            config = self.ctx.config
            return self._render("explorer.html", context,
                                nodes=[n for n, node in config.nodes.items() if node.kind in ("dicom", "dicomweb")],
                                destinations=sorted(config.destinations), profiles=sorted(config.profiles),
                                filters={level: list(keys) for level, keys in FILTERS.items()})
        if page == "upload":
            if context["role"] not in ("operator", "admin"):
                raise ApiError(403, "uploading needs the operator role")
            config = self.ctx.config
            return self._render("upload.html", context, destinations=sorted(config.destinations),
                                profiles=sorted(config.profiles))
        if page == "subscriptions":
            config = self.ctx.config
            return self._render("subscriptions.html", context,
                                subscriptions=[api_subscriptions.summary(self.ctx, s)
                                               for s in self.ctx.store.subscriptions.list()],
                                sources=[n for n, node in config.nodes.items() if node.kind in ("dicom", "dicomweb")],
                                destinations=sorted(config.destinations), profiles=sorted(config.profiles),
                                can_edit=context["role"] in ("operator", "admin"))
        if page == "config":
            return self._config(context)
        if page == "nodes":
            config = self.ctx.config
            return self._render("nodes.html", context, nodes=list(config.nodes.values()), settings=config.node_settings,
                                windows={n: _windows_text(s.windows) for n, s in config.node_settings.items()},
                                echoes=self.ctx.store.nodes.statuses(), can_echo=context["role"] in ("operator", "admin"))
        if page == "routes":
            return self._render("routes.html", context, routes=api_routes.routes(self.ctx),
                                can_test=context["role"] in ("operator", "admin"))
        if page == "batch":
            config = self.ctx.config
            return self._render("batch.html", context,
                                sources=[n for n, node in config.nodes.items() if node.kind in ("dicom", "dicomweb")],
                                destinations=sorted(config.destinations), profiles=sorted(config.profiles))
        if page == "send":
            return self._send(context)
        if page == "audit":
            return self._audit(context)
        if page == "traffic":
            return self._traffic(context)
        if page == "quarantine":
            _, entries = self.ctx.store.quarantine.list(200, 0)
            for entry in entries:
                entry["when"] = _when(entry["at"])
            return self._render("quarantine.html", context, entries=entries, is_admin=context["role"] == "admin")
        if page == "tasks":
            return self._tasks(context)
        if page.startswith("tasks/") and page[6:].isdigit():
            return self._task(int(page[6:]), context)
        if page.startswith("jobs/") and page[5:].isdigit():
            return self._job(int(page[5:]), context)
        raise ApiError(404, f"no page /courier/ui/{page}")

    def _send(self, context: dict) -> HttpResponse:
        study = context["query"].get("study", "")
        try:
            tags = self.ctx.rest.get_json(f"/studies/{study}")["MainDicomTags"] if study else None
            tags.update(self.ctx.rest.get_json(f"/studies/{study}/patient")["MainDicomTags"])
        except Exception:  # noqa: BLE001 - any failure: the study is not there
            tags = None
        if tags is None:
            raise ApiError(404, f"no study {study!r} in Courier's Orthanc")
        config = self.ctx.config
        return self._render("send.html", context, study=study, tags=tags, destinations=sorted(config.destinations),
                            profiles=sorted(config.profiles), pseudonymize=context["query"].get("pseudonymize") == "1")

    def _tasks(self, context: dict) -> HttpResponse:
        query = context["query"]
        since, until = _day(query.get("from")), _day(query.get("to"))
        until = until + 86400 if until is not None else None
        filters = {"state": query.get("state") or None, "route": query.get("route") or None,
                   "destination": query.get("destination") or None}
        if filters["state"] not in (None, *STATES):
            raise ApiError(400, f"unknown state {filters['state']!r}")
        total, rows = self.ctx.store.tasks.list(limit=500, offset=0, since=since, until=until, **filters)
        tasks = [dict(t.as_json(), when=_when(t.created_at)) for t in rows]
        chosen = {k: v for k, v in {**filters, "since": since, "until": until}.items() if v is not None}
        return self._render("tasks.html", context, tasks=tasks, total=total, states=STATES,
                            routes=sorted({r.name for r in self.ctx.config.routes}), filter_json=chosen,
                            destinations=sorted(self.ctx.config.destinations), export_query=urlencode(chosen),
                            filters={**filters, "from": query.get("from") or "", "to": query.get("to") or ""},
                            retention_days=self.ctx.config.retention_days,
                            can_act=context["role"] == "admin")

    def _task(self, task_id: int, context: dict) -> HttpResponse:
        task = self.ctx.store.tasks.get(task_id)
        if task is None:
            raise ApiError(404, f"no task {task_id}")
        _, history = self.ctx.store.audit.entries(task_id=task_id, limit=200)
        for entry in history:
            entry["when"] = _when(entry["at"])
            entry["detail_text"] = ", ".join(f"{k}: {v}" for k, v in (entry["detail"] or {}).items()) \
                if isinstance(entry["detail"], dict) else str(entry["detail"] or "")
        return self._render("task.html", context, task=task.as_json(), history=list(reversed(history)),
                            missing=self.ctx.store.tasks.missing(task_id))

    def _audit(self, context: dict) -> HttpResponse:
        query = context["query"]
        since = _day(query.get("from"))
        until = _day(query.get("to"))
        until = until + 86400 if until is not None else None
        total, entries = self.ctx.store.audit.entries(query.get("action") or None, query.get("actor") or None,
                                                  since=since, until=until, node=query.get("node") or None, limit=200)
        for entry in entries:
            entry["when"] = _when(entry["at"])
        export = {k: v for k, v in (("action", query.get("action")), ("actor", query.get("actor")),
                                    ("node", query.get("node")), ("since", since), ("until", until)) if v}
        return self._render("audit.html", context, entries=entries, total=total,
                            export_query=urlencode(export), retention_days=self.ctx.config.retention_days)

    def _config(self, context: dict) -> HttpResponse:
        if context["role"] != "admin":
            raise ApiError(403, "the configuration is for admins")
        live = self.ctx.runtime
        if live is None or live.current is None:
            raise ApiError(503, "the runtime configuration is not available")
        document = live.current.document
        sections = []
        for section, path in api_config.SECTIONS.items():
            found: Any = document
            for key in path:
                found = found.get(key, {}) if isinstance(found, dict) else {}
            if section == "routes":
                rows = [{"name": r.get("Name", ""), "text": json.dumps(r), "disabled": r.get("Enabled") is False}
                        for r in (found if isinstance(found, list) else [])]
            else:
                settings = (document.get("Courier") or {}).get("Nodes") or {}
                rows = [{"name": name, "text": value if section == "scripts" else json.dumps(value),
                         "disabled": (isinstance(value, dict) and value.get("Enabled") is False) if section in (
                             "folders", "archives", "buckets") else (settings.get(name) or {}).get("Enabled") is False}
                        for name, value in (found.items() if isinstance(found, dict) else [])]
            sections.append({"id": section, "title": _TITLES[section], "entries": rows,
                             "toggles": section in ("routes", "folders", "archives", "buckets", "modalities", "dicomweb",
                                                        "peers")})
        versions = [dict(v.summary(), When=_when(v.created_at)) for v in self.ctx.store.config_versions.list(50, 0)]
        return self._render("config.html", context, version=live.version, document=document, sections=sections,
                            versions=versions, section_paths={k: list(v) for k, v in api_config.SECTIONS.items()},
                            not_applied=live.failed_version if live.failed_version > live.version else None)

    def _traffic(self, context: dict) -> HttpResponse:
        query = context["query"]
        chosen = api_traffic.filters(query)
        limit = TRAFFIC_PAGE
        offset = int_param(query.get("offset"), "offset", 0)
        total, rows = self.ctx.store.traffic.entries(**chosen, limit=limit, offset=offset)
        for row in rows:
            row["first"], row["last"] = _when(row["first_at"]), _when(row["last_at"])
        shown = {k: query[k] for k in ("service", "caller", "status", "from", "to") if query.get(k)}
        page_link = lambda at: "traffic?" + urlencode({**shown, "offset": at})  # noqa: E731
        return self._render("traffic.html", context, rows=rows, total=total, offset=offset,
                            services=TRAFFIC_SERVICES, statuses=TRAFFIC_STATUSES, filters=shown,
                            export_query=urlencode(shown),
                            previous=page_link(max(0, offset - limit)) if offset > 0 else None,
                            next=page_link(offset + limit) if offset + limit < total else None,
                            retention_days=self.ctx.config.retention_days)

    def _render(self, template: str, context: dict, **values: Any) -> HttpResponse:
        html = self.env.get_template(template).render(**context, **values)
        return HttpResponse(200, html.encode("utf-8"), "text/html; charset=utf-8")

    def _static(self, name: str) -> HttpResponse:
        if name not in STATIC:
            raise ApiError(404, f"no file {name}")
        with open(os.path.join(self.static_dir, name), "rb") as handle:
            data = handle.read()
        return HttpResponse(200, data, mimetypes.guess_type(name)[0] or "application/octet-stream")

    def _dashboard(self) -> dict:
        store = self.ctx.store
        failures = store.tasks.list(state="FAILURE", limit=10)[1] + store.tasks.list(state="WARNING", limit=10)[1]
        stats = store.tasks.destination_stats()
        idle = {"tasks": {state: 0 for state in STATES}, "delivered_instances": 0, "failed_instances": 0, "delivered_bytes": 0}
        destinations = {name: stats.get(name, idle) for name in sorted({*self.ctx.config.destinations, *stats})}
        return {"healthy": self.ctx.is_healthy(), "version": VERSION, "router": self.ctx.config.router_name,
                "queue": store.tasks.queue_depth(), "destinations": destinations,
                "echoes": store.nodes.statuses(), "failures": sorted(failures, key=lambda t: -t.id)[:10],
                "completion": api_completion.pending(self.ctx, None, {})["Pending"]}

    def _job(self, job_id: int, context: dict) -> HttpResponse:
        job = self.ctx.store.jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id}")
        summary = jobs.summary(job, time.time(), self.ctx.config)
        expected = summary["Instances"]["Expected"]
        percent = 100 if summary["Status"] == "SUCCESS" else (100 * summary["Instances"]["Delivered"] // expected
                                                              if expected else 0)
        _, tasks = self.ctx.store.tasks.list(job_id=job_id, limit=1000)
        can_control = context["role"] == "admin" or (context["role"] == "operator" and job.created_by == context["user"])
        return self._render("job.html", context, job=summary, tasks=tasks, percent=percent, can_control=can_control)


_TITLES = {"routes": "Routes", "folders": "Folder destinations", "archives": "Archive destinations",
           "buckets": "Bucket destinations (S3)", "profiles": "Pseudonymization profiles",
           "node-settings": "Node settings (Courier.Nodes)",
           "modalities": "DICOM modalities", "dicomweb": "DICOMweb servers", "peers": "Orthanc peers",
           "scripts": "Condition scripts"}


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _day(text: Optional[str]) -> Optional[float]:
    """"2024-01-31" (an <input type=date>) -> local midnight as Unix time; None if empty or malformed."""
    try:
        return time.mktime(time.strptime(text, "%Y-%m-%d")) if text else None
    except ValueError:
        return None


def _windows_text(windows: tuple) -> str:
    from courier.config.windows import DAYS
    if not windows:
        return "always"
    parts = []
    for days, start, end in windows:
        names = ",".join(DAYS[d] for d in sorted(days))
        parts.append(f"{names} {start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}")
    return "; ".join(parts)
