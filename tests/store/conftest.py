"""A freshly migrated SQLite store per test, copied from one migrated file per module."""

import shutil

import pytest

from nsml.store.sql import open_store


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory):
    """One migrated database file per module; each test gets a copy (migrating costs ~0.2 s)."""
    path = tmp_path_factory.mktemp("template") / "nsml.db"
    open_store(f"sqlite:///{path}").close()
    return path


@pytest.fixture
def store(tmp_path, migrated_db):
    shutil.copyfile(migrated_db, tmp_path / "nsml.db")
    s = open_store(f"sqlite:///{tmp_path / 'nsml.db'}")
    yield s
    s.close()
