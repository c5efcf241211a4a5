"""Sessions through the real CLI: run, ps, logs, stop, rm, memo, command, pull, download, errors.

One server serves the whole module (each test uses datasets of its own, so session numbers and
`ps -d` listings do not depend on the order tests run in). Scripts wait on gate files instead
of sleeping, so nothing here depends on timing: a gate is a path relative to the session's
working directory (/app in its sandbox), which the test opens there (conftest.open_gate).
"""

import io
import json
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from tests.conftest import Cli, Server, check_failed, cli_in, open_gate, run_dir, serve_for_module, write_project
from tests.conftest import push_dataset as push, start_session as run

WAIT_S = 60


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    yield from serve_for_module(tmp_path_factory, "sessions")


@pytest.fixture
def cli(srv, tmp_path) -> Cli:
    return cli_in(srv, tmp_path / "work")


def add_files(folder: Path, **files: str) -> None:
    """Files by exact name (write_project maps '__' to '/', which file names like a.py need)."""
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def one_line(text: str) -> str:
    return " ".join(text.split())


def wait_for_log(srv: Server, name: str, text: str, timeout: float = WAIT_S) -> str:
    """Poll the session's log until `text` appears (an upper bound, not a timed assertion)."""
    owner, dataset, n = name.split("/")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = srv.api.get(f"/api/sessions/{owner}/{dataset}/{n}/logs").json()["text"]
        if text in log:
            return log
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in the log of {name}: {srv.session(name)}")


def user_pid(srv: Server, name: str) -> int:
    """The host pid of the session's user process (a process-group leader), which its supervisor
    writes beside the spool, out of the session's reach."""
    return int((run_dir(srv, name, holding="user.pid") / "user.pid").read_text())


