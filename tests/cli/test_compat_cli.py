"""NSML's missing options and what a new user tripped over (issue 8), through the real CLI and a
real server: run without -d, --shm-size, rm -s, dataset tags, pull/download -f and the download
name whitelist, credit, one-line usage errors, logs -f exit status, login checks, web names,
dataset rm of a used dataset, removed sessions on boards, memo / model rm confirmations,
default code ignores and the large-upload warning.

One server serves the module; each test uses datasets of its own.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tests.cli.test_relaunch import PROJECT, write_board_dataset
from tests.conftest import Cli, check_failed, cli_in, serve_for_module, write_project
from tests.conftest import push_dataset as push, start_session as run

WAIT_S = 120

SAVES = """\
import nsml
nsml.bind(save=lambda d: open(d + '/w.txt', 'w').write('w'), load=lambda d: None)
for epoch in range(3):
    nsml.save(epoch)
open('out.txt', 'w').write('result')
print('done', flush=True)
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    yield from serve_for_module(tmp_path_factory, "compat")


@pytest.fixture
def cli(srv, tmp_path) -> Cli:
    return cli_in(srv, tmp_path / "work")


def usage_failed(proc) -> str:
    """A usage error: exit 2 and one `nsml: …` line on stderr, nothing framed."""
    assert proc.returncode == 2, f"{proc.args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nsml: "), proc.stderr
    assert not any(ch in proc.stderr for ch in "╭│╰"), proc.stderr
    return lines[0]


def exited(srv, name: str) -> dict:
    s = srv.wait(name, timeout=WAIT_S)
    assert s["status"] == "exited", s
    return s


# -- run without a dataset ---------------------------------------------------------------------
NO_DATA = """\
import nsml
from nsml import DATASET_NAME, DATASET_PATH, HAS_DATASET
print('HAS', HAS_DATASET, repr(DATASET_PATH), repr(DATASET_NAME), nsml.SESSION_NAME, flush=True)
"""


def test_run_without_a_dataset_works_end_to_end(srv, cli):
    write_project(cli.cwd, NO_DATA)
    name = run(cli)
    owner, placeholder, n = name.split("/")
    assert (owner, placeholder) == ("alice", ".nodata")
    exited(srv, name)
    assert f"HAS False '' '' {name}" in cli("logs", name).stdout
    # no dataset can ever be called that, so the name cannot clash with a real dataset's sessions
    data = cli.cwd.parent / "ds"
    (data / "train").mkdir(parents=True)
    (data / "train" / "x").write_text("1")
    assert "may contain only letters" in check_failed(cli("dataset", "push", ".nodata", data, check=False))
    listed = json.loads(cli("ps", "-a", "-d", ".nodata", "-j").stdout)
    assert name in [s["name"] for s in listed]
    assert cli("command", name).stdout.splitlines()[1].endswith("no dataset")
    web = srv.api.get("/api/web/sessions", params={"dataset": ".nodata"}).json()
    assert name in [s["name"] for s in web["sessions"]]
    assert f"/sessions/{name}" in cli("web", "--no-browser", name).stdout
    # fork works (nothing to mount); submit says why it cannot
    write_project(cli.cwd, SAVES)
    trained = run(cli)
    exited(srv, trained)
    fork = cli("fork", trained, "-c", "1").stdout
    assert "is started" in fork
    line = check_failed(cli("submit", trained, "1", check=False))
    assert "without a dataset" in line


# -- --shm-size ------------------------------------------------------------------------------------
def test_shm_size_is_checked_recorded_and_shown(srv, cli):
    push(cli, "shm")
    write_project(cli.cwd, "print('hi')\n")
    name = run(cli, "-d", "shm", "--shm-size", "2G", "--memory", "4G")
    assert srv.session(name)["shm_size"] == 2 << 30
    assert "2.00 GB shared memory" in cli("command", name).stdout
    default = run(cli, "-d", "shm", "--memory", "4G")
    assert srv.session(default)["shm_size"] == 1 << 30  # NSML's default, 1G
    assert "is not a size" in check_failed(cli("run", "-d", "shm", "--shm-size", "lots", check=False))
    line = check_failed(cli("run", "-d", "shm", "--shm-size", "8G", "--memory", "1G", check=False))
    assert "more than the session's memory" in line and "--memory" in line


