"""The versions of the runtime configuration (config.runtime): numbered, with who, when and why.

The latest version is the configuration every router applies. A change names the version it was
made from (`base`); when another change came first, ConfigConflict is raised instead of silently
overwriting it. Versions are never edited or deleted: a restore is a new version. Beside them,
per router, the digest of the orthanc.json runtime part it last read (its seed).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

from courier.config.runtime import digest as digest_of
from courier.store.audit import write as write_audit
from courier.store.database import Database
from courier.store.records import AuditEvent

SOURCES = ("orthanc.json", "api", "restore")


class ConfigConflict(Exception):
    """The configuration changed since the version a change was made from."""

    def __init__(self, latest: int) -> None:
        super().__init__(f"the configuration is now at version {latest}")
        self.latest = latest


@dataclass(frozen=True)
class ConfigVersion:
    version: int
    created_at: float
    actor: str
    source: str                  # orthanc.json | api | restore
    comment: str
    digest: str
    document: dict

    def summary(self) -> dict:
        return {"Version": self.version, "CreatedAt": self.created_at, "Actor": self.actor, "Source": self.source,
                "Comment": self.comment, "Digest": self.digest}


def _version(row: Any) -> ConfigVersion:
    return ConfigVersion(row["version"], row["created_at"], row["actor"], row["source"], row["comment"],
                         row["digest"], json.loads(row["document"]))


class ConfigVersions:
    def __init__(self, database: Database) -> None:
        self.database, self.clock = database, database.clock

    def latest(self) -> Optional[ConfigVersion]:
        row = self.database.read().execute(
            "SELECT * FROM config_versions ORDER BY version DESC LIMIT 1").fetchone()
        return _version(row) if row else None

    def latest_number(self) -> int:
        row = self.database.read().execute("SELECT MAX(version) FROM config_versions").fetchone()
        return int(row[0] or 0)

    def get(self, version: int) -> Optional[ConfigVersion]:
        row = self.database.read().execute("SELECT * FROM config_versions WHERE version = ?", (version,)).fetchone()
        return _version(row) if row else None

    def list(self, limit: int = 100, offset: int = 0) -> list[ConfigVersion]:
        rows = self.database.read().execute(
            "SELECT * FROM config_versions ORDER BY version DESC LIMIT ? OFFSET ?", (limit, offset)).fetchall()
        return [_version(row) for row in rows]

    def seed_of(self, router: str) -> Optional[str]:
        """The digest of the orthanc.json runtime part `router` read last (None: never)."""
        row = self.database.read().execute("SELECT digest FROM config_seeds WHERE router = ?", (router,)).fetchone()
        return row[0] if row else None

    def add(self, document: dict, actor: str, source: str, comment: str = "", base: Optional[int] = None,
            changes: Optional[list] = None, seed: Optional[tuple[str, str]] = None) -> ConfigVersion:
        """Record `document` as the next version (audited with its changes). `base`: the version the
        change was made from; ConfigConflict when it is no longer the latest. An unchanged document
        is not a new version: the latest is returned. `seed`: (router, digest) of the orthanc.json
        it read, recorded in the same transaction."""
        assert source in SOURCES, source
        now = self.clock()
        digest = digest_of(document)
        with self.database.transaction() as db:
            self.database.lock(db, "config_versions")
            row = db.execute("SELECT * FROM config_versions ORDER BY version DESC LIMIT 1").fetchone()
            latest = _version(row) if row else None
            number = latest.version if latest else 0
            if base is not None and base != number:
                raise ConfigConflict(number)
            if seed is not None:
                db.execute("INSERT INTO config_seeds (router, digest, at) VALUES (?, ?, ?) ON CONFLICT (router)"
                           " DO UPDATE SET digest = excluded.digest, at = excluded.at", (*seed, now))
            if latest and latest.digest == digest:
                return latest
            db.execute("INSERT INTO config_versions (version, created_at, actor, source, comment, digest, document)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (number + 1, now, actor, source, comment, digest, json.dumps(document)))
            write_audit(db, now, [AuditEvent("config-changed", actor=actor,
                                             detail={"version": number + 1, "source": source, "comment": comment,
                                                     "changes": _paths(changes)})])
        return ConfigVersion(number + 1, now, actor, source, comment, digest, document)


def _paths(changes: Optional[list]) -> list[str]:
    """The audit names what changed, not the values (a value may be long, or a patient's name in a Match)."""
    return [f"{c['Change']} {c['Path']}" for c in (changes or [])][:200]
