"""What each POST route reads: its JSON schema (OpenAPI 3.0 keywords, checked by
courier.web.schema and published as the requestBody of the OpenAPI document) and the largest
body it takes, per media type. The route table (courier.web.routes) names one per endpoint.

The schemas check shapes and types, so that a wrong type is a 400 naming the field, never a 500;
what the values mean (does the node exist, is it a date range, which filters a level takes) is
checked by the handlers, which also refuse the unknown fields of the bodies they own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from courier.config.profiles import TRIAL_KEYWORDS
from courier.transfer import batch_files, batches, jobs, query
from courier.web.schema import MAX_DEPTH

KiB, MiB = 1024, 1024 * 1024


@dataclass(frozen=True)
class Body:
    """A route's body: JSON checked against `schema` (None: the route reads no JSON), at most
    `max_bytes`; and/or raw bytes of the media types in `raw`, each with its own limit."""
    schema: Optional[dict] = None
    max_bytes: int = 1 * MiB
    raw: tuple[tuple[str, int], ...] = ()

    def limit(self, media_type: str) -> tuple[int, bool]:
        """(largest body, read as JSON?) for a request of this media type."""
        raws = dict(self.raw)
        if media_type in raws:
            return raws[media_type], False
        if self.schema is None:                    # a route of raw bytes only, whatever the type says
            return max(raws.values()), False
        return self.max_bytes, True


def size_text(count: int) -> str:
    if count >= MiB and count % MiB == 0:
        return f"{count // MiB} MiB"
    if count >= KiB and count % KiB == 0:
        return f"{count // KiB} KiB"
    return f"{count} bytes"


def _string(max_length: int, description: str = "", nullable: bool = False, min_length: int = 0) -> dict:
    schema: dict[str, Any] = {"type": "string", "maxLength": max_length}
    if min_length:
        schema["minLength"] = min_length
    if nullable:
        schema["nullable"] = True
    if description:
        schema["description"] = description
    return schema


BOOLEAN = {"type": "boolean"}
ID = _string(256, "the id of a node, destination or profile of the configuration", min_length=1)
PROFILE = _string(256, "a pseudonymization profile (Courier.Pseudonymization); null: none", nullable=True)
PASSWORD = _string(1024, "at least 8 characters; never returned, logged or audited", nullable=True)
# DICOM values used as filters: 64 characters (LO, SH, UI, CS; a wildcard pattern fits), PN
# three component groups, a DA range, several CS values.
_DICOM_LENGTHS = {"PatientName": 194, "StudyDate": 17, "PatientBirthDate": 17, "ModalitiesInStudy": 256}


def _dicom(keyword: str) -> dict:
    return _string(_DICOM_LENGTHS.get(keyword, 64))


TRIAL = {"type": "object", "nullable": True, "additionalProperties": False,
         "description": "clinical trial attributes written into every instance (needs Pseudonymize)",
         "properties": {key: _string(64) for key in TRIAL_KEYWORDS}}

NOTHING = Body({"type": "object", "additionalProperties": False, "description": "nothing to say: {}"})

CONTROL_JOB = Body({"type": "object", "additionalProperties": False, "properties": {"Urgent": BOOLEAN},
                    "description": '{} for cancel, pause, resume and retry; {"Urgent": true|false} for priority'})

_FILTER_KEYS = sorted({key for keys in query.FILTERS.values() for key in keys})
QUERY = Body({"type": "object", "properties": {
    "Node": ID,
    "Nodes": {"type": "array", "minItems": 1, "maxItems": query.MAX_NODES, "items": ID,
              "description": "several nodes asked at once (instead of Node); each answer carries its Node"},
    "Level": _string(16, f"{', '.join(query.LEVELS)} (default STUDY)"),
    "Filters": {"type": "object", "description": "DICOM keyword -> value; the keywords a level takes: " +
                "; ".join(f"{level}: {', '.join(keys)}" for level, keys in query.FILTERS.items()),
                "properties": {key: _dicom(key) for key in _FILTER_KEYS},
                "additionalProperties": {"type": "string", "maxLength": 64}}}})

_ITEMS = {"type": "array", "maxItems": jobs.MAX_STUDIES,
          "description": "{StudyInstanceUID} | {AccessionNumber} | {PatientID, StudyDate?, ModalitiesInStudy?}, "
                         "each optionally with SeriesInstanceUID, Modality, SeriesDescription; StudyDate takes relative "
                         "dates (TODAY, -7d, -30d-TODAY)",
          "items": {"type": "object", "additionalProperties": False,
                    "properties": {key: _dicom(key) for key in jobs.ITEM_KEYS}}}

JOB = Body({"type": "object", "required": ["Source", "Destination", "Items"], "properties": {
    "Source": ID, "Destination": ID, "Pseudonymize": PROFILE, "Urgent": BOOLEAN, "ArchivePassword": PASSWORD,
    "Trial": TRIAL, "Items": _ITEMS,
    "Modify": {"type": "object", "description": "tag changes on what is sent, before any pseudonymization: Copy, "
                                                "Replace, Set, Remove (as a route's Modify, without Script)"},
    "Transfer": {"type": "string", "enum": list(jobs.TRANSFERS),
                 "description": "Study (default): whole studies; SearchedModalities: of an item with ModalitiesInStudy, "
                                "only the series of those modalities (an item's own Transfer wins)"},
    "Start": {"type": "string", "enum": list(jobs.STARTS),
              "description": f"now (default): the job starts once its items are resolved; manual: it waits, READY, "
                             f"for POST /courier/jobs/{{id}}/start. More than {jobs.BACKGROUND_ITEMS} items, or manual, "
                             f"are resolved in the background (status QUERYING)"}}})

JOB_ITEMS = Body({"type": "object", "required": ["Items"], "additionalProperties": False, "properties": {"Items": _ITEMS},
                  "description": "more items for a job; studies it has already are left out"})

SUBSCRIPTION = Body({"type": "object", "required": ["Source", "Destination"], "properties": {
    "Name": _string(64, nullable=True), "Source": ID, "Destination": ID, "Pseudonymize": PROFILE, "Trial": TRIAL,
    "Urgent": BOOLEAN,
    "Query": {"type": "object", "description": "STUDY-level filters sent to the source (those of /courier/query but "
                                              "StudyDate, which the subscription sets)",
              "properties": {key: _dicom(key) for key in query.FILTERS["STUDY"]},
              "additionalProperties": {"type": "string", "maxLength": 64}},
    "Match": {"type": "object", "additionalProperties": False, "description": "matched locally on the answers",
              "properties": {"StudyDescription": _string(256, "a regular expression"),
                             "SeriesDescription": _string(256, "a regular expression (any series of the study)"),
                             "Modality": {"type": "array", "maxItems": 64, "items": _string(16)}}},
    "From": _string(17, "first StudyDate of the past to transfer: YYYYMMDD or relative (-30d)", nullable=True),
    "Till": _string(17, "last StudyDate to transfer (none: go on)", nullable=True),
    "Partition": {"type": "string", "enum": ["Day", "Week"]},
    "Schedule": _string(128, "a cron expression, local time, e.g. '*/15 * * * *'", nullable=True),
    "Every": _string(16, "or an interval: 30s, 15m, 2h, 1d", nullable=True),
    "MaxStudiesPerRun": {"type": "integer", "minimum": 1, "maximum": 10000},
    "PauseBetweenStudiesSeconds": {"type": "number", "minimum": 0, "maximum": 86400},
    "OverlapDays": {"type": "integer", "minimum": 0, "maximum": 30}}})

TASKS_BULK = Body({"type": "object", "required": ["Action"], "additionalProperties": False, "properties": {
    "Action": {"type": "string", "enum": ["retry", "cancel", "priority"]},
    "Ids": {"type": "array", "maxItems": 10000, "items": {"type": "integer", "minimum": 1}},
    "Filter": {"type": "object", "additionalProperties": False, "properties": {
        "state": _string(16), "route": _string(256), "destination": _string(256),
        "since": {"type": "number"}, "until": {"type": "number"}}},
    "Priority": {"type": "integer", "minimum": -1000, "maximum": 1000}},
    "description": "Ids, or Filter (all matching); Priority with Action priority"})

SUBSCRIPTION_EDIT = Body({**SUBSCRIPTION.schema, "required": [],
                          "description": "the body of create; Source ... Partition left out stay as they are"})

_BATCH_FIELDS = {
    "File": {"type": "string", "format": "byte", "minLength": 1, "description": "the CSV or XLSX file, base64-encoded"},
    "FileName": _string(255, nullable=True), "Kind": {"type": "string", "enum": list(batch_files.KINDS)},
    "Source": ID, "Destination": {**ID, "nullable": True}, "Pseudonymize": PROFILE, "Trial": TRIAL,
    "Urgent": BOOLEAN, "ArchivePassword": PASSWORD, "DryRun": BOOLEAN}
BATCH = Body({"type": "object", "required": ["File", "Source"], "additionalProperties": False,   # the fields batches takes
              "properties": {name: _BATCH_FIELDS.get(name, {}) for name in batches.FIELDS}}, max_bytes=32 * MiB)

ORTHANC_ID = "^[0-9a-f]{8}(-[0-9a-f]{8}){4}$"
SEND = Body({"type": "object", "required": ["Study", "Destination"], "additionalProperties": False, "properties": {
    "Study": {"type": "string", "pattern": ORTHANC_ID, "description": "the Orthanc ID of a study of Courier's Orthanc"},
    "Destination": ID, "Pseudonymize": PROFILE}})

DICOM_FILE = ("application/dicom", 256 * MiB)
ROUTE_TEST = Body({"type": "object", "additionalProperties": False, "properties": {
    "Tags": {"type": "object", "description": "DICOM keyword -> value (as in Orthanc's simplified tags)"},
    "Draft": {"type": "object", "description": "a runtime configuration document to test instead of the one in "
                                               "force (GET /courier/config's Document, edited)"},
    "CallingAet": _string(16), "CalledAet": _string(16), "RemoteIp": _string(64)}}, raw=(DICOM_FILE,))

_CONFIG_BASE = {"type": "integer", "minimum": 1, "description": "the version the change was made from (409 when "
                                                                "another change came first); none: the latest"}
CONFIG_DOCUMENT = Body({"type": "object", "required": ["Document"], "additionalProperties": False, "properties": {
    "Document": {"type": "object", "description": "the runtime configuration: Courier (Routes, Folders, Archives, Buckets, "
                                                  "Pseudonymization, Nodes), DicomModalities, DicomWeb.Servers, "
                                                  "OrthancPeers, Scripts"},
    "Base": _CONFIG_BASE, "Comment": _string(500, nullable=True)}}, max_bytes=4 * MiB)
CONFIG_ENTRY = Body({"type": "object", "required": ["Entry"], "additionalProperties": False, "properties": {
    "Entry": {"description": "the entry as in orthanc.json (a script: its Python source)"},
    "Base": _CONFIG_BASE, "Comment": _string(500, nullable=True)}}, max_bytes=1 * MiB)
CONFIG_RESTORE = Body({"type": "object", "additionalProperties": False, "properties": {"Base": _CONFIG_BASE}})

PSEUDONYMIZE = Body(raw=(DICOM_FILE,))
LOOKUP_CSV = Body(raw=(("text/csv", 16 * MiB),))
UPLOAD_TYPES = ("application/dicom", "application/zip", "application/x-tar", "application/gzip",
                "application/x-7z-compressed", "application/octet-stream")
UPLOAD_FILE = Body(raw=tuple((media, 512 * MiB) for media in UPLOAD_TYPES))
UPLOAD_ACTION = Body({"type": "object", "additionalProperties": False, "properties": {
    "Route": _string(256, "route: the name of a route (its destinations and profile); none: as received", nullable=True),
    "Destination": _string(256, "send: where to", nullable=True), "Pseudonymize": PROFILE},
    "description": "route: {} (as received: the routes whose Match fires) or {Route}; send: {Destination, "
                   "Pseudonymize?}; discard: {}"})


def request_body(body: Body) -> dict:
    """The OpenAPI requestBody of a route."""
    content: dict[str, Any] = {}
    limits = []
    if body.schema is not None:
        content["application/json"] = {"schema": body.schema}
        limits.append(f"JSON at most {size_text(body.max_bytes)}, nested at most {MAX_DEPTH} levels")
    for media, largest in body.raw:
        content[media] = {"schema": {"type": "string", "format": "binary"}}
        limits.append(f"{media} at most {size_text(largest)}")
    if body.schema is not None:
        limits.append("a Content-Type a cross-site form cannot send is required, so {} when there is nothing to say")
    return {"required": True, "content": content, "description": "; ".join(limits)}

TRAFFIC_EVENT = Body({"type": "object", "additionalProperties": False,
                      "description": "one C-FIND Orthanc served, as Courier's Lua script posts it (no query keys), "
                                     "or the id of a C-MOVE job it served ({\"Service\": \"C-MOVE\", \"Job\"})",
                      "properties": {name: _string(64) for name in ("Service", "CallingAet", "CalledAet", "RemoteIp",
                                                                    "Level", "Job")}},
                     max_bytes=4 * KiB)