# -- rm -s -------------------------------------------------------------------------------------------
def test_rm_skip_takes_a_session_out_of_listings_and_keeps_its_files(srv, cli, tmp_path):
    push(cli, "skip")
    write_project(cli.cwd, SAVES)
    name = run(cli, "-d", "skip")
    exited(srv, name)

    out = cli("rm", "-s", name).stdout
    assert out.strip() == f"Session {name} is removed from the listings (its stored files are kept)"
    assert name not in cli("ps", "-a").stdout
    assert name not in [s["name"] for s in json.loads(cli("ps", "-a", "-j", "-d", "skip").stdout)]
    assert srv.api.get("/api/web/sessions", params={"dataset": "skip"}).json()["total"] == 0
    # ... but what it stored is still there, by name
    assert [c["name"] for c in json.loads(cli("model", "ls", "-j", name).stdout)] == ["0", "1", "2"]
    cli("model", "pull", name, "2", tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "w.txt").read_text() == "w"
    cli("download", name, tmp_path / "out")
    assert (tmp_path / "out" / "out.txt").read_text() == "result"
    assert "is started" in cli("fork", name, "-c", "1").stdout

    # removing it again without -s deletes it for good
    assert cli("rm", name).stdout.strip() == f"Session {name} is removed"
    assert "does not exist" in check_failed(cli("model", "ls", name, check=False))


def test_rm_skip_of_a_running_session_needs_force(srv, cli):
    push(cli, "skiprun")
    write_project(cli.cwd, "import time\nprint('up', flush=True)\ntime.sleep(600)\n")
    name = run(cli, "-d", "skiprun")
    assert "still running" in check_failed(cli("rm", "-s", name, check=False))
    cli("rm", "-s", "-f", name)
    s = srv.session(name)
    assert s["status"] == "stopped" and s["removed"]


# -- dataset tags -------------------------------------------------------------------------------
def test_dataset_tags_are_checked_kept_and_listed(srv, cli):
    data = write_board_dataset(cli.cwd.parent / "tagged")
    cli("dataset", "push", "tagged", data, "--tag", "#vision", "--tag", "#mnist")
    row = next(line for line in cli("dataset", "ls").stdout.splitlines() if line.startswith("tagged "))
    assert row.rstrip().endswith("#vision #mnist")
    listed = {d["name"]: d for d in json.loads(cli("dataset", "ls", "-j").stdout)}
    assert listed["tagged"]["tags"] == ["#vision", "#mnist"]

    cli("dataset", "push", "-f", "tagged", data)  # a forced push without --tag keeps them
    assert srv.api.get("/api/datasets/tagged").json()["tags"] == ["#vision", "#mnist"]
    assert "tags #new" in cli("dataset", "change", "tagged", "--tag", "#new").stdout
    assert srv.api.get("/api/datasets/tagged").json()["tags"] == ["#new"]
    cli("dataset", "change", "tagged", "--tag", "none")
    assert srv.api.get("/api/datasets/tagged").json()["tags"] == []

    eight = [arg for i in range(8) for arg in ("--tag", f"#t{i}")]
    for args, words in [(["--tag", "vision"], "must start with '#'"),
                        (["--tag", "#" + "x" * 50], "the limit is 50"),
                        (["--tag", "#two words"], "space"),
                        (eight, "at most 7")]:
        line = check_failed(cli("dataset", "push", "-f", "tagged", data, *args, check=False))
        assert words in line, line
        line = check_failed(cli("dataset", "change", "tagged", *args, check=False))
        assert words in line, line
    assert srv.api.get("/api/datasets/tagged").json()["tags"] == []  # nothing half-changed


