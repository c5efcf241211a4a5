"""SqlStore: every read and write of metadata. Returns nsml.core entities, never ORM rows."""

import json
import threading
import time
from collections.abc import Iterable

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session as OrmSession

from nsml.core import naming
from nsml.core.entities import Dataset, FileEntry
from nsml.core.errors import AlreadyExists, Forbidden, StorageFull, not_found

from .engine import make_engine, migrate
from .accounting import AccountingMixin
from .boards import BoardsMixin
from .clicks import ClicksMixin
from .identity import IdentityMixin
from .leases import LeasesMixin
from .metrics import MetricsMixin
from .runs import RunsMixin
from .usage import UsageMixin
from .models import DatasetRow, FileRow, FilesetRow
from .sessions import SessionsMixin
from .studies import StudiesMixin
from .views import ViewsMixin


def open_store(url: str) -> "SqlStore":
    engine = make_engine(url)
    migrate(engine)
    return SqlStore(engine)


_DISK_FULL = "The server's disk filled up while saving to its database; nothing was kept. Free some space and try again."


def _is_disk_full(exc: DBAPIError) -> bool:
    """SQLite's SQLITE_FULL, or PostgreSQL's disk_full (SQLSTATE 53100)."""
    orig = exc.orig
    return (
        getattr(orig, "sqlite_errorname", None) == "SQLITE_FULL"
        or "database or disk is full" in str(orig)
        or getattr(orig, "sqlstate", None) == "53100"
    )


class _NoLock:
    """The write lock where the database takes the turns itself (PostgreSQL)."""

    def acquire(self) -> None:
        pass

    def release(self) -> None:
        pass

    def __enter__(self) -> "_NoLock":
        return self

    def __exit__(self, *exc) -> None:
        pass


