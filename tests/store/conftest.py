"""A freshly migrated store per test, on SQLite and on PostgreSQL: every store test runs on both
(the contract the server relies on, whichever database a deployment uses).

SQLite: a copy of one migrated file per module. PostgreSQL: a new database made from one migrated
template per run (tests/postgres.py starts a real server, from Debian's package)."""

import shutil

import pytest

from nsml.store.sql import open_store


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory):
    """One migrated database file per module; each test gets a copy (migrating costs ~0.2 s)."""
    path = tmp_path_factory.mktemp("template") / "nsml.db"
    open_store(f"sqlite:///{path}").close()
    return path


@pytest.fixture(scope="session")
def pg_template(postgres):
    """A migrated PostgreSQL database that each test's database is copied from."""
    postgres.sql("CREATE DATABASE nsml_template")
    open_store(postgres.url("nsml_template")).close()
    return "nsml_template"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path, migrated_db):
    if request.param == "sqlite":
        shutil.copyfile(migrated_db, tmp_path / "nsml.db")
        return f"sqlite:///{tmp_path / 'nsml.db'}"
    postgres = request.getfixturevalue("postgres")
    return postgres.new_database(template=request.getfixturevalue("pg_template"))


@pytest.fixture
def store(database_url):
    s = open_store(database_url)
    yield s
    s.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request, tmp_path):
    """An empty database, not migrated: for the migrations' own tests."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return request.getfixturevalue("postgres").new_database()