# -- pull -f, download -f and the name whitelist -----------------------------------------------------
def test_pull_and_download_refuse_existing_paths_unless_forced(srv, cli, tmp_path):
    push(cli, "dl")
    write_project(cli.cwd, SAVES)
    name = run(cli, "-d", "dl")
    exited(srv, name)

    out = cli("download", "-s", "/app/out.txt", name, tmp_path / "one").stdout
    assert out.strip() == f"1 file of {name} downloaded into {tmp_path / 'one'}"
    line = check_failed(cli("download", "-s", "/app/out.txt", name, tmp_path / "one", check=False))
    assert "already exists" in line and "-f" in line
    cli("download", "-f", "-s", "/app/out.txt", name, tmp_path / "one")
    assert (tmp_path / "one" / "out.txt").read_text() == "result"

    cli("pull", name, tmp_path / "code")
    assert "-f" in check_failed(cli("pull", name, tmp_path / "code", check=False))
    (tmp_path / "code" / "stale.txt").write_text("old")
    assert "(1 file)" in cli("pull", "-f", name, tmp_path / "code").stdout
    assert sorted(p.name for p in (tmp_path / "code").iterdir()) == ["main.py"]  # replaced, not merged


@pytest.mark.parametrize("single, path, bad", [
    ("/app/out*.txt", "ok", "'*'"), ("/app/a;b", "ok", "';'"), ("/app/out.txt", "res$ult", "'$'"),
])
def test_download_names_outside_nsmls_whitelist_are_refused(srv, cli, tmp_path, single, path, bad):
    line = check_failed(cli("download", "-s", single, "alice/dl/1", tmp_path / path, check=False))
    assert bad in line and "letters, digits, spaces and . _ - + [ ] { } ( ) '" in line
    assert not (tmp_path / path).exists()


def test_download_accepts_every_whitelisted_character(srv, cli, tmp_path):
    push(cli, "dlnames")
    odd = "a b.c_d-e+f[g]{h}(i)'j.txt"
    write_project(cli.cwd, f"open({odd!r}, 'w').write('ok')\n")
    name = run(cli, "-d", "dlnames")
    exited(srv, name)
    cli("download", "-s", f"/app/{odd}", name, tmp_path / "Out (1) [x]")
    assert (tmp_path / "Out (1) [x]" / odd).read_text() == "ok"


# -- credit ------------------------------------------------------------------------------------------
def test_credit_says_credits_are_off(srv, cli):
    assert cli("credit").stdout.strip() == "User : alice  credit: off (this server does not limit GPU time)"
    answer = srv.api.get("/api/credit").json()
    assert answer["user"] == "alice" and answer["enabled"] is False and answer["credit"] is None


# -- usage errors --------------------------------------------------------------------------------------
def test_usage_errors_are_one_line_with_usage_and_a_suggestion(cli):
    line = usage_failed(cli("logs", check=False))
    assert line == "nsml: Missing argument 'SESSION'. Usage: nsml logs [OPTIONS] SESSION (see nsml logs --help)."
    line = usage_failed(cli("logs", "--folow", "alice/x/1", check=False))
    assert "no option --folow; did you mean --follow?" in line
    assert "Did you mean 'logs'?" in usage_failed(cli("lgs", check=False))
    assert "'-n' / '--tail'" in usage_failed(cli("logs", "-n", "many", "alice/x/1", check=False))
    assert "Missing argument 'PATH'" in usage_failed(cli("dataset", "push", "name", check=False))


def test_nsml_alone_lists_the_commands(cli):
    out = cli("--help").stdout
    assert "credit" in out and "--install-completion" in out and "-V" in out
    assert cli("-V").stdout.startswith("nsml ")


# -- logs -f exit status --------------------------------------------------------------------------------
def test_logs_follow_exits_non_zero_when_the_session_failed(srv, cli):
    push(cli, "follows")
    write_project(cli.cwd, "print('ok', flush=True)\n")
    good = run(cli, "-d", "follows")
    assert cli("logs", "-f", good).stdout == "ok\n"  # check=True: exit status 0
    write_project(cli.cwd, "print('bad', flush=True)\nraise SystemExit(3)\n")
    bad = run(cli, "-d", "follows")
    proc = cli("logs", "-f", bad, check=False)
    assert proc.returncode == 1 and proc.stdout == "bad\n"
    assert f"Session {bad} failed" in proc.stderr
    assert cli("logs", bad).returncode == 0  # reading a finished log is no failure


