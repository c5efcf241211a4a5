"""Engines and schema migrations (Alembic), for SQLite files and PostgreSQL URLs alike."""

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.sql import Executable

MIGRATIONS = Path(__file__).parent / "migrations"


def binary(statement: Executable) -> Executable:
    """The statement, its rows fetched in PostgreSQL's binary format; unchanged on SQLite.

    psycopg asks for text results by default, in which a bytea travels hex-encoded (twice its
    size) and is decoded at the client: the 14,700 block rows of a 150-series graph (read a row
    a chunk) took ~100 ms to fetch that way and ~60 ms binary, a 100k-point column ~1.6x as
    long. The values come back as the same Python types either way; only the wire format differs. Statements without
    blobs keep text: there it makes no difference worth a second path."""
    return statement.execution_options(nsml_binary=True)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # WAL: readers never wait for the writer
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.driver == "psycopg":

        @event.listens_for(engine, "before_cursor_execute")
        def _binary_results(_conn, cursor, _statement, _parameters, context, _many):
            # SQLAlchemy makes a cursor per statement (a named one when streaming), and
            # psycopg reads its `format` when executing: it applies to this statement alone.
            if context is not None and context.execution_options.get("nsml_binary"):
                from psycopg.pq import Format

                cursor.format = Format.BINARY

    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (creates it on an empty database)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
