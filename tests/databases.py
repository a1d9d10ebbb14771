"""Real PostgreSQL and MariaDB for the tests: a fresh database for each test client, dropped after.

The servers are this machine's own (PostgreSQL on 127.0.0.1:5432 with trust auth, MariaDB on
127.0.0.1:3306 as root without a password); ATOMMQ_TEST_POSTGRESQL / ATOMMQ_TEST_MARIADB name
others, as SQLAlchemy URLs of a database the tests may connect to and create databases from.
"""

import os
import uuid

import sqlalchemy as sa

ADMIN_URLS = {
    "postgresql": os.environ.get(
        "ATOMMQ_TEST_POSTGRESQL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("ATOMMQ_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
KINDS = tuple(ADMIN_URLS)


def _admin(kind: str) -> sa.Engine:
    return sa.create_engine(ADMIN_URLS[kind], isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


def missing(kind: str) -> str | None:
    """Why the `kind` server cannot be used here, or None."""
    try:
        with _admin(kind).connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as error:  # a missing driver or an unreachable server alike
        return f"{kind} at {ADMIN_URLS[kind]} is not usable: {type(error).__name__}: {error}".splitlines()[0]
    return None


class Database:
    """A database of its own on the `kind` server."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = f"atommq_test_{uuid.uuid4().hex[:12]}"
        with _admin(kind).connect() as connection:
            connection.execute(sa.text(f"CREATE DATABASE {self.name}"))
        url = sa.engine.make_url(ADMIN_URLS[kind]).set(database=self.name)
        self.url = url.render_as_string(hide_password=False)

    def drop(self) -> None:
        force = " WITH (FORCE)" if self.kind == "postgresql" else ""
        with _admin(self.kind).connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS {self.name}{force}"))