def wait_gone(pid: int, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state == "Z":
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still runs")


GATED = """\
import os, sys, time
print('waiting', flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
print('released', flush=True)
"""

FOREVER = """\
import time
print('ready', flush=True)
while True:
    time.sleep(0.05)
"""


def test_run_numbers_args_entry_and_memo(srv, cli):
    push(cli, "numa")
    push(cli, "numb")
    write_project(cli.cwd, "import sys\nprint('ARGS', sys.argv[1:])\n")
    add_files(cli.cwd, **{"other.py": "import nsml\nprint('OTHER', nsml.SESSION_NAME)\n"})

    first = run(cli, "-d", "numa", "-a", "--lr 0.01 --name 'two words'", "-m", "first try")
    second = run(cli, "-d", "numa", "-e", "other.py", "-c", "1", "--memory", "1G")
    third = run(cli, "--dataset", "numb", "--args", "--epochs=3")
    assert (first, second, third) == ("alice/numa/1", "alice/numa/2", "alice/numb/1")

    for name in (first, second, third):
        assert srv.wait(name)["status"] == "exited", cli("logs", name, check=False).stdout
    assert "ARGS ['--lr', '0.01', '--name', 'two words']" in cli("logs", first).stdout
    assert "OTHER alice/numa/2" in cli("logs", second).stdout
    assert "ARGS ['--epochs=3']" in cli("logs", third).stdout

    assert cli("command", first).stdout.splitlines()[0] == "python main.py --lr 0.01 --name 'two words'"
    assert cli("command", second).stdout.splitlines()[0] == "python other.py"
    s2 = srv.session(second)
    assert (s2["cpus"], s2["memory"]) == (1.0, 1 << 30)

    assert "first try" in cli("ps", "-a", "-d", "numa").stdout
    assert cli("memo", first, "a better description").stdout == f"Memo of {first} is set\n"
    listing = cli("ps", "-a", "-d", "numa").stdout
    assert "a better description" in listing and "first try" not in listing
    assert srv.session(first)["memo"] == "a better description"


def test_nsmlignore_pull_and_download(srv, cli):
    push(cli, "files")
    main = """\
import os
os.makedirs('results', exist_ok=True)
open('results/score.txt', 'w').write('0.97')
open('model.bin', 'wb').write(b'weights')
with open('notes.txt', 'a') as f:
    f.write('appended by the session\\n')
"""
    write_project(cli.cwd, main)
    add_files(cli.cwd, **{"helper.py": "X = 1\n", "notes.txt": "notes\n", "debug.log": "noise\n",
                          "data/big.bin": "big\n", "data/keep.txt": "kept\n", "sub/deep.log": "x\n",
                          ".nsmlignore": "# comment\n*.log\ndata/\n!data/keep.txt\n"})
    name = run(cli, "-d", "files")
    assert srv.wait(name)["status"] == "exited"

    cli("pull", name, "code")
    pulled = sorted(str(p.relative_to(cli.cwd / "code")) for p in (cli.cwd / "code").rglob("*") if p.is_file())
    # gitignore semantics: a file inside an excluded folder cannot be re-included
    assert pulled == [".nsmlignore", "helper.py", "main.py", "notes.txt"]
    assert (cli.cwd / "code" / "main.py").read_text() == main

    out = cli("download", name, "out").stdout
    assert "3 files" in out
    got = {str(p.relative_to(cli.cwd / "out")): p.read_bytes() for p in (cli.cwd / "out").rglob("*") if p.is_file()}
    assert got == {
        "results/score.txt": b"0.97",
        "model.bin": b"weights",
        "notes.txt": b"notes\nappended by the session\n",  # a code file the session changed
    }

    cli("download", "-s", "/app/results/score.txt", name, "one")  # NSML's absolute /app path
    assert [p.relative_to(cli.cwd / "one").as_posix() for p in (cli.cwd / "one").rglob("*") if p.is_file()] == ["results/score.txt"]
    cli("download", "--single", "results", name, "folder")
    assert (cli.cwd / "folder" / "results" / "score.txt").read_bytes() == b"0.97"
    missing = check_failed(cli("download", "-s", "/app/nothing.txt", name, "none", check=False))
    assert "wrote no file '/app/nothing.txt'" in missing and "model.bin" in missing
    assert check_failed(cli("download", "-s", "../../etc/passwd", name, "bad", check=False))
    assert not (cli.cwd / "none").exists() and not (cli.cwd / "bad").exists()

    refused = cli("pull", name, "code", check=False)
    assert refused.returncode == 1 and "already exists" in refused.stderr
    cli("pull", "-f", name, "code")


def test_ps_columns_filters_summary_and_json(srv, cli):
    push(cli, "psds")
    main = """\
import nsml
nsml.report(summary=True, step=1, epoch=1, train__loss=0.5)
nsml.report(step=2, scratch=7)
""" + GATED
    write_project(cli.cwd, main)
    (cli.cwd / "open").touch()  # an open gate: part of the code, so in the session's /app
    done = run(cli, "-d", "psds", "-a", "open", "-m", "finished one")
    assert srv.wait(done)["status"] == "exited"
    live = run(cli, "-d", "psds", "-a", "gate")
    wait_for_log(srv, live, "waiting")

    table = cli("ps", "-d", "psds").stdout.splitlines()
    assert table[0].split() == ["Name", "Created", "Args", "Status", "Type", "Summary", "Description"]
    assert any(live in row and "Running" in row for row in table)
    assert not any(done in row for row in table)  # ps without -a: queued and running only

    rows = {row.split()[0]: row for row in cli("ps", "-a", "-d", "psds").stdout.splitlines()[2:]}
    assert set(rows) == {done, live}
    assert "Exited" in rows[done] and "finished one" in rows[done]
    assert "epoch=1" in rows[done] and "train/loss=0.5" in rows[done]
    assert "scratch" not in rows[done]  # Summary shows summary=True reports only

    assert [s["name"] for s in json.loads(cli("ps", "-a", "-d", "psds", "-n", "1", "-j").stdout)] == [live]
    [entry] = [s for s in json.loads(cli("ps", "-a", "-j", "-d", "psds").stdout) if s["name"] == done]
    assert entry["status"] == "exited" and entry["exit_code"] == 0
    assert entry["summary"] == {"step": 1, "epoch": 1, "train/loss": 0.5}
    assert entry["last_values"]["scratch"] == 7
    assert entry["command"].startswith("python main.py ")

    open_gate(srv, live)
    assert srv.wait(live)["status"] == "exited"
    assert cli("ps", "-d", "psds").stdout.count("psds") == 0


def test_logs_follow_streams_live_and_ends_with_the_session(srv, cli):
    push(cli, "follow")
    write_project(cli.cwd, GATED + "print('the end', flush=True)\n")
    name = run(cli, "-d", "follow", "-a", "gate")

    follow = subprocess.Popen([sys.executable, "-m", "nsml", "logs", "-f", name], cwd=cli.cwd, env=cli.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The first line arrives while the session is blocked on the gate: it is streamed live.
        assert follow.stdout.readline() == "waiting\n"
        assert srv.session(name)["status"] == "running"
        open_gate(srv, name)
        rest, err = follow.communicate(timeout=WAIT_S)
    finally:
        follow.kill()
    assert follow.returncode == 0, err
    assert rest == "released\nthe end\n"
    assert srv.session(name)["status"] == "exited"
    assert cli("logs", name).stdout == "waiting\nreleased\nthe end\n"  # and again after the end
    assert cli("logs", "-n", "1", name).stdout == "the end\n"


def test_stop_kills_the_process_and_keeps_logs(srv, cli):
    push(cli, "stopds")
    write_project(cli.cwd, FOREVER)
    name = run(cli, "-d", "stopds")
    wait_for_log(srv, name, "ready")
    pid = user_pid(srv, name)

    out = cli("stop", name).stdout
    assert f"Session {name} is stopped" in out
    s = srv.session(name)
    assert s["status"] == "stopped" and s["exit_code"] == -signal.SIGTERM
    wait_gone(pid)
    assert "ready" in cli("logs", name).stdout
    assert "Stopped" in cli("ps", "-a", "-d", "stopds").stdout

    again = cli("stop", name, check=False)
    assert again.returncode == 1 and "already stopped" in again.stderr


def test_rm_globs_and_force(srv, cli):
    push(cli, "rmds")
    write_project(cli.cwd, "print('short')\n")
    add_files(cli.cwd, **{"forever.py": FOREVER})
    first, second = run(cli, "-d", "rmds"), run(cli, "-d", "rmds")
    third = run(cli, "-d", "rmds", "-e", "forever.py")
    for name in (first, second):
        srv.wait(name)
    wait_for_log(srv, third, "ready")
    pid = user_pid(srv, third)

    refused = cli("rm", "alice/rmds/*", check=False)
    assert refused.returncode == 1
    assert one_line(refused.stderr) == f"nsml: {third} is still running; stop it first or use rm -f."
    assert len(json.loads(cli("ps", "-a", "-j", "-d", "rmds").stdout)) == 3  # nothing removed

    assert cli("rm", first).stdout.strip() == f"Session {first} is removed"
    out = cli("rm", "-f", "alice/rmd?/?").stdout
    assert out.splitlines() == [f"Session {second} is removed", f"Session {third} is removed"]
    wait_gone(pid)  # -f killed it
    assert json.loads(cli("ps", "-a", "-j", "-d", "rmds").stdout) == []

    gone = cli("logs", third, check=False)
    assert gone.returncode == 1 and "does not exist" in gone.stderr
    nomatch = cli("rm", "alice/rmds/*", check=False)
    assert nomatch.returncode == 1 and "No session matches 'alice/rmds/*'" in nomatch.stderr

    # numbers are not reused after removal
    assert run(cli, "-d", "rmds") == "alice/rmds/4"


def test_crashing_entry_file(srv, cli):
    push(cli, "crash")
    write_project(cli.cwd, "print('starting', flush=True)\ndef f():\n    raise ValueError('boom 42')\nf()\n")
    add_files(cli.cwd, **{"exit3.py": "import sys\nprint('bye')\nsys.exit(3)\n"})
    name = run(cli, "-d", "crash")
    s = srv.wait(name)
    assert s["status"] == "failed" and s["exit_code"] == 1
    assert s["error"] == "exit code 1: ValueError: boom 42"

    row = [r for r in cli("ps", "-a", "-d", "crash").stdout.splitlines() if name in r][0]
    assert "Failed (1)" in row and "ValueError: boom 42" in row

    logs = cli("logs", name)
    assert "starting" in logs.stdout
    assert "Traceback (most recent call last)" in logs.stdout and "ValueError: boom 42" in logs.stdout
    assert one_line(logs.stderr) == f"Session {name} failed: exit code 1: ValueError: boom 42"

    other = run(cli, "-d", "crash", "-e", "exit3.py")
    s = srv.wait(other)
    assert (s["status"], s["exit_code"]) == ("failed", 3)
    assert s["error"] == "exit code 3: bye"


def test_unknown_and_malformed_session_names(srv, cli):
    push(cli, "names")
    write_project(cli.cwd, "print('hi')\n")
    name = run(cli, "-d", "names")
    srv.wait(name)
    for command in (["logs"], ["ps", "-s"], ["stop"], ["command"], ["memo"], ["model", "ls"]):
        args = [*command, "alice/names/7"] + (["x"] if command == ["memo"] else [])
        if command == ["ps", "-s"]:
            continue  # a search pattern that matches nothing is an empty listing, not an error
        res = cli(*args, check=False)
        assert res.returncode == 1, (args, res)
        assert one_line(res.stderr).startswith("nsml: Session 'alice/names/7' does not exist. Did you mean alice/names/1"), args
    for bad in ("alice/names", "alice/names/x", "names-1"):
        res = cli("logs", bad, check=False)
        assert res.returncode == 1
        assert one_line(res.stderr) == (
            f"nsml: '{bad}' is not a session name; session names look like OWNER/DATASET/NUMBER, e.g. alice/digits/3."
        )
        assert "Traceback" not in res.stderr


def test_bad_run_requests_leave_nothing_behind(srv, cli):
    push(cli, "badrun")
    write_project(cli.cwd, "print('hi')\n")
    add_files(cli.cwd, **{"helper.py": ""})
    cases = [
        (["-e", "nope.py"], "Entry file 'nope.py' does not exist in"),
        (["-g", "64"], "The session asks for 64 GPU(s) but the largest node has"),
        (["-c", "1000"], "but the largest node has"),
        (["--memory", "lots"], "'lots' is not a size"),
        (["-a", "--name 'unclosed"], "cannot be split like a shell would"),
    ]
    for extra, message in cases:
        res = cli("run", "-d", "badrun", *extra, check=False)
        assert res.returncode == 1, (extra, res.stdout)
        assert message in one_line(res.stderr), (extra, res.stderr)
        assert len(res.stderr.strip().splitlines()) <= 2 and "Traceback" not in res.stderr
    res = cli("run", "-d", "badrn", check=False)
    assert res.returncode == 1 and "Dataset 'badrn' does not exist. Did you mean badrun?" in one_line(res.stderr)

    # The server refuses an upload without the entry file too (the CLI checks first; this is the API).
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("helper.py")
        tar.addfile(info, io.BytesIO(b""))
    resp = srv.api.post("/api/sessions", params={"dataset": "badrun", "entry": "main.py"}, content=buf.getvalue())
    assert resp.status_code == 400
    assert resp.json()["detail"].startswith("Entry file 'main.py' is not in the uploaded folder")

    assert json.loads(cli("ps", "-a", "-j", "-d", "badrun").stdout) == []
    assert run(cli, "-d", "badrun") == "alice/badrun/1"  # no number was used up


def test_tag_sessions_and_list_them_with_a_query(srv, cli):
    push(cli, "tagq")
    write_project(cli.cwd, "import nsml\nnsml.report(step=1, acc=0.97)\n")
    good = run(cli, "-d", "tagq", "-a", "--lr 0.001 --opt adam")
    other = run(cli, "-d", "tagq", "-a", "--lr 0.1")
    for name in (good, other):
        assert srv.wait(name)["status"] == "exited"
    assert cli("tag", good, "+baseline", "v2").stdout.strip() == f"Tags of {good}: baseline v2"
    assert cli("tag", good, "--", "-v2").stdout.strip() == f"Tags of {good}: baseline"
    assert cli("tag", other).stdout.strip() == f"Tags of {other}: none"
    listed = cli("ps", "-a", "-q", "tag:baseline dataset:tagq").stdout
    assert good in listed and other not in listed
    listed = cli("ps", "-a", "-q", "lr < 0.01 and acc >= 0.95 dataset:tagq").stdout
    assert good in listed and other not in listed
    bad = cli("ps", "-a", "-q", "status:runing", check=False)
    assert bad.returncode != 0 and "'runing' is not a status" in bad.stderr and "^" in bad.stderr
    bad = cli("tag", good, "+two words", check=False)
    assert bad.returncode != 0 and "is not a tag" in bad.stderr
    assert cli("tag", good).stdout.strip() == f"Tags of {good}: baseline"
