"""SqlStore on a real SQLite file: datasets, session numbers, checkpoints, the metrics journal."""

import json
import math
import os
import subprocess

import pytest

from tests.conftest import mount_tmpfs

from nsml.core.entities import FileEntry
from nsml.core.errors import AlreadyExists, Conflict, Forbidden, InvalidInput, NotFound, StorageFull
from nsml.core.resources import Resources
from nsml.core.states import Status
from nsml.store.sql import open_store




def files(*specs: tuple[str, str]) -> list[FileEntry]:
    return [FileEntry(path, len(content), f"{hash(content) & (2**64 - 1):064x}") for path, content in specs]


def new_session(store, owner="alice", dataset="digits"):
    return store.create_session(owner, dataset, "main.py", "", Resources(1, 1 << 30, 0), "", "", files(("main.py", "x")))


# -- schema ----------------------------------------------------------------------------------
def test_migration_creates_exactly_the_models(store):
    """The single Alembic revision and the ORM models must not drift apart."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from nsml.store.sql.models import Base

    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_open_store_twice_keeps_data(tmp_path):
    url = f"sqlite:///{tmp_path / 'nsml.db'}"
    a = open_store(url)
    a.put_dataset("digits", "alice", "", False, files(("train/x", "1")), force=False)
    a.close()
    b = open_store(url)  # migrating an up-to-date database changes nothing
    assert b.get_dataset("digits").file_count == 1
    b.close()


# -- users -----------------------------------------------------------------------------------
def dump(store) -> str:
    """Every row of every table, as text: what someone who copied the database would read."""
    from sqlalchemy import MetaData, select

    tables = MetaData()
    tables.reflect(store.engine)
    with store.engine.connect() as conn:
        return "\n".join(repr(row) for t in tables.sorted_tables for row in conn.execute(select(t)))


def test_tokens_are_checked_by_hash(store):
    store.add_user("alice", "secret-token")
    assert store.user_for_token("secret-token") == "alice"
    assert store.user_for_token("wrong") is None
    assert store.user_for_token("") is None
    store.add_user("alice", "new-token")  # same user, new token: the old one stops working
    assert store.user_for_token("secret-token") is None
    assert store.user_for_token("new-token") == "alice"
    assert "secret-token" not in dump(store)
    with pytest.raises(InvalidInput):
        store.add_user("bad name!", "t")


# -- datasets --------------------------------------------------------------------------------
def test_put_and_get_dataset(store):
    entries = files(("train/train_data", "abc"), ("train/train_label", "1"), ("test/test_data", "zz"))
    ds = store.put_dataset("digits", "alice", "hand-written digits", False, entries, force=False)
    assert (ds.name, ds.owner, ds.description, ds.private) == ("digits", "alice", "hand-written digits", False)
    assert (ds.size, ds.file_count, ds.has_test) == (6, 3, True)
    assert store.get_dataset("digits") == ds
    assert [f.path for f in store.files(ds.fileset_id)] == ["test/test_data", "train/train_data", "train/train_label"]
    no_test = store.put_dataset("plain", "alice", "", True, files(("train/x", "1")), force=False)
    assert no_test.has_test is False and no_test.private is True


def test_existing_dataset_is_kept_unless_forced(store):
    first = store.put_dataset("digits", "alice", "v1", False, files(("train/a", "1")), force=False)
    with pytest.raises(AlreadyExists, match="push with -f"):
        store.put_dataset("digits", "alice", "v2", False, files(("train/b", "2")), force=False)
    assert store.get_dataset("digits") == first
    second = store.put_dataset("digits", "alice", "v2", False, files(("train/b", "22")), force=True)
    assert second.description == "v2" and second.created == first.created and second.updated >= first.updated
    assert [f.path for f in store.files(second.fileset_id)] == ["train/b"]
    assert store.files(first.fileset_id) == []  # the replaced version's file rows are gone
    assert store.shas_in_use({f.sha256 for f in files(("train/a", "1"))}) == set()


def test_only_the_owner_replaces_a_dataset(store):
    store.put_dataset("digits", "alice", "", False, files(("train/a", "1")), force=False)
    with pytest.raises(Forbidden, match="belongs to alice"):
        store.put_dataset("digits", "bob", "", False, files(("train/b", "2")), force=True)
    assert store.get_dataset("digits").owner == "alice"


@pytest.mark.parametrize("name", ["", "a" * 21, "has space", "semi;colon", "../up", "a/b"])
def test_bad_dataset_names_are_refused(store, name):
    with pytest.raises(InvalidInput):
        store.put_dataset(name, "alice", "", False, files(("train/a", "1")), force=False)
    assert store.list_datasets() == []


def test_missing_dataset_suggests_close_names(store):
    store.put_dataset("digits", "alice", "", False, files(("train/a", "1")), force=False)
    with pytest.raises(NotFound, match=r"Dataset 'digit' does not exist\. Did you mean digits\?"):
        store.get_dataset("digit")
    with pytest.raises(NotFound, match="Did you mean digits"):
        store.delete_dataset("digitz")
    with pytest.raises(NotFound, match=r"does not exist\.$"):
        store.get_dataset("zzzzzz")


def test_list_search_and_delete_datasets(store):
    for name in ["kin_phase1", "kin_phase2", "movie"]:
        store.put_dataset(name, "alice", "", False, files(("train/a", name)), force=False)
    assert [d.name for d in store.list_datasets()] == ["kin_phase1", "kin_phase2", "movie"]
    assert [d.name for d in store.list_datasets("kin_*")] == ["kin_phase1", "kin_phase2"]
    assert [d.name for d in store.list_datasets("*phase?")] == ["kin_phase1", "kin_phase2"]
    assert store.list_datasets("nothing*") == []
    fileset = store.get_dataset("movie").fileset_id
    store.delete_dataset("movie")
    assert [d.name for d in store.list_datasets()] == ["kin_phase1", "kin_phase2"]
    assert store.files(fileset) == []


def test_shas_in_use_counts_every_kind_of_fileset(store):
    ds = files(("train/a", "dataset bytes"))
    store.put_dataset("digits", "alice", "", False, ds, force=False)
    s = new_session(store)
    ck = files(("model.pt", "weights"))
    store.put_checkpoint(s.id, "1", 1.0, ck)
    code = files(("main.py", "x"))
    unknown = "f" * 64
    wanted = {ds[0].sha256, ck[0].sha256, code[0].sha256, unknown}
    assert store.shas_in_use(wanted) == wanted - {unknown}
    many = [f"{i:064x}" for i in range(1200)] + [ds[0].sha256]  # more than one query's worth
    assert store.shas_in_use(many) == {ds[0].sha256}


# -- sessions --------------------------------------------------------------------------------
def test_session_numbers_count_per_owner_and_dataset_and_are_never_reused(store):
    assert [new_session(store).number for _ in range(3)] == [1, 2, 3]
    assert new_session(store, dataset="mnist").number == 1
    assert new_session(store, owner="bob").number == 1
    third = store.get_session("alice/digits/3")
    store.delete_session(third.id)
    with pytest.raises(NotFound):
        store.get_session("alice/digits/3")
    assert new_session(store).number == 4  # 3 was deleted, yet never handed out again
    first = store.get_session("alice/digits/1")
    store.delete_session(first.id)
    store.delete_session(store.get_session("alice/digits/2").id)
    store.delete_session(store.get_session("alice/digits/4").id)
    assert new_session(store).number == 5  # even once every session of the pair is gone


def test_session_lookup_errors(store):
    new_session(store)
    with pytest.raises(NotFound, match="Did you mean alice/digits/1"):
        store.get_session("alice/digits/2")
    with pytest.raises(InvalidInput, match="OWNER/DATASET/NUMBER"):
        store.get_session("alice/digits")


def test_status_moves_only_along_allowed_transitions(store):
    s = new_session(store)
    assert s.status is Status.QUEUED
    assert store.move_session(s.id, Status.EXITED) is None  # queued cannot exit
    assert store.move_session(s.id, Status.RUNNING, started=5.0).status is Status.RUNNING
    done = store.move_session(s.id, Status.EXITED, exit_code=0)
    assert (done.status, done.exit_code, done.started) == (Status.EXITED, 0, 5.0)
    assert store.move_session(s.id, Status.RUNNING) is None  # final states are final


def test_delete_session_returns_and_drops_its_filesets(store):
    s = new_session(store)
    ck = store.put_checkpoint(s.id, "1", 1.0, files(("w", "1")))
    dropped = store.delete_session(s.id)
    assert set(dropped) == {s.code_fileset_id, ck.fileset_id}
    assert store.files(s.code_fileset_id) == [] and store.files(ck.fileset_id) == []
    assert store.delete_session(s.id) == []


def test_outputs_sent_again_replace_the_earlier_ones(store):
    s = new_session(store)
    first = store.put_outputs(s.id, files(("out.txt", "1")))
    second = store.put_outputs(s.id, files(("out.txt", "22")))  # a retry after a lost answer
    assert [f.size for f in store.files(second.outputs_fileset_id)] == [2]
    assert store.files(first.outputs_fileset_id) == []
    assert set(store.delete_session(s.id)) == {s.code_fileset_id, second.outputs_fileset_id}
    with pytest.raises(NotFound):
        store.put_outputs(s.id, [])


# -- checkpoints -----------------------------------------------------------------------------
def test_checkpoint_with_the_same_name_overwrites(store):
    s = new_session(store)
    store.move_session(s.id, Status.RUNNING, started=100.0)
    a = store.put_checkpoint(s.id, "best", 110.0, files(("model", "v1")))
    b = store.put_checkpoint(s.id, "2", 130.0, files(("model", "v2"), ("extra", "e")))
    assert (a.elapsed, b.elapsed, b.size) == (10.0, 20.0, 3)
    again = store.put_checkpoint(s.id, "best", 150.0, files(("model", "v3!")))
    names = [c.name for c in store.list_checkpoints(s.id)]
    assert names == ["2", "best"]  # one 'best', now the newest
    assert store.get_checkpoint(store.session_by_id(s.id), "best") == again
    assert store.files(a.fileset_id) == []
    assert [f.size for f in store.files(again.fileset_id)] == [3]
    with pytest.raises(NotFound, match="has no checkpoint '9'. Its checkpoints: 2, best"):
        store.get_checkpoint(store.session_by_id(s.id), "9")
    store.delete_checkpoint(s.id, "2")
    assert [c.name for c in store.list_checkpoints(s.id)] == ["best"]


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "x" * 201])
def test_bad_checkpoint_names_are_refused(store, name):
    s = new_session(store)
    with pytest.raises(InvalidInput):
        store.put_checkpoint(s.id, name, 1.0, files(("m", "1")))


def test_checkpoint_summary_is_the_sessions_latest(store):
    s = new_session(store)
    store.ingest_journal(s.id, 0, line(step=1, loss=0.5) + line(step=2, loss=0.25, summary=True))
    ck = store.put_checkpoint(s.id, "2", 1.0, files(("m", "1")))
    assert ck.summary == {"step": 2, "loss": 0.25}


# -- metrics journal -------------------------------------------------------------------------
def line(step=None, summary=False, w=1.0, **values) -> bytes:
    return (json.dumps({"k": "m", "w": w, "step": step, "s": summary, "v": values}) + "\n").encode()


def test_ingest_is_idempotent_by_offset(store):
    s = new_session(store)
    data = line(step=1, loss=1.0) + line(step=2, loss=0.5, acc=0.1)
    assert store.ingest_journal(s.id, 0, data) == len(data)
    assert store.ingest_journal(s.id, 0, data) == len(data)  # a retry after a lost answer
    assert store.count_points(s.id) == 3
    more = line(step=3, loss=0.25)
    # a resend that overlaps: old bytes + new ones, from offset 0 again
    assert store.ingest_journal(s.id, 0, data + more) == len(data + more)
    assert [p.value for p in store.metric_points(s.id, "loss")] == [1.0, 0.5, 0.25]
    assert store.series_keys(s.id) == {"acc": 1, "loss": 3}
    assert store.session_by_id(s.id).journal_offset == len(data + more)


def test_a_torn_last_line_waits_for_the_rest(store):
    s = new_session(store)
    whole = line(step=1, loss=1.0)
    torn = line(step=2, loss=2.0)
    assert store.ingest_journal(s.id, 0, whole + torn[:10]) == len(whole)
    assert store.count_points(s.id) == 1
    assert store.ingest_journal(s.id, len(whole), torn) == len(whole + torn)
    assert [p.step for p in store.metric_points(s.id, "loss")] == [1.0, 2.0]


def test_a_gap_is_a_conflict_and_stores_nothing(store):
    s = new_session(store)
    first = line(step=1, loss=1.0)
    store.ingest_journal(s.id, 0, first)
    with pytest.raises(Conflict, match="gap"):
        store.ingest_journal(s.id, len(first) + 5, line(step=9, loss=9.0))
    assert store.count_points(s.id) == 1
    assert store.session_by_id(s.id).journal_offset == len(first)
    with pytest.raises(NotFound):
        store.ingest_journal(99999, 0, first)


def test_non_numeric_values_round_trip_and_non_finite_ones_are_not_stored(store):
    s = new_session(store)
    values = {"int": 3, "text": "hi", "list": [1, 2], "none": None, "flag": True, "big": 1e308}
    refused = {"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf")}  # issue 9: not stored, noted
    data = "".join(
        json.dumps({"k": "m", "w": 1.0, "step": 1, "s": True, "v": {k: v}}) + "\n" for k, v in {**values, **refused}.items()
    ).encode()
    notes = []
    store.ingest_journal(s.id, 0, data, notes)
    got = {k: store.metric_points(s.id, k)[0].value for k in values}
    assert got == values
    assert got["flag"] is True  # a bool stays a bool, not 1.0
    assert all(store.metric_points(s.id, k) == [] for k in refused)
    assert [about for about, _ in notes] == ["finite:nan", "finite:inf", "finite:ninf"]
    session = store.session_by_id(s.id)
    assert session.summary == {"step": 1, **values} and not any(math.isnan(v) for v in session.last_values.values() if type(v) is float)


def test_steps_default_to_report_count_and_lines_that_are_not_metrics_are_skipped(store):
    s = new_session(store)
    data = line(loss=1.0) + b'{"k":"c","name":"1"}\n' + b"not json\n" + line(loss=2.0) + line(step="x", loss=3.0)
    store.ingest_journal(s.id, 0, data)
    assert [(p.step, p.value) for p in store.metric_points(s.id, "loss")] == [(None, 3.0), (0.0, 1.0), (1.0, 2.0)]
    assert store.metric_points(s.id, "missing") == []


# -- a full disk under the database ----------------------------------------------------------
@pytest.fixture
def tiny_disk(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    mount_tmpfs(mnt, "1m")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(folder, keep: int = 0):
    """Write a filler file until the disk is full (but for `keep` bytes); returns its path."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    if keep:
        os.truncate(filler, max(0, filler.stat().st_size - keep))
    return filler


def test_database_disk_full_is_storage_full_and_rolls_back(tiny_disk):
    store = open_store(f"sqlite:///{tiny_disk / 'nsml.db'}")
    try:
        store.put_dataset("small", "alice", "", False, files(("train/a", "1")), force=False)
        filler = fill(tiny_disk)
        many = [FileEntry(f"train/{'x' * 200}{i}", i, f"{i:064x}") for i in range(5000)]
        with pytest.raises(StorageFull, match="disk filled up .*nothing was kept"):
            store.put_dataset("big", "alice", "", False, many, force=False)
        filler.unlink()
        assert [d.name for d in store.list_datasets()] == ["small"]
        store.put_dataset("after", "alice", "", False, files(("train/b", "2")), force=False)
        assert [d.name for d in store.list_datasets()] == ["after", "small"]
    finally:
        store.close()
