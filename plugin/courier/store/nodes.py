"""The last echo of each node (reachable or not, when, and the message)."""
from __future__ import annotations

from courier.store.audit import write as write_audit
from courier.store.database import SQLiteDatabase
from courier.store.records import AuditEvent


class NodeStatus:
    def __init__(self, database: SQLiteDatabase) -> None:
        self.database, self.clock = database, database.clock

    def record_echo(self, node: str, ok: bool, message: str, actor: str, audit: bool = True) -> None:
        """The echo's outcome; audited when asked for (a user's echo) or when the node's state changed."""
        now = self.clock()
        with self.database.transaction() as db:
            before = db.execute("SELECT ok FROM node_status WHERE node = ?", (node,)).fetchone()
            audit = audit or before is None or bool(before[0]) != ok
            db.execute("INSERT INTO node_status (node, at, ok, message) VALUES (?, ?, ?, ?) ON CONFLICT(node)"
                       " DO UPDATE SET at = excluded.at, ok = excluded.ok, message = excluded.message",
                       (node, now, int(ok), message))
            if audit:
                write_audit(db, now, [AuditEvent("node-echoed", actor=actor, destination=node, detail={"ok": ok})])

    def statuses(self) -> dict[str, dict]:
        return {r["node"]: {"At": r["at"], "Ok": bool(r["ok"]), "Message": r["message"]}
                for r in self.database.read().execute("SELECT * FROM node_status")}