# -- login ----------------------------------------------------------------------------------------------
class _NotNsml(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<html>some other service</html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_login_checks_the_url_before_asking_for_a_token(srv, cli):
    nothing = f"http://127.0.0.1:{free_port()}"
    line = check_failed(cli("login", nothing, check=False))
    assert line.startswith(f"nsml: Cannot reach {nothing}") and "nsml server" in line

    other = HTTPServer(("127.0.0.1", 0), _NotNsml)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{other.server_port}"
        assert "is not an NSML server" in check_failed(cli("login", url, check=False))
    finally:
        other.shutdown()

    # a real server, but no --token and no terminal: a clear error, never a prompt that hangs
    line = check_failed(cli("login", srv.url, input="", check=False))
    assert "--token" in line and "no terminal" in line
    assert not (srv.home / "config.json").exists()
    assert "not a server address" in check_failed(cli("login", "localhost:18553", check=False))


# -- web NAME -----------------------------------------------------------------------------------------
def test_web_says_when_a_name_does_not_exist(srv, cli):
    push(cli, "webds")
    write_project(cli.cwd, "print('hi')\n")
    name = run(cli, "-d", "webds")
    assert "Did you mean webds?" in check_failed(cli("web", "--no-browser", "webd", check=False))
    wrong = name.replace("webds", "webd")
    line = check_failed(cli("web", "--no-browser", wrong, check=False))
    assert "does not exist" in line and name in line
    assert "neither a session" in check_failed(cli("web", "--no-browser", "alice/webds", check=False))
    assert "/datasets/webds" in cli("web", "--no-browser", "webds").stdout


# -- dataset rm of a used dataset ----------------------------------------------------------------------
def test_dataset_rm_of_a_used_dataset_needs_force(srv, cli):
    push(cli, "used")
    write_project(cli.cwd, "print('hi')\n")
    first, second = run(cli, "-d", "used"), run(cli, "-d", "used")
    exited(srv, first), exited(srv, second)
    line = check_failed(cli("dataset", "rm", "used", check=False))
    assert "is used by 2 sessions" in line and "-f" in line
    assert srv.api.get("/api/datasets/used").status_code == 200
    assert cli("dataset", "rm", "-f", "used").stdout.strip() == "Dataset used is removed"
    assert "hi" in cli("logs", first).stdout  # the sessions keep their logs


# -- boards name removed sessions ------------------------------------------------------------------------
def test_a_board_says_when_a_ranked_session_was_removed(srv, cli, tmp_path):
    shutil.copytree(PROJECT, cli.cwd, dirs_exist_ok=True)
    cli("dataset", "push", "rmboard", write_board_dataset(tmp_path / "board"), "--leaderboard")
    name = run(cli, "-d", "rmboard", "-a", "--epochs 2")
    exited(srv, name)
    assert "Score:" in cli("submit", name, "1", timeout=180).stdout
    assert "(removed)" not in cli("dataset", "board", "rmboard").stdout
    assert [r["removed"] for r in srv.api.get("/api/datasets/rmboard/board").json()["rows"]] == [False]

    cli("rm", name)
    row = cli("dataset", "board", "rmboard").stdout.splitlines()[-1]
    assert f"{name} (removed)" in row
    assert [r["removed"] for r in srv.api.get("/api/datasets/rmboard/board").json()["rows"]] == [True]


# -- memo and model rm say what they did -------------------------------------------------------------------
def test_memo_and_model_rm_confirm(srv, cli):
    push(cli, "confirm")
    write_project(cli.cwd, SAVES)
    name = run(cli, "-d", "confirm")
    exited(srv, name)
    assert cli("memo", name, "best so far").stdout.strip() == f"Memo of {name} is set"
    assert srv.session(name)["memo"] == "best so far"
    assert cli("memo", name, "").stdout.strip() == f"Memo of {name} is cleared"
    assert cli("model", "rm", name, "0").stdout.strip() == f"Removed checkpoint 0 of {name}"
    assert cli("model", "rm", name, "*").stdout.strip() == f"Removed checkpoints 1, 2 of {name}"


# -- what a code upload leaves out -------------------------------------------------------------------------
def test_code_uploads_leave_out_vcs_caches_venvs_and_local_checkpoints(srv, cli, tmp_path):
    push(cli, "ignores")
    write_project(cli.cwd, "print('hi')\n", pkg__mod_py="x = 1\n")
    os.rename(cli.cwd / "pkg" / "mod_py", cli.cwd / "pkg" / "mod.py")
    for rel in [".git/HEAD", ".git/objects/ab", "__pycache__/main.cpython-311.pyc", "pkg/__pycache__/m.pyc",
                "pkg/old.pyc", ".venv/bin/python", "venv/lib/site.py", "nsml_checkpoints/3/model.pkl"]:
        (cli.cwd / rel).parent.mkdir(parents=True, exist_ok=True)
        (cli.cwd / rel).write_text("x")
    name = run(cli, "-d", "ignores")
    cli("pull", name, tmp_path / "code")
    kept = sorted(str(p.relative_to(tmp_path / "code")) for p in (tmp_path / "code").rglob("*") if p.is_file())
    assert kept == ["main.py", "pkg/mod.py"]

    (cli.cwd / ".nsmlignore").write_text("!nsml_checkpoints/\n")  # re-included on purpose
    again = run(cli, "-d", "ignores")
    cli("pull", again, tmp_path / "code2")
    assert (tmp_path / "code2" / "nsml_checkpoints" / "3" / "model.pkl").is_file()
    assert not (tmp_path / "code2" / ".git").exists()


def test_a_code_upload_over_100_mb_is_warned_about(srv, cli):
    push(cli, "bigcode")
    write_project(cli.cwd, "print('hi')\n")
    (cli.cwd / "data").mkdir()
    with open(cli.cwd / "data" / "blob.bin", "wb") as f:
        f.truncate(101 << 20)  # sparse: cheap to make, but 101 MB to upload
    proc = cli("run", "-d", "bigcode")
    warning = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1, proc.stderr
    assert "uploading 101.00 MB of code (more than 100 MB), mostly data/ 101.00 MB;" in warning[0] and ".nsmlignore" in warning[0]
    small = cli("run", "-d", "bigcode", "--path", write_project(cli.cwd.parent / "small", "print(1)\n"))
    assert "warning" not in small.stderr


# -- --help ------------------------------------------------------------------------------------------
def _commands(group, path=()):
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if getattr(command, "commands", None):
            yield from _commands(command, (*path, name))


def test_every_help_page_is_classic_and_complete():
    """Walks the whole command tree: no '<bool>' or '<str>', no '{session}', every option
    and argument described, docstring paragraphs not cut where the source wrapped them."""
    from typer.testing import CliRunner

    from nsml.cli.main import command

    root = command()
    runner = CliRunner()
    pages = [((), root), *_commands(root)]
    assert len(pages) > 30
    for path, cmd in pages:
        with runner.isolation(env={"COLUMNS": "1000"}) as (stdout, *_):
            code = root.main([*path, "--help"], prog_name="nsml", standalone_mode=False)
            out = stdout.getvalue().decode()
        assert code == 0, (path, out)
        where = "nsml " + " ".join(path)
        assert not re.search(r"<(bool|str|int|float|path|list)", out), (where, out)
        assert not re.search(r"\{[a-z_]+\}", out), (where, out)
        for para in (cmd.help or "").split("\n\n"):
            assert " ".join(para.split()) in " ".join(out.split("\n")), (where, para)
            assert "\n" not in para or para.startswith(" "), (where, para)
        for param in cmd.params:
            if param.name in ("help", "install_completion", "show_completion"):
                continue
            assert getattr(param, "help", None), f"{where}: {param.name} has no help"
            if param.param_type_name == "argument":  # SESSION, [PATH]: upper case in the usage line
                usage = next(line for line in out.splitlines() if "Usage:" in line)
                assert re.search(rf"[ \[]{(param.metavar or param.name).upper()}\b", usage), (where, usage)


def test_help_through_the_real_command(cli):
    out = cli("rm", "--help").stdout
    assert "Usage: nsml rm [OPTIONS] SESSION..." in out and "--skip" in out
    assert "<bool>" not in out and "{" not in out
