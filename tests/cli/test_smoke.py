from tests.conftest import write_dataset, write_project


def test_push_run_logs(server, cli, tmp_path):
    write_dataset(tmp_path / "ds")
    cli("dataset", "push", "toy", tmp_path / "ds")
    write_project(cli.cwd, "import nsml\nprint('hello from', nsml.SESSION_NAME)\nnsml.report(step=1, loss=0.5)\n")
    out = cli("run", "-d", "toy").stdout
    assert "Session alice/toy/1 is started" in out
    s = server.wait("alice/toy/1")
    assert s["status"] == "exited", s
    assert "hello from alice/toy/1" in cli("logs", "alice/toy/1").stdout