class SqlStore(StudiesMixin, AccountingMixin, IdentityMixin, ViewsMixin, SessionsMixin, BoardsMixin, MetricsMixin, RunsMixin, UsageMixin, LeasesMixin,
               ClicksMixin):
    def __init__(self, engine: Engine):
        self.engine = engine
        # SQLite allows one writer at a time; taking turns here avoids "database is locked".
        # PostgreSQL needs no such turns (and several servers could not share them): its writes
        # lock the rows they check first (SELECT … FOR UPDATE), so concurrent writers serialise
        # where it matters, in this process and across servers alike.
        self._write_lock = threading.RLock() if engine.dialect.name == "sqlite" else _NoLock()

    # -- plumbing -------------------------------------------------------------------------
    def _read(self) -> OrmSession:
        return OrmSession(self.engine, expire_on_commit=False)

    class _Writer:
        def __init__(self, store: "SqlStore"):
            self.store = store

        def __enter__(self) -> OrmSession:
            self.store._write_lock.acquire()
            self.orm = OrmSession(self.store.engine, expire_on_commit=False)
            self.orm.begin()
            if self.store.engine.dialect.name == "sqlite":
                # Take SQLite's write lock now, not at the first write: a writer in another
                # process (a second store on the file) then waits instead of both reading the
                # same state and one failing at its first write. PostgreSQL locks rows instead.
                self.orm.connection().exec_driver_sql("BEGIN IMMEDIATE")
            return self.orm

        def __exit__(self, exc_type, exc, tb):
            try:
                if exc_type is None:
                    self.orm.commit()
                else:
                    self.orm.rollback()
            except DBAPIError as failed:
                self.orm.rollback()
                if _is_disk_full(failed):
                    raise StorageFull(_DISK_FULL) from failed
                raise
            finally:
                self.orm.close()
                self.store._write_lock.release()
            if isinstance(exc, DBAPIError) and _is_disk_full(exc):
                raise StorageFull(_DISK_FULL) from exc

    def _write(self) -> "_Writer":
        return SqlStore._Writer(self)

    def close(self) -> None:
        self.engine.dispose()

    # -- filesets -------------------------------------------------------------------------
    def _add_fileset(self, kind: str, entries: Iterable[FileEntry], orm: OrmSession | None = None) -> int:
        entries = list(entries)
        if orm is None:
            with self._write() as w:
                return self._add_fileset(kind, entries, w)
        fs = FilesetRow(kind=kind, size=sum(e.size for e in entries), file_count=len(entries), created=time.time())
        orm.add(fs)
        orm.flush()
        orm.add_all(FileRow(fileset_id=fs.id, path=e.path, sha256=e.sha256, size=e.size) for e in entries)
        return fs.id

    def files(self, fileset_id: int) -> list[FileEntry]:
        with self._read() as orm:
            rows = orm.scalars(select(FileRow).where(FileRow.fileset_id == fileset_id).order_by(FileRow.path))
            return [FileEntry(r.path, r.size, r.sha256) for r in rows]

    def fileset_shas(self, *fileset_ids: int | None) -> set[str]:
        """The blobs the given filesets refer to (None ids are skipped): what a removal may free."""
        ids = [i for i in fileset_ids if i is not None]
        if not ids:
            return set()
        with self._read() as orm:
            return set(orm.scalars(select(FileRow.sha256).where(FileRow.fileset_id.in_(ids)).distinct()))

    def shas_in_use(self, shas: Iterable[str]) -> set[str]:
        """Those of shas that some file (of a dataset, code, checkpoint or outputs) refers to."""
        shas = list(shas)
        used: set[str] = set()
        with self._read() as orm:
            for i in range(0, len(shas), 500):
                batch = shas[i:i + 500]
                used |= set(orm.scalars(select(FileRow.sha256).where(FileRow.sha256.in_(batch)).distinct()))
        return used

    def _drop_fileset(self, orm: OrmSession, fileset_id: int | None) -> None:
        if fileset_id is not None:
            orm.execute(delete(FileRow).where(FileRow.fileset_id == fileset_id))
            orm.execute(delete(FilesetRow).where(FilesetRow.id == fileset_id))

    # -- datasets -------------------------------------------------------------------------
    @staticmethod
    def _dataset(row: DatasetRow, fs: FilesetRow, grants: tuple[str, ...] = ()) -> Dataset:
        return Dataset(
            name=row.name, owner=row.owner, description=row.description, private=row.private,
            size=fs.size, file_count=fs.file_count, created=row.created, updated=row.updated,
            fileset_id=row.fileset_id, has_test=row.has_test, metric=row.metric, order=row.order,
            submit_interval=row.submit_interval, tags=tuple(json.loads(row.tags or "[]")), grants=grants,
        )

    def put_dataset(
        self, name: str, owner: str, description: str, private: bool, entries: list[FileEntry], force: bool,
        metric: str = "", order: str = "desc", submit_interval: float = 0.0, tags: Iterable[str] | None = None,
    ) -> Dataset:
        """Register a fully stored dataset in one transaction; with force, replace the old one
        (tags None: keep the replaced dataset's tags)."""
        naming.check_dataset_name(name)
        has_test = any(e.path.startswith("test/") for e in entries)
        now = time.time()
        with self._write() as orm:
            row = orm.scalar(select(DatasetRow).where(DatasetRow.name == name))
            if row is not None and row.owner != owner:
                raise Forbidden(f"Dataset '{name}' belongs to {row.owner}; only they can replace it.")
            if row is not None and not force:
                raise AlreadyExists(f"Dataset '{name}' already exists; push with -f to replace it.")
            fileset_id = self._add_fileset("dataset", entries, orm)
            if row is None:
                row = DatasetRow(name=name, owner=owner, created=now)
                orm.add(row)
                old_fileset = None
            else:
                old_fileset = row.fileset_id
            row.description, row.private, row.fileset_id = description, private, fileset_id
            row.has_test, row.updated = has_test, now
            row.metric, row.order, row.submit_interval = metric, order, submit_interval
            if tags is not None or row.tags is None:
                row.tags = json.dumps(list(tags or ()))
            orm.flush()
            if old_fileset is not None:
                self._drop_fileset(orm, old_fileset)
            return self._dataset(row, orm.get(FilesetRow, fileset_id))

    def change_dataset(self, name: str, **fields) -> Dataset:
        """Set description / metric / order / submit_interval / tags (a list of strings)."""
        with self._write() as orm:
            row = orm.scalar(select(DatasetRow).where(DatasetRow.name == name))
            if row is None:
                raise not_found("Dataset", name, list(orm.scalars(select(DatasetRow.name))))
            for key, value in fields.items():
                setattr(row, key, json.dumps(list(value)) if key == "tags" else value)
            row.updated = time.time()
            return self._dataset(row, orm.get(FilesetRow, row.fileset_id))

    def get_dataset(self, name: str) -> Dataset:
        with self._read() as orm:
            found = orm.execute(
                select(DatasetRow, FilesetRow).join(FilesetRow, DatasetRow.fileset_id == FilesetRow.id)
                .where(DatasetRow.name == name)
            ).first()
            if found is None:
                raise not_found("Dataset", name, list(orm.scalars(select(DatasetRow.name))))
            return self._dataset(*found, self._dataset_grants(orm, [found[0].id]).get(found[0].id, ()))

    def list_datasets(self, pattern: str | None = None) -> list[Dataset]:
        with self._read() as orm:
            rows = orm.execute(
                select(DatasetRow, FilesetRow).join(FilesetRow, DatasetRow.fileset_id == FilesetRow.id)
                .order_by(DatasetRow.name)
            ).all()
            grants = self._dataset_grants(orm, [d.id for d, _ in rows])
            out = [self._dataset(d, f, grants.get(d.id, ())) for d, f in rows]
        if pattern:
            out = [d for d in out if naming.matches(pattern, d.name)]
        return out

    def delete_dataset(self, name: str) -> None:
        with self._write() as orm:
            row = orm.scalar(select(DatasetRow).where(DatasetRow.name == name))
            if row is None:
                raise not_found("Dataset", name, list(orm.scalars(select(DatasetRow.name))))
            fileset_id = row.fileset_id
            orm.delete(row)
            orm.flush()
            self._drop_fileset(orm, fileset_id)
