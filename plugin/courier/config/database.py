"""Where Courier's store lives: "Courier.DatabasePath" (SQLite, one router; the default) or
"Courier.Database" (PostgreSQL, shared by several routers), whose password comes from a file or
an environment variable, never from orthanc.json."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from courier.config.reader import Section
from courier.config.secrets import read_secret
from courier.errors import ConfigError

_URL = re.compile(r"^postgres(?:ql)?://(?P<user>[^:@/]+)?(?P<password>:[^@/]*)?@?(?P<host>[^/@]*)/(?P<database>[^/?]+)(\?.*)?$")


@dataclass(frozen=True)
class DatabaseSettings:
    url: Optional[str] = None                       # None: SQLite at path
    path: str = "courier.sqlite"
    password: Optional[str] = field(default=None, repr=False)
    pool_size: int = 10

    @property
    def kind(self) -> str:
        return "sqlite" if self.url is None else "postgresql"

    def describe(self) -> str:
        """For logs: the database without any secret."""
        return self.path if self.url is None else self.url


def parse_database(section: Section, default_path: str, base_dir: str, environ: Mapping[str, str]) -> DatabaseSettings:
    raw: Any = section.get("Database", dict, None)
    if raw is None:
        return DatabaseSettings(path=default_path)
    if "DatabasePath" in section.data:
        raise ConfigError("Courier.Database", "set either Database (PostgreSQL) or DatabasePath (SQLite), not both")
    database = Section(raw, "Courier.Database", "Courier.Database")
    url = database.get("Url", str)
    found = _URL.match(url)
    if not found:
        raise ConfigError("Courier.Database.Url", "expected postgresql://user@host:port/database",
                          "e.g. postgresql://courier@127.0.0.1:5432/courier")
    if found.group("password"):
        raise ConfigError("Courier.Database.Url", "holds a password", "keep it out of orthanc.json: set PasswordFile or "
                                                                      "PasswordEnv")
    password = None
    if "PasswordFile" in database.data or "PasswordEnv" in database.data:
        password = read_secret(database, "Courier.Database", base_dir, environ, names=("PasswordFile", "PasswordEnv"),
                               minimum=1).decode()
    return DatabaseSettings(url=url, password=password, pool_size=database.positive("PoolSize", int, 10))
