"""`nsml ps` pages: the newest 50 by default, a line on stderr about the rest, --limit, --page,
--offset, --all-rows; plain aligned lines for pipes and long listings, a table for a screenful
on a terminal; -j lists everything unless paged explicitly.

The sessions are rows put into the store before the server starts (ended ones, so the
scheduler leaves them alone): 120 of them, a minute apart, the newest last.
"""

import json
import os
import pty
import select
import subprocess
import sys
import time
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from tests.conftest import Cli, Server, check_failed, cli_in, kill_leftover_supervisors

TOTAL = 120
OWNERS, DATASETS = ("alice", "bob", "carol"), ("mnist", "cifar", "kin")


def insert_sessions(home: Path, total: int = TOTAL) -> list[str]:
    """`total` ended sessions in HOME's database, created a minute apart; their names, newest
    first. bob's are public, the others team-visible with no team (so only their owners and
    admins read them); session 7 (from the oldest) has a two-line memo."""
    from nsml.store.sql import open_store
    from nsml.store.sql.models import SessionCounterRow, SessionRow

    home.mkdir(parents=True, exist_ok=True)
    store = open_store(f"sqlite:///{home / 'nsml.db'}")
    counters: dict[tuple[str, str], int] = {}
    rows, t0 = [], time.time() - 60 * total
    for i in range(total):
        owner, dataset = OWNERS[i % 3], DATASETS[(i // 3) % 3]
        counters[owner, dataset] = counters.get((owner, dataset), 0) + 1
        status = ("exited", "failed", "stopped")[i % 3]
        rows.append(dict(
            owner=owner, dataset=dataset, number=counters[owner, dataset], entry="main.py", args=f"--seed {i}",
            status=status, cpus=1.0, memory=1 << 30, gpus=0, gpu_ids="", created=t0 + 60 * i, started=t0 + 60 * i + 1,
            ended=t0 + 60 * i + 30, memo="first line\nsecond line" if i == 6 else f"run {i}", exit_code=1 if status == "failed" else 0,
            error="Traceback (most recent call last):\nValueError: bad seed" if status == "failed" else "", image="",
            summary=json.dumps({"epoch": i}), last_values="{}", journal_offset=0, log_offset=0, report_count=0,
            kind="normal", source="", source_checkpoint="", visibility="public" if owner == "bob" else "team"))
    with store.engine.begin() as conn:
        conn.execute(SessionRow.__table__.insert(), rows)
        conn.execute(SessionCounterRow.__table__.insert(), [dict(owner=o, dataset=d, last=n) for (o, d), n in counters.items()])
    store.close()
    return [f"{r['owner']}/{r['dataset']}/{r['number']}" for r in reversed(rows)]


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """(the server, every session's name newest first)."""
    home = tmp_path_factory.mktemp("ps_paging") / "home"
    names = insert_sessions(home)
    srv = Server(home).start()
    yield srv, names
    srv.stop()
    kill_leftover_supervisors(srv.home)


@pytest.fixture
def cli(many, tmp_path) -> Cli:
    return cli_in(many[0], tmp_path / "work")


@pytest.fixture
def names(many) -> list[str]:
    return many[1]


def listed(stdout: str) -> list[str]:
    """The names in ps's plain output: the lines after the header and its rule."""
    lines = stdout.splitlines()
    assert lines[0].split() == ["Name", "Created", "Args", "Status", "Type", "Summary", "Description"]
    assert set(lines[1]) == {"─"}
    return [line.split()[0] for line in lines[2:]]


def test_ps_shows_the_newest_50_and_says_how_to_see_the_rest(cli, names):
    proc = cli("ps", "-a")
    assert listed(proc.stdout) == names[:50]
    assert proc.stderr.strip() == "Sessions 1-50 of 120, newest first. More: --page 2 (or --limit N, --all-rows)."


def test_pages_limits_and_offsets_cover_the_listing(cli, names):
    pages = [cli("ps", "-a", "--page", p) for p in (1, 2, 3)]
    assert sum((listed(p.stdout) for p in pages), []) == names
    assert pages[2].stderr.strip() == "Sessions 101-120 of 120, newest first."
    assert listed(cli("ps", "-a", "--all-rows").stdout) == names
    assert listed(cli("ps", "-a", "--limit", "0").stdout) == names

    small = cli("ps", "-a", "--limit", "7", "--page", "2")
    assert listed(small.stdout) == names[7:14]
    assert small.stderr.strip() == "Sessions 8-14 of 120, newest first. More: --page 3 --limit 7 (or --limit N, --all-rows)."
    skipped = cli("ps", "-a", "--offset", "10", "--limit", "5")
    assert listed(skipped.stdout) == names[10:15]
    assert "More: --offset 15" in skipped.stderr
    assert listed(cli("ps", "-a", "--offset", "115").stdout) == names[115:]


def test_last_n_shows_all_n_as_nsml_did(cli, names):
    proc = cli("ps", "-a", "-n", "70")
    assert listed(proc.stdout) == names[:70] and proc.stderr == ""
    paged = cli("ps", "-a", "-n", "70", "--page", "2")  # pages within those 70
    assert listed(paged.stdout) == names[50:70]
    assert paged.stderr.strip() == "Sessions 51-70 of 70, newest first."


def test_filters_count_what_they_select(cli, names):
    bobs = [n for n in names if fnmatchcase(n, "bob/*")]
    proc = cli("ps", "-a", "-s", "bob/*", "--limit", "5")
    assert listed(proc.stdout) == bobs[:5]
    assert f"of {len(bobs)}," in proc.stderr
    kin = [n for n in names if n.split("/")[1] == "kin"]
    assert listed(cli("ps", "-a", "-d", "kin", "--all-rows").stdout) == kin
    assert listed(cli("ps").stdout) == []  # every session ended: nothing running or queued, no hint
    assert cli("ps").stderr == ""


def test_plain_lines_keep_each_session_on_one_aligned_line(cli, names):
    lines = cli("ps", "-a", "--all-rows").stdout.splitlines()
    assert len(lines) == 2 + TOTAL
    column = lines[0].index("Args")
    assert all(line[column:].startswith("main.py --seed ") for line in lines[2:])
    two_lines = next(line for line in lines if line.startswith(names[-7] + " "))
    assert two_lines.rstrip().endswith("first line second line")
    failed = next(line for line in lines[2:] if "Failed" in line)
    assert "Failed (1)" in failed and "ValueError: bad seed" in failed


def test_json_lists_everything_unless_paged(cli, names):
    proc = cli("ps", "-a", "-j")
    assert [s["name"] for s in json.loads(proc.stdout)] == names and proc.stderr == ""
    page = cli("ps", "-a", "-j", "--page", "2")
    assert [s["name"] for s in json.loads(page.stdout)] == names[50:100]
    assert page.stderr.strip().startswith("Sessions 51-100 of 120")
    assert [s["name"] for s in json.loads(cli("ps", "-a", "-j", "--limit", "3").stdout)] == names[:3]


def test_past_the_end_and_contradictions_are_explained(cli):
    past = cli("ps", "-a", "--page", "9")
    assert listed(past.stdout) == []
    assert past.stderr.strip() == "Nothing to show at page 9: there are 120 sessions (3 pages of 50)."
    assert "page or --offset, not both" in check_failed(cli("ps", "-a", "--page", "2", "--offset", "5", check=False))
    assert "give one of them" in check_failed(cli("ps", "-a", "--all-rows", "--limit", "3", check=False))
    assert "needs a page size" in check_failed(cli("ps", "-a", "--all-rows", "--page", "2", check=False))
    assert cli("ps", "-a", "--limit", "-1", check=False).returncode == 2  # a usage error


def on_terminal(cli: Cli, *args: str) -> str:
    """What `nsml ARGS` writes to a pseudo-terminal 200 columns wide (stdout and stderr)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "nsml", *args], cwd=cli.cwd, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, env={**cli.env, "COLUMNS": "200", "LINES": "50", "TERM": "xterm"})
    os.close(slave)
    out = bytearray()
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                raise AssertionError(f"nsml {' '.join(args)} wrote nothing for 60 s")
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        proc.wait(60)
        os.close(master)
    assert proc.returncode == 0, out.decode(errors="replace")
    return out.decode(errors="replace").replace("\r\n", "\n")


def test_a_terminal_gets_a_table_for_a_screenful_and_lines_beyond(cli, names):
    table = on_terminal(cli, "ps", "-a", "--limit", "3")
    assert "\x1b[" in table  # Rich's bold header: the table, not plain lines
    assert all(n in table for n in names[:3]) and names[3] not in table
    assert "Sessions 1-3 of 120" in table
    long = on_terminal(cli, "ps", "-a", "--all-rows").splitlines()
    assert "\x1b[" not in "".join(long) and len(long) == 2 + TOTAL
    assert [line.split()[0] for line in long[2:]] == names
