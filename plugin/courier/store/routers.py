"""The routers that share this database, by name and incarnation (one start of the process), with
a heartbeat from the database's clock: a second live router under a name refuses to start (the
first holds the name, see register), and the work of one whose heartbeat stopped is taken over by
the others."""
from __future__ import annotations

from typing import Optional

from courier.store.audit import write as write_audit
from courier.store.database import Database
from courier.store.records import AuditEvent


def lease_free(table: str, now: float, stale_after: Optional[float]) -> tuple[str, tuple[float, ...]]:
    """SQL, and its parameters: the lease of a row of `table` (its lease_owner, lease_until) is
    free. It is once it expired, and also (with `stale_after`, the heartbeat timeout) once the
    router that took it is gone: its heartbeat is older than that, it stopped, or it started again
    since (another incarnation). A lease lasts as long as a run may (minutes); a router killed in
    the middle of one must not hold it that long. Owners are `<incarnation>:<thread>`,
    incarnations `<router name>:...`."""
    expired = f"{table}.lease_until IS NULL OR {table}.lease_until < ?"
    if stale_after is None:
        return f"({expired})", (now,)
    return (f"({expired} OR EXISTS (SELECT 1 FROM routers r"
            f" WHERE substr({table}.lease_owner, 1, length(r.name) + 1) = r.name || ':'"
            f" AND (substr({table}.lease_owner, 1, length(r.incarnation) + 1) <> r.incarnation || ':'"
            f" OR r.heartbeat_at < ?)))"), (now, now - stale_after)


class Routers:
    def __init__(self, database: Database) -> None:
        self.database, self.clock = database, database.clock

    def register(self, name: str, incarnation: str) -> Optional[str]:
        """Record this router's start; the reason it must not start, if another live one has its name.

        Liveness is a lock the database holds for the other process (`Database.hold`), not its
        heartbeat: a router restarted at once after kill -9 gets its name back, a twin never does."""
        now = self.clock()
        if not self.database.hold(f"router:{name}"):
            row = self.database.read().execute("SELECT heartbeat_at FROM routers WHERE name = ?", (name,)).fetchone()
            age = f"; its heartbeat is {now - row['heartbeat_at']:.0f} s old" if row is not None else ""
            return (f"another router named {name!r} is running (it holds the name on the database{age}); "
                    f"give this one another Courier.RouterName, or stop the other")
        with self.database.transaction() as db:
            db.execute("INSERT INTO routers (name, incarnation, started_at, heartbeat_at) VALUES (?, ?, ?, ?)"
                       " ON CONFLICT (name) DO UPDATE SET incarnation = excluded.incarnation,"
                       " started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at",
                       (name, incarnation, now, now))
            write_audit(db, now, [AuditEvent("router-started", actor=name, detail={"incarnation": incarnation})])
        return None

    def heartbeat(self, name: str, incarnation: str) -> None:
        with self.database.transaction() as db:
            db.execute("UPDATE routers SET heartbeat_at = ? WHERE name = ? AND incarnation = ?",
                       (self.clock(), name, incarnation))

    def stopped(self, name: str, incarnation: str) -> None:
        """A graceful stop: the name is free at once."""
        with self.database.transaction() as db:
            db.execute("UPDATE routers SET heartbeat_at = 0 WHERE name = ? AND incarnation = ?", (name, incarnation))

    def all(self) -> list[dict]:
        now = self.clock()
        return [{"Name": r["name"], "Incarnation": r["incarnation"], "StartedAt": r["started_at"],
                 "HeartbeatAgeSeconds": round(now - r["heartbeat_at"], 1)}
                for r in self.database.read().execute("SELECT * FROM routers ORDER BY name").fetchall()]
