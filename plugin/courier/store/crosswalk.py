"""The pseudonymization crosswalk (original -> pseudonym per patient, original -> new per UID, per
profile) and the lookup tables of profiles whose pseudonyms come from a list. Holds original
identifiers: only the crosswalk exports and the pseudonymizer read it."""
from __future__ import annotations

from typing import Iterable, Mapping, Optional, Sequence

from courier.store.database import SQLiteDatabase


class Crosswalk:
    def __init__(self, database: SQLiteDatabase) -> None:
        self.database, self.clock = database, database.clock

    def record(self, profile: str, patients: Iterable[tuple[str, str]], uids: Mapping[str, str]) -> None:
        now = self.clock()
        with self.database.transaction() as db:
            db.executemany("INSERT INTO crosswalk_patients (profile, original, pseudonym, first_seen)"
                           " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", [(profile, o, p, now) for o, p in patients])
            db.executemany("INSERT INTO crosswalk_uids (profile, original, new) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                           [(profile, o, n) for o, n in uids.items()])

    def rows(self, profile: str, kind: str) -> list[tuple[str, str]]:
        query = {"patients": "SELECT original, pseudonym FROM crosswalk_patients WHERE profile = ? ORDER BY first_seen, original",
                 "uids": "SELECT original, new FROM crosswalk_uids WHERE profile = ? ORDER BY rowid"}[kind]
        return [(r[0], r[1]) for r in self.database.read().execute(query, (profile,))]

    def load_lookup(self, profile: str, rows: Sequence[tuple[str, str]]) -> int:
        """Add or replace (PatientID, pseudonym) rows of a profile's lookup table."""
        with self.database.transaction() as db:
            db.executemany("INSERT INTO lookup_patients (profile, original, pseudonym) VALUES (?, ?, ?)"
                           " ON CONFLICT(profile, original) DO UPDATE SET pseudonym = excluded.pseudonym",
                           [(profile, o, p) for o, p in rows])
        return len(rows)

    def lookup_pseudonym(self, profile: str, original: str) -> Optional[str]:
        row = self.database.read().execute("SELECT pseudonym FROM lookup_patients WHERE profile = ? AND original = ?",
                                 (profile, original)).fetchone()
        return None if row is None else row[0]

    def pseudonym_of(self, profile: str, original: str) -> Optional[str]:
        row = self.database.read().execute("SELECT pseudonym FROM crosswalk_patients WHERE profile = ? AND original = ?",
                                 (profile, original)).fetchone()
        return None if row is None else row[0]
