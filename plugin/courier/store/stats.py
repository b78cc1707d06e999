"""The dashboard's hourly time series (stats_hourly): instances received (counted by the change
follower with its cursor), and per finished hour the tasks delivered and failed, bytes, and the
latency from a task's creation to its delivery (p50, p95), rolled up from the tasks table; rows
older than RETENTION_DAYS are pruned."""
from __future__ import annotations

from typing import Sequence

from courier.store.database import Database
from courier.store.records import FAILURE, SUCCESS, WARNING

RETENTION_DAYS = 31
ROLLED = ("delivered", "failed", "bytes", "latency_p50", "latency_p95")


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


class Stats:
    def __init__(self, database: Database) -> None:
        self.database, self.clock = database, database.clock

    def rollup(self, hours: int = 2) -> None:
        """Recompute the last `hours` hours (the current one included) from the tasks; prune the old."""
        now = self.clock()
        current = int(now // 3600)
        first = current - hours + 1
        rows = self.database.read().execute(
            "SELECT finished_at, created_at, state, bytes FROM tasks WHERE finished_at >= ? AND state IN (?, ?, ?)",
            (first * 3600, SUCCESS, WARNING, FAILURE)).fetchall()
        by_hour: dict[int, dict] = {h: {"delivered": 0, "failed": 0, "bytes": 0, "latency": []}
                                    for h in range(first, current + 1)}
        for finished, created, state, size in rows:
            entry = by_hour.setdefault(int(finished // 3600), {"delivered": 0, "failed": 0, "bytes": 0, "latency": []})
            entry["bytes"] += size or 0
            if state == SUCCESS:
                entry["delivered"] += 1
                entry["latency"].append(finished - created)
            else:
                entry["failed"] += 1
        with self.database.transaction() as db:
            for hour, entry in by_hour.items():
                values = {"delivered": entry["delivered"], "failed": entry["failed"], "bytes": entry["bytes"],
                          "latency_p50": percentile(entry["latency"], 0.5),
                          "latency_p95": percentile(entry["latency"], 0.95)}
                db.executemany("INSERT INTO stats_hourly (hour, name, value) VALUES (?, ?, ?) ON CONFLICT (hour, name)"
                               " DO UPDATE SET value = excluded.value", [(hour, k, v) for k, v in values.items()])
            db.execute("DELETE FROM stats_hourly WHERE hour < ?", (current - RETENTION_DAYS * 24,))

    def hourly(self, hours: int = 24) -> list[dict]:
        """The last `hours` hours, oldest first: {"Hour": Unix time of its start, name: value...}."""
        current = int(self.clock() // 3600)
        first = current - hours + 1
        series = {h: {"Hour": h * 3600, "received": 0, **{name: 0 for name in ROLLED}} for h in range(first, current + 1)}
        for hour, name, value in self.database.read().execute(
                "SELECT hour, name, value FROM stats_hourly WHERE hour >= ?", (first,)).fetchall():
            if hour in series:
                series[hour][name] = value
        return list(series.values())

    def daily(self, days: int = 30) -> list[dict]:
        """The last `days` days (UTC), oldest first: sums, and the worst hour's latency percentiles."""
        hours = self.hourly(days * 24)
        out: dict[int, dict] = {}
        for entry in hours:
            day = int(entry["Hour"] // 86400)
            total = out.setdefault(day, {"Day": day * 86400, "received": 0, "delivered": 0, "failed": 0, "bytes": 0,
                                         "latency_p50": 0, "latency_p95": 0})
            for name in ("received", "delivered", "failed", "bytes"):
                total[name] += entry[name]
            for name in ("latency_p50", "latency_p95"):
                total[name] = max(total[name], entry[name])
        return list(out.values())[-days:]
