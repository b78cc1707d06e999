"""The PostgreSQL back-end: several routers on one database (psycopg 3 and its pool).

The same SQL as on SQLite (`?` placeholders become psycopg's `%s`), in READ COMMITTED
transactions. What SQLite gets from running one writer at a time is made explicit here: claims
skip the rows another router holds (FOR UPDATE SKIP LOCKED) and take an advisory lock while they
count a destination's busy slots, the change cursor is compared and set under a row lock, and a
completion locks its resource. The clock is the database's (clock_timestamp()), the same for
every router. Schema steps are recorded in courier_migrations, applied under an advisory lock so
that routers starting together do not race.
"""
from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, Sequence

from courier.store.postgres_schema import STEPS

MIGRATION_LOCK = 7_411_001            # pg_advisory_lock key while the schema is brought up to date


class Row:
    """A result row readable by position and by column name, as sqlite3.Row is."""
    __slots__ = ("_names", "_values", "_index")

    def __init__(self, names: Sequence[str], values: Sequence[Any], index: dict[str, int]) -> None:
        self._names, self._values, self._index = names, values, index

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, slice)):
            return self._values[key]
        return self._values[self._index[key]]

    def keys(self) -> Sequence[str]:
        return self._names

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def row_factory(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    names = [column.name for column in cursor.description] if cursor.description else []
    index = {name: position for position, name in enumerate(names)}
    return lambda values: Row(names, values, index)


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class Result:
    """The rows of a read, fetched before its connection went back to the pool."""

    def __init__(self, rows: list, rowcount: int) -> None:
        self._rows, self.rowcount = rows, rowcount

    def fetchone(self) -> Optional[Row]:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list:
        return list(self._rows)

    def __iter__(self):
        return iter(self._rows)


class Connection:
    """A pooled connection inside a transaction, speaking the store's `?` SQL."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self._connection.execute(translate(sql), tuple(args))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        cursor = self._connection.cursor()
        rows = list(rows)
        if rows:
            cursor.executemany(translate(sql), rows)
        return cursor


class Reader:
    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Result:
        with self._pool.connection() as connection:
            cursor = connection.execute(translate(sql), tuple(args))
            return Result(cursor.fetchall() if cursor.description else [], cursor.rowcount)


class PostgresDatabase:
    SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"
    FOR_UPDATE = " FOR UPDATE"
    name = "postgresql"

    def __init__(self, url: str, password: Optional[str] = None, clock: Optional[Callable[[], float]] = None,
                 pool_size: int = 10) -> None:
        from psycopg_pool import ConnectionPool

        kwargs: dict[str, Any] = {"autocommit": True, "row_factory": row_factory}
        if password:
            kwargs["password"] = password
        self.url = url
        self._password = {"password": password} if password else {}
        self._held: list[Any] = []
        self._held_keys: dict[str, Any] = {}
        self._pool = ConnectionPool(url, kwargs=kwargs, min_size=1, max_size=pool_size, open=True,
                                    name="courier", timeout=60)
        self._reader = Reader(self._pool)
        self._clock = clock
        self._migrate()

    def _migrate(self) -> None:
        with self._pool.connection() as connection:
            connection.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                connection.execute("CREATE TABLE IF NOT EXISTS courier_migrations (name TEXT PRIMARY KEY,"
                                   " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
                done = {row[0] for row in connection.execute("SELECT name FROM courier_migrations").fetchall()}
                for name, statements in STEPS:
                    if name in done:
                        continue
                    with connection.transaction():
                        for statement in filter(str.strip, statements.split(";")):
                            connection.execute(statement)
                        connection.execute("INSERT INTO courier_migrations (name) VALUES (%s)", (name,))
            finally:
                connection.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))

    def clock(self) -> float:
        if self._clock is not None:
            return self._clock()
        return float(self._reader.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp())").fetchone()[0])

    def read(self) -> Reader:
        return self._reader

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self._pool.connection() as connection:
            with connection.transaction():
                yield Connection(connection)

    def lock(self, db: Connection, key: str) -> None:
        db.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (key,))

    def indexed_by(self, index: str) -> str:
        return ""                     # PostgreSQL's planner has statistics

    def hold(self, key: str) -> bool:
        """A session advisory lock on a connection of its own, kept open: PostgreSQL drops it when the
        connection ends, which TCP keepalives notice within about 30 s of a router's host vanishing."""
        import psycopg

        connection = psycopg.connect(self.url, autocommit=True, keepalives=1, keepalives_idle=10,
                                     keepalives_interval=5, keepalives_count=3, **self._password)
        if not connection.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()[0]:
            connection.close()
            return False
        self._held.append(connection)
        self._held_keys[key] = connection
        return True

    def holds(self, key: str) -> bool:
        """Still ours while its connection lives (a PostgreSQL restart or a lost connection drops it)."""
        connection = self._held_keys.get(key)
        if connection is None:
            return False
        try:
            connection.execute("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - any failure: the lock went with the connection
            self._held_keys.pop(key, None)
            try:
                connection.close()
            except Exception:  # noqa: BLE001
                pass
            return False

    def close(self) -> None:
        for connection in self._held:
            connection.close()
        self._held.clear()
        self._pool.close()
