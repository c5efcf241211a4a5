"""The whole migration chain on SQLite and PostgreSQL: from an empty database to the newest
schema, down to nothing and up again; and from the previous schema with data in it, nothing
lost on the way up or back."""

import time

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text

from nsml.core.params import Column
from nsml.store.sql import open_store
from nsml.store.sql.engine import MIGRATIONS, make_engine
from nsml.store.sql.models import Base

PREVIOUS = "0007"


def runner(engine):
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))

    def to(revision: str, down: bool = False) -> None:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(cfg, revision)
    return to


def tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_from_nothing_to_the_newest_and_back_down_to_nothing(empty_database_url):
    engine = make_engine(empty_database_url)
    to = runner(engine)
    to("head")
    assert tables(engine) == set(Base.metadata.tables)
    to("base", down=True)
    assert tables(engine) == set()
    to("head")
    assert tables(engine) == set(Base.metadata.tables)
    engine.dispose()


def test_the_previous_schema_with_data_in_it_migrates_up_and_back(empty_database_url):
    engine = make_engine(empty_database_url)
    to = runner(engine)
    to(PREVIOUS)
    now = time.time()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (name, token_sha256, created, password_hash, admin, default_team) "
                          "VALUES ('alice', 'x', 0, '', true, '')"))
        conn.execute(text(
            "INSERT INTO sessions (owner, dataset, number, entry, args, status, cpus, memory, gpus, gpu_ids, created, memo, "
            "error, image, summary, last_values, journal_offset, log_offset, report_count, kind, source, source_checkpoint, "
            "shm_size, batch_size, attempt, resumed_from, team, visibility, priority, gpu_model, node) VALUES "
            "('alice', 'd', 1, 'main.py', '', 'running', 1, 1, 2, '0,1', :now, '', '', '', '{}', '{}', 0, 0, 0, 'normal', "
            "'', '', 0, 0, 1, '', '', 'team', 1, 'a100', 'gpu-a')"), {"now": now})
        # Points one row each, as before 0008: 1,500 of loss (two chunks and a bit), text, a NaN.
        conn.execute(text("INSERT INTO series (id, session_id, key, count) VALUES (1, 1, 'loss', 1500), (2, 1, 'note', 3)"))
        conn.execute(text("INSERT INTO points (series_id, step, walltime, value, value_json) VALUES "
                          + ", ".join(f"(1, {i}, {now + i}, {(i % 700) / 10}, NULL)" for i in range(1500))))
        conn.execute(text("INSERT INTO points (series_id, step, walltime, value, value_json) VALUES "
                          "(2, NULL, 1, NULL, '\"warm-up\"'), (2, 1, 2, 'NaN', NULL), (2, 2, 3, 4.5, NULL)"))
    engine.dispose()
    store = open_store(empty_database_url)  # the server's own start: up to the newest
    s = store.get_session("alice/d/1")
    assert (s.status, s.gpu_ids, s.node, s.priority, s.gpu_model) == ("running", "0,1", "gpu-a", 1, "a100")
    loss = store.metric_points(s.id, "loss")
    assert [(p.step, p.walltime, p.value) for p in loss] == [(float(i), now + i, (i % 700) / 10) for i in range(1500)]
    assert [(p.step, p.value) for p in store.metric_points(s.id, "note")] == [(None, "warm-up"), (1.0, None), (2.0, 4.5)]
    summary = store.series_summaries([s.id])[s.id]
    assert (summary["loss"].max_value, summary["loss"].max_step, summary["loss"].last_step) == (69.9, 699.0, 1499.0)
    assert (summary["note"].count, summary["note"].numeric, summary["note"].last_value) == (3, 1, 4.5)
    assert store.downsampled_series(s.id, "loss", buckets=100)["count"] == 1500
    store.close()
    to(PREVIOUS, down=True)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT node FROM sessions")).scalar() == "gpu-a"
        back = conn.execute(text("SELECT step, value FROM points WHERE series_id = 1 ORDER BY id")).all()
        assert back == [(float(i), (i % 700) / 10) for i in range(1500)]
        assert conn.execute(text("SELECT value_json FROM points WHERE series_id = 2 ORDER BY id")).scalars().all() == ['"warm-up"', 'null', None]
    assert "point_chunks" not in tables(engine) and "leases" in tables(engine)
    engine.dispose()


def test_0009_gives_the_sessions_there_are_the_parameters_of_their_arguments(empty_database_url):
    engine = make_engine(empty_database_url)
    to = runner(engine)
    to("0008")
    with engine.begin() as conn:
        for n, args in enumerate(["--lr 0.01 --batch-size=32 --amp", "", "--opt 'adam w'"], start=1):
            conn.execute(text(
                "INSERT INTO sessions (owner, dataset, number, entry, args, status, cpus, memory, gpus, gpu_ids, created, "
                "memo, error, image, summary, last_values, journal_offset, log_offset, report_count, kind, source, "
                "source_checkpoint, shm_size, batch_size, attempt, resumed_from, team, visibility, priority, gpu_model, "
                "node) VALUES ('alice', 'd', :n, 'main.py', :args, 'exited', 1, 1, 0, '', :n, '', '', '', '{}', '{}', "
                "0, 0, 0, 'normal', '', '', 0, 0, 1, '', '', 'team', 0, '', '')"), {"n": n, "args": args})
    engine.dispose()
    store = open_store(empty_database_url)
    ids = [store.get_session(f"alice/d/{n}").id for n in (1, 2, 3)]
    assert store.session_params(ids) == {ids[0]: {"lr": 0.01, "batch_size": 32, "amp": True}, ids[1]: {},
                                         ids[2]: {"opt": "adam w"}}
    _, rows = store.runs_table(params=["lr"], sort=Column("param", "lr"), order="asc")
    assert [r.params["lr"] for r in rows] == [0.01, None, None]
    store.close()
    indexes = lambda: {i["name"] for i in inspect(engine).get_indexes("series")}  # noqa: E731
    assert "ix_series_key" in indexes()
    to("0008", down=True)
    assert "session_params" not in tables(engine) and "point_chunks" in tables(engine)
    assert "ix_series_key" not in indexes()
    to("head")
    assert "session_params" in tables(engine) and "ix_series_key" in indexes()
    engine.dispose()
