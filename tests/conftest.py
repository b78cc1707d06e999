import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT / "plugin", ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server for the whole session, started on first use."""
    from postgres import PostgresServer
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture
def pg_url(postgres):
    """A fresh, empty database of that server for one test."""
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


@pytest.fixture(scope="session")
def s3():
    """moto's S3 server on loopback, with authentication on, for the whole session, started on first use."""
    from s3 import S3Server
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3, request):
    """A fresh bucket of that server for one test."""
    import re
    name = "t-" + re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-") + f"-{id(request) % 10000}"
    s3.create_bucket(name)
    return name
