"""nsml exec and nsml sh through the real CLI, a real server and real running sessions.

Both travel over the channel the session's supervisor holds open to the server; the tests check
what a user sees, and that only the owner gets in.
"""

import json
import time

import pytest

from nsml.scheduler import bwrap

from tests.cli.test_datasets import add_user
from tests.conftest import Cli, check_failed, cli_in, push_dataset, run_dir, serve_for_module, start_session, write_project

TRAIN = '''
import argparse, time
import nsml

p = argparse.ArgumentParser()
p.add_argument("--mode", default="train")
p.add_argument("--pause", type=int, default=0)
p.add_argument("--iteration", default="0")
p.add_argument("--no-scope", action="store_true")
config = p.parse_args()


def main():
    secret = {"lr": 0.01}
    with open("notes.txt", "w") as f:
        f.write("written by the session\\n")
    for step in range(1_000_000):
        loss = 1.0 / (step + 1)
        if config.no_scope:
            nsml.report(step=step, loss=loss)
        else:
            nsml.report(step=step, scope=locals(), loss=loss)
        time.sleep(0.1)


main()
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_for_module(tmp_path_factory, "exec")


@pytest.fixture(scope="module")
def cli(server, tmp_path_factory) -> Cli:
    cli = cli_in(server, tmp_path_factory.mktemp("exec-work") / "code")
    write_project(cli.cwd, TRAIN)
    push_dataset(cli, "execdata")
    return cli


def running(server, cli, *args) -> str:
    """A session that has reported at least once (so its scope is registered, where it does)."""
    name = start_session(cli, "-d", "execdata", *args)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        info = server.session(name)
        assert info["status"] in ("queued", "running"), cli("logs", name).stdout
        if info["last_values"]:
            return name
        time.sleep(0.1)
    raise AssertionError(f"{name} never reported: {server.session(name)}")


@pytest.fixture(scope="module")
def session(server, cli):
    name = running(server, cli)
    yield name
    cli("stop", name)


def test_exec_prints_the_repr_of_an_expression(cli, session):
    assert cli("exec", session, "config.mode").stdout == "'train'\n"  # a global of the entry file
    assert cli("exec", session, 'secret["lr"] * 2').stdout == "0.02\n"  # a local of main()
    assert cli("exec", session, "[k for k in secret]").stdout == "['lr']\n"  # comprehensions see the scope
    step = int(cli("exec", session, "step").stdout)
    assert int(cli("exec", session, "step").stdout) >= step  # the latest scope: training goes on
    assert cli("exec", session, "nsml.IS_ON_NSML").stdout == "True\n"


def test_exec_runs_statements_and_keeps_their_names(cli, session):
    assert cli("exec", session, "x = 41; print(x + 1)").stdout == "42\n"
    assert cli("exec", session, "x").stdout == "41\n"
    assert cli("exec", session, "import os", ";", "print(os.path.basename(os.getcwd()))").stdout == "app\n"


def test_exec_error_prints_the_traceback_and_exits_non_zero(cli, session):
    proc = cli("exec", session, "1 / 0", check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "Traceback" in proc.stderr and proc.stderr.rstrip().endswith("ZeroDivisionError: division by zero")
    assert "nsml/client" not in proc.stderr  # the library's own frames are left out
    proc = cli("exec", session, "def broken(:", check=False)
    assert proc.returncode == 1 and "SyntaxError" in proc.stderr
    proc = cli("exec", session, "exit(3)", check=False)  # must not end the training
    assert proc.returncode == 1 and "SystemExit: 3" in proc.stderr
    assert cli("exec", session, "1 + 1").stdout == "2\n"


def test_exec_output_too_large_is_truncated_with_a_note(cli, session):
    out = cli("exec", session, "'x' * 3_000_000").stdout
    assert out.startswith("'xxx") and len(out) < 1_100_000
    assert "[nsml] output truncated: " in out and "more characters not shown" in out


def test_exec_without_a_registered_scope_says_how_to_register_one(server, cli):
    name = running(server, cli, "-a", "--no-scope")
    try:
        line = check_failed(cli("exec", name, "step", check=False))
        assert line == (f"nsml: {name}: the session has not registered a scope: call "
                        "nsml.report(scope=locals()) or nsml.paused(scope=locals())")
    finally:
        cli("stop", name)
    line = check_failed(cli("exec", name, "step", check=False))
    assert line == f"nsml: Session {name} is not running (it stopped); nsml exec needs a running session."
    line = check_failed(cli("sh", name, "ls", check=False))
    assert "is not running" in line


def test_sh_runs_in_the_working_directory(cli, session):
    proc = cli("sh", session, "ls", "-la")  # dashes after SESSION belong to the command
    assert "main.py" in proc.stdout and "notes.txt" in proc.stdout
    assert cli("sh", session, "pwd").stdout.rstrip().endswith("/app")
    assert cli("sh", session, "cat notes.txt").stdout == "written by the session\n"
    assert cli("sh", session, "echo $NSML_SESSION_NAME").stdout.strip() == session  # its environment


def test_sh_passes_on_the_exit_code_and_stderr(cli, session):
    proc = cli("sh", session, "echo out; echo oops >&2; exit 3", check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "oops\n")
    proc = cli("sh", session, "no-such-command-here", check=False)
    assert proc.returncode == 127 and "not found" in proc.stderr


def test_sh_time_limit_and_output_limit(cli, session):
    started = time.monotonic()
    proc = cli("sh", "-t", "1", session, "sleep 30", check=False)
    assert time.monotonic() - started < 20
    assert proc.returncode == 137 and "ended after 1 s" in proc.stderr
    proc = cli("sh", session, "head -c 3000000 /dev/zero | tr '\\0' y")
    assert proc.stdout.startswith("yyy") and "[nsml] output truncated: 1951424 more bytes not shown" in proc.stdout


def test_only_the_owner_may_exec_and_only_the_supervisor_may_take_requests(server, cli, session):
    bob = add_user(server, "bob", "bobs-exec-token")
    path = f"/api/sessions/{session}"
    resp = bob.post(path + "/exec", json={"code": "secret"})  # a session bob may not read: as if none
    assert resp.status_code == 404 and resp.json()["detail"].startswith(f"Session '{session}' does not exist.")
    assert bob.post(path + "/sh", json={"command": "ls"}).status_code == 404
    assert bob.get(path + "/channel/next", params={"wait": 0}).status_code == 403  # not a supervisor
    assert bob.post(path + "/channel/abc/result", json={"ok": True}).status_code == 403
    nobody = server.api
    nobody.headers.pop("Authorization")
    assert nobody.post(path + "/exec", json={"code": "secret"}).status_code == 401
    assert nobody.get(path + "/channel/next", params={"wait": 0}).status_code == 401
    # Through the CLI, as bob would use it
    bobs_cli = Cli({**cli.env, "NSML_SERVER_URL": server.url, "NSML_TOKEN": "bobs-exec-token"}, cli.cwd)
    line = check_failed(bobs_cli("exec", session, "secret", check=False))
    assert line.startswith(f"nsml: Session '{session}' does not exist.")
    assert cli("exec", session, "secret").stdout == "{'lr': 0.01}\n"  # alice still can


def test_bad_requests_are_one_line(cli, session):
    assert "Nothing to evaluate" in check_failed(cli("exec", session, " ", check=False))
    assert "--timeout" in check_failed(cli("exec", "-t", "0", session, "1", check=False))
    assert "does not exist" in check_failed(cli("exec", session.rsplit("/", 1)[0] + "/999", "1", check=False))


def test_exec_time_limit_and_a_session_that_does_not_answer(server, cli, session):
    import os
    import signal
    import subprocess

    line = check_failed(cli("exec", "-t", "1", session, "time.sleep(3)", check=False))
    assert line == (f"nsml: {session}: the code did not finish within 1 s (it goes on running in the session; "
                    "nsml exec --timeout sets the limit)")
    # A supervisor that does not take requests (frozen here): the server gives up on its own.
    spec = run_dir(server, session) / "spec.json"
    pids = subprocess.run(["pgrep", "-f", f"nsml.scheduler.supervisor {spec}"], capture_output=True, text=True).stdout.split()
    assert len(pids) == 1
    os.kill(int(pids[0]), signal.SIGSTOP)
    try:
        line = check_failed(cli("exec", "-t", "1", session, "1", check=False))
    finally:
        os.kill(int(pids[0]), signal.SIGCONT)
    assert line == f"nsml: Session {session} did not answer within 11 s."
    assert cli("exec", session, "1 + 2").stdout == "3\n"  # and it answers again once it runs


def test_sh_sees_what_the_session_sees(server, cli, session):
    from nsml.scheduler.sandbox import readonly_mounts_work

    if not readonly_mounts_work():
        pytest.skip("no private mount namespaces here: the blob store is not hidden from sessions either")
    # The blob store holds every dataset's hidden test labels: as hidden from sh as from the script.
    assert cli("sh", session, f"ls -A {server.home / 'blobs'} | wc -l").stdout.strip() == "0"
    assert "Read-only" in cli("sh", session, 'touch "$NSML_DATASET_PATH/x"', check=False).stderr


def test_off_the_platform_a_scope_costs_nothing_more(tmp_path):
    import subprocess
    import sys

    from tests.conftest import clean_env

    code = ("import sys, threading, nsml\n"
            "def main():\n"
            "    x = 1\n"
            "    nsml.report(scope=locals(), step=0, loss=0.5)\n"
            "main()\n"
            "print(sorted(t.name for t in threading.enumerate()), 'socket' in sys.modules, 'nsml.client.repl' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=clean_env(tmp_path / "home"),
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["step=0, loss=0.5", "['MainThread'] False False"]
    assert list(tmp_path.iterdir()) == []  # no socket, no repl.json


def test_exec_in_a_home_too_deep_for_a_socket_path(tmp_path):
    """Unix socket paths hold about 100 bytes: under a deep NSML_HOME the script listens in a
    private temporary folder instead, and the supervisor still finds it (and only it)."""
    from tests.conftest import Server, kill_leftover_supervisors

    srv = Server(tmp_path / ("deep-" * 20) / "home").start()
    try:
        cli = cli_in(srv, tmp_path / "work")
        write_project(cli.cwd, TRAIN)
        push_dataset(cli, "execdata")
        name = running(srv, cli)
        assert cli("exec", name, "step >= 0").stdout == "True\n"
        (info,) = srv.home.glob("runs/*/spool/repl.json")
        # In the sandbox the spool is /run/nsml, short whatever the home; unsandboxed, the
        # socket moves to a private temporary folder.
        socket_path = json.loads(info.read_text())["socket"]
        assert socket_path == "/run/nsml/repl.sock" if bwrap.probe().sandboxed else "/nsml-exec-" in socket_path
        cli("stop", name)
    finally:
        srv.stop()
        kill_leftover_supervisors(srv.home)
