"""The DICOM traffic log: who called Courier's Orthanc, for what, and how it ended.

Orthanc 1.10.1 shows a plugin no association, so a row is a burst: the operations of one caller
(service, calling AE, called AE, IP, status, detail) whose times are less than GAP_SECONDS apart.
`write` merges each event into the caller's latest row when it follows that row within the gap,
inside the caller's transaction: C-STOREs are written with the change cursor (counted exactly once,
kept through a kill -9), refusals with their audit line. Rows never hold a patient's name or ID:
`detail` is a refusal's reason or a C-FIND's query level.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

from courier.store.audit import write as write_audit
from courier.store.database import Database
from courier.store.records import AuditEvent, TrafficEvent

GAP_SECONDS = 5.0
COLUMNS = ("id", "first_at", "last_at", "service", "calling_aet", "called_aet", "remote_ip", "status", "operations",
           "instances", "bytes", "detail")


def write(db: Any, database: Database, events: Iterable[TrafficEvent], gap: float = GAP_SECONDS) -> None:
    """Merge `events` into the traffic table inside the caller's transaction."""
    events = list(events)
    if not events:
        return
    database.lock(db, "traffic")        # two routers merging into one caller's row: one at a time
    for e in events:
        last = e.at if e.last_at is None else max(e.at, e.last_at)
        key = (e.service, e.calling_aet or "", e.called_aet or "", e.remote_ip or "", e.status, e.detail or "")
        row = db.execute(
            "SELECT id FROM traffic WHERE service = ? AND calling_aet = ? AND called_aet = ? AND remote_ip = ?"
            " AND status = ? AND detail = ? AND last_at >= ? AND first_at <= ? ORDER BY last_at DESC LIMIT 1",
            (*key, e.at - gap, last + gap)).fetchone()
        if row is None:
            db.execute("INSERT INTO traffic (first_at, last_at, service, calling_aet, called_aet, remote_ip, status,"
                       " detail, operations, instances, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (e.at, last, *key, e.operations, e.instances, e.bytes))
        else:
            db.execute("UPDATE traffic SET first_at = CASE WHEN first_at > ? THEN ? ELSE first_at END,"
                       " last_at = CASE WHEN last_at < ? THEN ? ELSE last_at END, operations = operations + ?,"
                       " instances = instances + ?, bytes = bytes + ? WHERE id = ?",
                       (e.at, e.at, last, last, e.operations, e.instances, e.bytes, row[0]))


class Traffic:
    def __init__(self, database: Database) -> None:
        self.database, self.clock = database, database.clock

    def record(self, events: Sequence[TrafficEvent], audit: Sequence[AuditEvent] = ()) -> None:
        """Write events (and their audit lines) in one transaction."""
        with self.database.transaction() as db:
            write(db, self.database, events)
            write_audit(db, self.clock(), audit)

    def active(self, now: float, within: float = GAP_SECONDS) -> list[dict]:
        """Callers with traffic in the last `within` seconds, by service (Orthanc 1.10.1 shows a
        plugin no association: a burst still growing is the nearest there is)."""
        rows = self.database.read().execute(
            "SELECT service, calling_aet, COUNT(*) FROM traffic WHERE last_at >= ? AND status = 'accepted'"
            " GROUP BY service, calling_aet ORDER BY calling_aet", (now - within,)).fetchall()
        return [{"Service": r[0], "CallingAet": r[1], "Bursts": r[2]} for r in rows]

    def entries(self, service: Optional[str] = None, calling_aet: Optional[str] = None, status: Optional[str] = None,
                since: Optional[float] = None, until: Optional[float] = None,
                limit: int = 100, offset: int = 0) -> tuple[int, list[dict]]:
        """(total, the rows matching every filter given, latest first). A row is in [since, until)
        when its burst overlaps it."""
        where, args = [], []
        for column, op, value in (("service", "=", service), ("calling_aet", "=", calling_aet),
                                  ("status", "=", status), ("last_at", ">=", since), ("first_at", "<", until)):
            if value is not None:
                where.append(f"{column} {op} ?")
                args.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        db = self.database.read()
        total = db.execute(f"SELECT COUNT(*) FROM traffic{clause}", args).fetchone()[0]
        rows = db.execute(f"SELECT {', '.join(COLUMNS)} FROM traffic{clause} ORDER BY last_at DESC, id DESC"
                          " LIMIT ? OFFSET ?", (*args, limit, offset)).fetchall()
        return total, [dict(zip(COLUMNS, row, strict=True)) for row in rows]
