"""A real server on a real PostgreSQL (nsml server --db postgresql+psycopg://…): datasets,
sessions, metrics, checkpoints, the board and the dashboard's graph; everything still there
after the server restarts."""

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
