"""Fixtures shared by the unit tests."""
import pytest

from courier.store.postgres import PostgresDatabase
from courier.store.store import Store


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def make_store(request, tmp_path):
    """Stores on each back-end (reopening gives another Store on the same database)."""
    opened = []

    def make(clock=None):
        if request.param == "sqlite":
            return Store(str(tmp_path / "courier.sqlite"), clock=clock or Clock())
        database = PostgresDatabase(url, clock=clock or Clock())
        opened.append(database)
        return Store(database)
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    yield make
    for database in opened:
        database.close()
