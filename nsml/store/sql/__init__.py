"""Metadata in SQL through SQLAlchemy: SQLite by default, PostgreSQL by URL."""

from .store import SqlStore, open_store

__all__ = ["SqlStore", "open_store"]
