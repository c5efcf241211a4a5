"""A real server on a real PostgreSQL (nsml server --db postgresql+psycopg://…): datasets,
sessions, metrics, checkpoints, the board and the dashboard's graph; everything still there
after the server restarts."""

import shutil

import pytest

from tests.conftest import Cli, Server, clean_env, kill_leftover_supervisors, write_dataset, write_project

TRAIN = """\
import nsml
nsml.bind(save=lambda d: open(d + "/m", "w").write("1"), load=lambda d: None)
for step in range(50):
    nsml.report(step=step, summary=step % 10 == 9, loss=1.0 / (step + 1), acc=step / 50)
    if step % 25 == 24:
        nsml.save(step)
print("trained", flush=True)
"""


@pytest.fixture
def server(postgres, tmp_path):
    srv = Server(tmp_path / "home", extra=["--db", postgres.new_database()]).start()
    yield srv
    srv.stop()
    kill_leftover_supervisors(srv.home)


def test_a_server_on_postgresql_runs_sessions_and_keeps_them_across_a_restart(server, tmp_path):
    cli = Cli(clean_env(server.home), write_project(tmp_path / "code", TRAIN))
    cli("dataset", "push", "pgdata", write_dataset(tmp_path / "data"), "-l")
    out = cli("run", "-d", "pgdata").stdout
    name = out.split("Session ")[1].split()[0]
    assert server.wait(name)["status"] == "exited"
    assert not (server.home / "nsml.db").exists()  # the metadata is in PostgreSQL, not in a file

    def check():
        series = server.api.get(f"/api/sessions/{name}/metrics/loss").json()
        assert series["steps"] == [float(i) for i in range(50)] and series["values"][-1] == pytest.approx(1 / 50)
        assert [c["name"] for c in server.api.get(f"/api/sessions/{name}/checkpoints").json()] == ["24", "49"]
        graph = server.api.get("/api/web/graph", params={"sessions": name, "keys": "loss"}).json()
        assert graph and "trained" in cli("logs", name).stdout
        assert server.session(name)["summary"]["step"] == 49

    check()
    server.stop()
    server.start()
    check()
    assert "pgdata" in cli("dataset", "ls").stdout


def test_a_team_server_on_postgresql_and_a_bucket_keeps_the_bytes_in_the_bucket(postgres, s3_server, tmp_path):
    """--db postgresql+psycopg://… --blobs s3://…: datasets, code and checkpoints are objects in
    the bucket; the home's blob folder is a cache that can be thrown away."""
    from tests.store.test_s3blobs import objects

    url = s3_server.url()
    srv = Server(tmp_path / "home", extra=["--db", postgres.new_database(), "--blobs", url], env=s3_server.env()).start()
    try:
        cli = Cli(clean_env(srv.home), write_project(tmp_path / "code", TRAIN))
        cli("dataset", "push", "bucketdata", write_dataset(tmp_path / "data"))
        name = cli("run", "-d", "bucketdata").stdout.split("Session ")[1].split()[0]
        assert srv.wait(name)["status"] == "exited"
        stored = objects(s3_server, url)
        assert len(stored) >= 6 and all(k.startswith("blobs/") for k in stored)  # data, code, checkpoints
        srv.stop()
        shutil.rmtree(srv.home / "blobs")  # the cache only
        srv.start()
        cli("model", "pull", name, "49", str(tmp_path / "pulled"))  # fetched from the bucket
        assert [p.read_text() for p in (tmp_path / "pulled").rglob("m")] == ["1"]
        second = cli("run", "-d", "bucketdata").stdout.split("Session ")[1].split()[0]
        assert srv.wait(second)["status"] == "exited"  # its dataset view and code came from the bucket
        cli("rm", "-f", name, second)
        cli("dataset", "rm", "bucketdata", "-f", check=False)
        left = objects(s3_server, url)
        assert len(left) < len(stored)  # what nothing refers to any more is deleted from the bucket
    finally:
        srv.stop()
        kill_leftover_supervisors(srv.home)
