"""Attacks through the spool: what a hostile session writes for its supervisor and the server.

Each test runs a hostile main.py as a real session through the real CLI against a real server
(sandboxed where bubblewrap runs, unconfined otherwise: these attacks go through the platform's
own supervisor and ingest, which must hold either way) and then checks the platform: the blob
store and the stored dataset intact, the session's legitimate metrics stored, a clear `[nsml]`
note in its log, the server alive and within its memory. The disk-full and stop cases run on
servers of their own.
"""

import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nsml.core import spool
from tests.conftest import Server, kill_leftover_supervisors, mount_tmpfs, write_project
from tests.security.conftest import cli_for, host_spool, processes_with

WAIT_S = 120


# -- helpers ----------------------------------------------------------------------------------------
def log_text(srv: Server, name: str) -> str:
    return srv.api.get(f"/api/sessions/{name}/logs").json()["text"]


def started(cli, code: Path, *args: str) -> str:
    out = cli("run", *args, cwd=code).stdout
    line = [ln for ln in out.splitlines() if ln.startswith("Session ")][-1]
    assert line.endswith(" is started"), out
    return line.split()[1]


def ended(srv: Server, name: str, timeout: float = WAIT_S) -> dict:
    info = srv.wait(name, timeout=timeout)
    return info


def wait_for(what: str, check, timeout: float = WAIT_S, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def series(srv: Server, name: str, key: str) -> list:
    resp = srv.api.get(f"/api/sessions/{name}/metrics/{key}")
    return resp.json()["values"] if resp.status_code == 200 else []


def metric_keys(srv: Server, name: str) -> dict:
    return srv.api.get(f"/api/sessions/{name}/metrics").json()


def blob_files(home: Path) -> dict[str, str]:
    """Every stored blob: relative path -> sha256 of its bytes (which is its name)."""
    root = home / "blobs"
    out = {}
    for path in root.rglob("*"):
        if path.is_file() and "tmp" not in path.relative_to(root).parts:
            out[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def vm(pid: int, field: str) -> int:
    """A /proc/PID/status figure (VmRSS, VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def supervisor_of(marker: str) -> int:
    """The supervisor above a session's user process (found by a marker in its arguments)."""
    for pid in processes_with(marker):
        while pid > 1:
            try:
                if b"nsml.scheduler.supervisor" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
                pid = int(next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
                               if ln.startswith("PPid:")).split()[1])
            except (OSError, StopIteration):
                break
    raise AssertionError(f"no supervisor above a process marked {marker}")


def assert_legit(srv: Server, name: str, steps: int) -> None:
    """The session's ordinary metrics, reported around the attack, are all stored."""
    assert series(srv, name, "loss") == [1 / (i + 1) for i in range(steps)], log_text(srv, name)[-2000:]


# The hostile scripts share a prologue: the targets the test hands over, raw journal writes, and
# a legitimate loss reported around the attack.
PROLOGUE = """\
import json, os, sys, time
import nsml
from nsml.client import journal as nsml_journal

T = json.load(open('targets.json'))
SPOOL = os.environ['NSML_SPOOL']
JOURNAL = os.path.join(SPOOL, 'journal.ndjson')

def raw(data):
    nsml_journal.flush()  # what was reported goes first
    with open(JOURNAL, 'ab') as f:
        f.write(data)

def legit(i):
    nsml.report(step=i, loss=1 / (i + 1))
    nsml_journal.flush()
"""


def hostile(folder: Path, body: str, **targets) -> Path:
    return write_project(folder, PROLOGUE + body, **{"targets.json": json.dumps(targets)})


# -- a shared server with a dataset in its blob store -------------------------------------------------
@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("spool-attacks") / "home").start()
    yield server
    server.stop()
    kill_leftover_supervisors(server.home)


@pytest.fixture(scope="module")
def dataset(srv, tmp_path_factory):
    folder = tmp_path_factory.mktemp("spool-data")
    (folder / "train").mkdir()
    (folder / "test").mkdir()
    (folder / "train" / "train_data").write_bytes(os.urandom(50_000))
    (folder / "test" / "test_data").write_text("5,6\n")
    (folder / "test" / "test_label").write_text(f"{secrets.token_hex(8)}\n")
    cli = cli_for(srv, tmp_path_factory.mktemp("spool-cli"))
    cli("dataset", "push", "victim", folder)
    return {"name": "victim", "folder": folder, "cli": cli}


@pytest.fixture
def secret_file(tmp_path):
    """A root-owned 0600 file outside every session."""
    path = tmp_path / "outside" / "root-secret"
    path.parent.mkdir()
    text = f"ROOT-SECRET-{secrets.token_hex(16)}"
    path.write_text(text)
    path.chmod(0o600)
    return path, text


def assert_dataset_intact(srv: Server, dataset: dict, before: dict[str, str], tmp_path: Path) -> None:
    after = blob_files(srv.home)
    missing = {p for p in before if p not in after}
    changed = {p for p in before if p in after and after[p] != before[p]}
    assert not missing and not changed, f"blobs removed: {sorted(missing)[:5]}, changed: {sorted(changed)[:5]}"
    assert all(p.replace("/", "") == sha for p, sha in after.items()), "a blob's bytes do not match its name"
    cli = dataset["cli"]
    cli("dataset", "push", "-f", dataset["name"], dataset["folder"])  # dedupes by sha: the blobs must be right
    pulled = tmp_path / "pulled"
    cli("dataset", "pull", dataset["name"], pulled)
    for original in (p for p in dataset["folder"].rglob("*") if p.is_file()):
        assert (pulled / original.relative_to(dataset["folder"])).read_bytes() == original.read_bytes()


# -- paths out of the spool ---------------------------------------------------------------------------
ESCAPES = """
legit(0)
home = T['home']
dirs = ['../' * k + 'blobs' for k in range(1, 7)] + ['checkpoints/../../../blobs', 'checkpoints/../../../../blobs',
        home + '/blobs', home, '/', 'checkpoints', 'checkpoints/', 'checkpoints/.', '.', '']
for d in dirs:
    raw(json.dumps({'k': 'c', 'w': time.time(), 'name': 'stolen', 'dir': d}).encode() + b'\\n')
raw(b'{"k":"c","w":1,"name":"../../x","dir":"checkpoints/a"}\\n')
legit(1)
nsml.bind(save=lambda d: open(os.path.join(d, 'model.pkl'), 'w').write('good weights'), load=lambda d: None)
nsml.save('good')
legit(2)
time.sleep(1)
legit(3)
print('ESCAPES WRITTEN', flush=True)
"""


def test_checkpoint_lines_that_point_out_of_the_spool_upload_and_delete_nothing(srv, dataset, tmp_path):
    before = blob_files(srv.home)
    assert before, "the dataset's blobs should be there to be attacked"
    cli = cli_for(srv, tmp_path / "work")
    name = started(cli, hostile(tmp_path / "code", ESCAPES, home=str(srv.home)), "-d", dataset["name"])
    info = ended(srv, name)
    text = log_text(srv, name)
    assert info["status"] == "exited", f"{info}\n{text[-3000:]}"
    assert "ESCAPES WRITTEN" in text
    assert "[nsml] a checkpoint line in the journal was refused" in text
    checkpoints = srv.api.get(f"/api/sessions/{name}/checkpoints").json()
    assert [c["name"] for c in checkpoints] == ["good"], checkpoints
    assert_legit(srv, name, 4)
    assert_dataset_intact(srv, dataset, before, tmp_path)


LINKS = """
legit(0)
home, secret = T['home'], T['secret']
ckpts = os.path.join(SPOOL, 'checkpoints')
os.makedirs(ckpts, exist_ok=True)
os.symlink(home + '/blobs', os.path.join(ckpts, 'linked-folder'))
raw(json.dumps({'k': 'c', 'w': 1, 'name': 'linked-folder', 'dir': 'checkpoints/linked-folder'}).encode() + b'\\n')

def save_links(d):
    open(os.path.join(d, 'ok.txt'), 'w').write('fine')
    os.symlink(secret, os.path.join(d, 'model.pkl'))
    os.symlink(home + '/blobs', os.path.join(d, 'blobs'))
nsml.bind(save=save_links, load=lambda d: None)
nsml.save('linked-files')
legit(1)

def save_subfolder_link(d):
    os.symlink(home + '/blobs', os.path.join(d, 'sub'))
nsml.save('linked-subfolder', save_fn=save_subfolder_link)
legit(2)
time.sleep(1)
# last: the checkpoints folder itself swapped for a link to the home (checkpoints/blobs is then the blob store)
os.rename(ckpts, ckpts + '.old')
os.symlink(home, ckpts)
raw(json.dumps({'k': 'c', 'w': 1, 'name': 'swapped', 'dir': 'checkpoints/blobs'}).encode() + b'\\n')
legit(3)
time.sleep(1)
print('LINKS WRITTEN', flush=True)
"""


def test_linked_checkpoint_folders_and_files_are_refused(srv, dataset, secret_file, tmp_path):
    secret, secret_text = secret_file
    before = blob_files(srv.home)
    cli = cli_for(srv, tmp_path / "work")
    name = started(cli, hostile(tmp_path / "code", LINKS, home=str(srv.home), secret=str(secret)), "-d", dataset["name"])
    info = ended(srv, name)
    text = log_text(srv, name)
    assert info["status"] == "exited", f"{info}\n{text[-3000:]}"
    assert "LINKS WRITTEN" in text
    assert "[nsml] checkpoint 'linked-folder' was not uploaded: 'checkpoints/linked-folder' goes through a symbolic link" in text
    assert "[nsml] checkpoint 'linked-files' was not uploaded: 'blobs' is a symbolic link" in text \
        or "[nsml] checkpoint 'linked-files' was not uploaded: 'model.pkl' is a symbolic link" in text, text[-3000:]
    assert "[nsml] checkpoint 'linked-subfolder' was not uploaded: 'sub' is a symbolic link" in text
    assert "[nsml] checkpoint 'swapped' was not uploaded: 'checkpoints/blobs' goes through a symbolic link" in text
    assert srv.api.get(f"/api/sessions/{name}/checkpoints").json() == []
    assert secret_text not in text and secret.read_text() == secret_text
    for path in (srv.home / "blobs").rglob("*"):
        if path.is_file():
            assert secret_text.encode() not in path.read_bytes(), "the secret reached the blob store"
    assert_legit(srv, name, 4)
    assert_dataset_intact(srv, dataset, before, tmp_path)


# -- sizes -------------------------------------------------------------------------------------------
HUGE_LINE = """
legit(0)
size = T['size']
nsml_journal.flush()
with open(JOURNAL, 'ab') as f:
    f.write(b'{"k":"m","w":1,"step":1,"v":{"x":"')
    block = b'A' * (1 << 20)
    for _ in range(size >> 20):
        f.write(block)
    f.write(b'"}}\\n')
legit(1)
print('HUGE LINE WRITTEN', flush=True)
release = os.path.join(SPOOL, 'release')
deadline = time.time() + 90
while not os.path.exists(release) and time.time() < deadline:
    time.sleep(0.1)
legit(2)
"""


def test_a_huge_journal_line_is_skipped_and_costs_the_server_no_memory(srv, tmp_path):
    size = 64 << 20  # far over MAX_LINE (1 MiB); the 400 MB took the server to 3 GB
    assert size > 16 * spool.MAX_LINE
    srv.api.get("/api/sessions").raise_for_status()  # warm: the routes and the store are loaded
    server_peak = vm(srv.proc.pid, "VmHWM")
    marker = f"huge-{secrets.token_hex(4)}"
    cli = cli_for(srv, tmp_path / "work")
    name = started(cli, hostile(tmp_path / "code", HUGE_LINE, size=size), "-a", marker)
    text = wait_for("the skip note", lambda: (t := log_text(srv, name)) and "was skipped" in t and t, timeout=WAIT_S)
    supervisor_peak = vm(supervisor_of(marker), "VmHWM")
    (host_spool(srv, name, marker) / "release").write_text("")
    info = ended(srv, name)
    assert info["status"] == "exited", f"{info}\n{log_text(srv, name)[-3000:]}"
    assert "[nsml] a journal line of 64.0 MiB was skipped: lines may be at most 1.0 MiB" in text
    assert_legit(srv, name, 3)  # the lines after it were shipped: the server's offset moved past it
    grew = vm(srv.proc.pid, "VmHWM") - server_peak
    print(f"server peak grew by {grew >> 20} MiB; supervisor peak {supervisor_peak >> 20} MiB")
    assert grew < 200 << 20, f"the server's peak memory grew by {grew >> 20} MiB"
    assert supervisor_peak < 150 << 20, f"the supervisor held {supervisor_peak >> 20} MiB"


KEY_FLOOD = """
legit(0)
for start in range(0, 3000, 100):
    nsml.report(**{f'flood_{i}': i for i in range(start, start + 100)})
nsml.report(**{'k' * 300: 1.0, 'ok': 2.0})
nsml.report(note='x' * 100_000, hist=list(range(100)))
legit(1)
print('FLOOD WRITTEN', flush=True)
"""


def test_a_flood_of_metric_keys_and_over_long_keys_and_values_is_bounded(srv, tmp_path):
    cli = cli_for(srv, tmp_path / "work")
    name = started(cli, hostile(tmp_path / "code", KEY_FLOOD))
    info = ended(srv, name)
    text = log_text(srv, name)
    assert info["status"] == "exited", f"{info}\n{text[-3000:]}"
    keys = metric_keys(srv, name)
    assert len(keys) == spool.MAX_SERIES and keys["loss"] == 2, len(keys)
    assert all(0 < len(k) <= spool.MAX_KEY for k in keys) and "note" not in keys
    assert f"[nsml] the metric flood_{spool.MAX_SERIES - 1} was not stored: a session may report at most {spool.MAX_SERIES} different keys" in text
    assert f"(300 characters) was not stored: keys may be 1 to {spool.MAX_KEY} characters" in text
    assert f"[nsml] the value of note (100002 bytes as JSON) was not stored: values may be at most {spool.MAX_VALUE} bytes" in text
    assert_legit(srv, name, 2)
    assert cli("ps", "-a").returncode == 0


NON_FINITE = """
for i in range(10):
    loss = float('nan') if i in (5, 7) else float('inf') if i == 6 else 1 / (i + 1)
    nsml.report(step=i, loss=loss)
nsml.report(step=10, acc=-float('inf'), hist=[1.0, float('nan')], summary=True)
nsml.report(step=float('nan'), other=1.0)
print('NON-FINITE REPORTED', flush=True)
"""


def test_nan_and_infinities_are_not_stored_and_noted_once_per_key(srv, tmp_path):
    cli = cli_for(srv, tmp_path / "work")
    name = started(cli, hostile(tmp_path / "code", NON_FINITE))
    info = ended(srv, name)
    text = log_text(srv, name)
    assert info["status"] == "exited", f"{info}\n{text[-3000:]}"  # a NaN loss does not crash training
    assert series(srv, name, "loss") == [1 / (i + 1) for i in range(10) if i not in (5, 6, 7)]
    assert "[nsml] loss=nan at step 5 was not stored: metric values must be finite numbers" in text
    assert text.count("[nsml] loss=") == 1, "one note per key (the inf at step 6 too), not one per step"
    assert "[nsml] acc=-inf at step 10 was not stored" in text
    assert "[nsml] the value of hist at step 10 holds NaN or an infinity" in text
    assert "step=nan is not a finite number" in text
    assert set(metric_keys(srv, name)) == {"loss", "other"}
    summary = srv.session(name)["summary"]  # served as strict JSON: no NaN anywhere
    assert summary == {"step": 10}, summary
    assert cli("ps", "-a").returncode == 0


GARBAGE = """
legit(0)
raw(b'\\xff\\xfe\\xfd not utf-8 at all\\n')
raw(b'not json\\n{"k":"m"\\n[1, 2, 3]\\n"a string"\\n{"k": "zz", "v": {"x": 1}}\\n' + b'[' * 50000 + b'\\n')
raw(b'{"k":"m","w":"yesterday","step":{"no":1},"v":{"weird":1}}\\n{"k":"m","w":NaN,"v":[1]}\\n')
legit(1)
raw(b'{"k":"m","v":{"torn": 1')  # a line never finished
"""


def test_a_journal_of_garbage_lines_is_skipped_with_a_note(srv, tmp_path):
    cli = cli_for(srv, tmp_path / "work")
    name = started(cli, hostile(tmp_path / "code", GARBAGE))
    info = ended(srv, name)
    text = log_text(srv, name)
    assert info["status"] == "exited", f"{info}\n{text[-3000:]}"
    assert "[nsml] a journal line that is not JSON was skipped" in text
    assert "[nsml] a journal line that is not a metrics or checkpoint record was skipped" in text
    assert_legit(srv, name, 2)
    assert "torn" not in metric_keys(srv, name)
    assert srv.api.get("/api/sessions").status_code == 200


# -- a full disk, and stop --------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A server whose home (database, blobs, logs, run directories) is a 48 MB tmpfs."""
    home = tmp_path / "home"
    home.mkdir()
    mount_tmpfs(home, "48m")
    servers = []

    def start(**env) -> Server:
        server = Server(home, env={k: str(v) for k, v in env.items()}).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
        kill_leftover_supervisors(server.home)
    subprocess.run(["umount", "-l", str(home)], check=False)


def fill(folder: Path) -> Path:
    """A file that takes every free byte of the disk under `folder`."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
        except OSError:
            pass
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


RUNS_ON = """
import signal
if T.get('ignore_sigterm'):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL ends it
i = 0
while True:
    try:
        legit(i)
        print('tick', i, flush=True)
    except OSError:
        pass  # the disk is full: a careless script goes on
    i += 1
    time.sleep(0.2)
"""


def user_processes_gone(marker: str) -> bool:
    return not [pid for pid in processes_with(marker) if b"nsml.scheduler.supervisor" not in Path(f"/proc/{pid}/cmdline").read_bytes()]


def test_a_full_disk_fails_the_session_with_disk_full_in_bounded_time(small_disk, tmp_path):
    srv = small_disk(NSML_DISK_FULL_RETRY_S=3)
    cli = cli_for(srv, tmp_path / "work")
    marker = f"full-{secrets.token_hex(4)}"
    name = started(cli, hostile(tmp_path / "code", RUNS_ON), "-a", marker)
    wait_for("metrics", lambda: len(series(srv, name, "loss")) >= 3)
    filler = fill(srv.home)
    try:
        t0 = time.monotonic()
        wait_for("the user process to end", lambda: user_processes_gone(marker), timeout=60)
        assert time.monotonic() - t0 < 3 + 10 + 15  # retries, the grace period, and slack for a loaded machine
    finally:
        filler.unlink()  # the exit report, retried, gets through now
    info = ended(srv, name, timeout=60)
    assert info["status"] == "failed", info
    assert info["error"].startswith("disk full: "), info
    assert "disk" in info["error"] and ("server's disk is full" in info["error"] or str(srv.home) in info["error"]), info
    assert len(series(srv, name, "loss")) >= 3  # what was stored before stays
    after = started(cli, write_project(tmp_path / "after", "import nsml\nnsml.report(step=0, loss=1.0)\nprint('fine')\n"))
    assert ended(srv, after)["status"] == "exited" and series(srv, after, "loss") == [1.0]


def test_stop_ends_a_session_within_10_s_while_the_server_refuses_everything(small_disk, tmp_path):
    srv = small_disk(NSML_DISK_FULL_RETRY_S=600)  # the disk-full failure must not be what ends it
    cli = cli_for(srv, tmp_path / "work")
    marker = f"refused-{secrets.token_hex(4)}"
    name = started(cli, hostile(tmp_path / "code", RUNS_ON, ignore_sigterm=True), "-a", marker)
    wait_for("metrics", lambda: len(series(srv, name, "loss")) >= 3)
    filler = fill(srv.home)
    try:
        time.sleep(3)  # the supervisor is retrying posts that the full disk refuses
        t0 = time.monotonic()
        # In the background: the command waits up to 20 s for a final status, which a full disk
        # keeps the server from recording; the session must end meanwhile all the same.
        stopping = subprocess.Popen([sys.executable, "-m", "nsml", "stop", name], cwd=cli.cwd, env=cli.env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for("the user process to end", lambda: user_processes_gone(marker), timeout=30, every=0.05)
        took = time.monotonic() - t0
        # SIGKILL 10 s after the supervisor's SIGTERM; the command's start-up and request come before it
        assert took < 12.5, f"the session ended {took:.1f} s after nsml stop was run"
        out = stopping.communicate(timeout=60)[0]
        assert stopping.returncode == 0 and "is stopping" in out, out
    finally:
        filler.unlink()
    assert ended(srv, name, timeout=60)["status"] == "stopped"


def test_stop_ends_a_session_within_10_s_while_the_server_is_unreachable(tmp_path):
    srv = Server(tmp_path / "home").start()
    try:
        cli = cli_for(srv, tmp_path / "work")
        marker = f"away-{secrets.token_hex(4)}"
        name = started(cli, hostile(tmp_path / "code", RUNS_ON, ignore_sigterm=True), "-a", marker)
        wait_for("metrics", lambda: len(series(srv, name, "loss")) >= 3)
        supervisor = supervisor_of(marker)
        srv.stop(signal.SIGKILL)  # the server is gone; the supervisor keeps retrying
        time.sleep(2)
        t0 = time.monotonic()
        os.kill(supervisor, signal.SIGTERM)  # what the executor's stop sends
        wait_for("the user process to end", lambda: user_processes_gone(marker), timeout=30, every=0.05)
        took = time.monotonic() - t0
        assert took < 11.5, f"the stop took {took:.1f} s with the server away"
        srv.start()  # back on its port: the supervisor's exit report gets through
        assert ended(srv, name, timeout=60)["status"] == "stopped"
        assert len(series(srv, name, "loss")) >= 3
    finally:
        srv.stop()
        kill_leftover_supervisors(srv.home)


# The batch and configuration lines (nsml/core/spool.py) are the session's to write too.
BATCH_AND_CONFIG = """
legit(0)
names = ['step'] + [f'k{i}' for i in range(1500)] + ['walltime']
raw((json.dumps({'k': 'b', 'c': names, 'r': [[1] + [0.5] * 1500 + [1.0]]}) + '\\n').encode())  # past MAX_SERIES
raw(b'{"k":"b","c":["step","x","walltime"],"r":[[1,"text",1.0],[2,1e999,1.0],[3,NaN,1.0],[4,123456789012345678901234567890,1.0]]}\\n')
raw(b'{"k":"b","c":["step","x","x","walltime"],"r":[[1,2,3,4]]}\\n{"k":"b","c":[{"a":1},"walltime"],"r":[[1,2]]}\\n')
raw(b'{"k":"b","c":["step","x","walltime"],"r":[[1,2]]}\\n{"k":"b","c":"walltime","r":7}\\n')
raw((json.dumps({'k': 'b', 'c': ['step', 'y' * 300, 'walltime'], 'r': [[1, 1.0, 1.0]]}) + '\\n').encode())
raw((json.dumps({'k': 'p', 'w': 1.0, 'v': {"lr'); DROP TABLE sessions; --": 1, 'k' * 300: 1, 'big': 'x' * 100000}}) + '\\n').encode())
raw((json.dumps({'k': 'p', 'w': 1.0, 'v': {f'p{i}': i for i in range(5000)}}) + '\\n').encode())  # past MAX_PARAMS
raw(b'{"k":"p","w":1.0,"v":[1,2,3]}\\n{"k":"p"}\\n')
legit(1)
"""


def test_batch_and_configuration_lines_cannot_overflow_the_store_or_reach_other_sessions(srv, tmp_path):
    from nsml.core.params import MAX_PARAMS
    from nsml.core.spool import MAX_SERIES

    cli = cli_for(srv, tmp_path / "work")
    bystander = started(cli, hostile(tmp_path / "plain", "legit(0)\nlegit(1)\n"))
    ended(srv, bystander)
    before = srv.api.get("/api/runs", params={"param": ["p0"], "q": f"name = {bystander}"}).json()["rows"]
    name = started(cli, hostile(tmp_path / "code", BATCH_AND_CONFIG))
    info = ended(srv, name)
    text = log_text(srv, name)
    assert info["status"] == "exited", f"{info}\n{text[-3000:]}"
    assert_legit(srv, name, 2)
    keys = metric_keys(srv, name)
    assert len(keys) <= MAX_SERIES and "y" * 300 not in keys
    assert f"a session may report at most {MAX_SERIES} different keys" in text
    assert "[nsml] a journal batch line that is not well formed was skipped" in text
    assert f"a session has at most {MAX_PARAMS} parameters" in text
    assert "[nsml] a configuration line without values was skipped" in text
    params = srv.api.get("/api/runs", params={"q": f"name = {name}", "param": ["p0", "big", "lr'); DROP TABLE sessions; --"]}).json()
    [row] = params["rows"]
    assert row["params"]["p0"] == 0 and row["params"]["big"] is None  # over MAX_TEXT: not stored
    assert row["params"]["lr'); DROP TABLE sessions; --"] == 1  # a key is only a key
    assert srv.api.get("/api/runs", params={"param": ["p0"], "q": f"name = {bystander}"}).json()["rows"] == before
    assert before[0]["params"] == {"p0": None}  # the bystander got none of it
    assert cli("ps", "-a").returncode == 0


# The stop-and-go lines (nsml.client.stopgo) are the session's to write as well: forged ones may
# mislead the platform about this session only, never end it as paused at a checkpoint the
# server does not hold, and never touch another session.
STOP_AND_GO = """
legit(0)
raw(b'{"k":"g","w":1.0,"e":"ready"}\\n')  # "pausable", with nothing bound
raw(b'{"k":"g","w":1.0,"e":"paused","name":"../../escape"}\\n{"k":"g","w":1.0,"e":"paused","name":"a/b"}\\n')
raw(b'{"k":"g","w":1.0,"e":"explode"}\\n{"k":"g","w":1.0,"e":"failed","error":{"x":1}}\\n')
raw(b'{"k":"g","w":1.0,"e":"paused","name":"never-saved"}\\n')  # a checkpoint it never saved
raw((json.dumps({'k': 'g', 'w': 1.0, 'e': 'failed', 'error': 'E' * 1000000}) + '\\n').encode())
legit(1)
"""


def test_forged_stop_and_go_lines_mislead_nothing_but_their_own_session(srv, tmp_path):
    cli = cli_for(srv, tmp_path / "work")
    bystander = started(cli, hostile(tmp_path / "plain", "legit(0)\nlegit(1)\n"))
    ended(srv, bystander)
    name = started(cli, hostile(tmp_path / "code", STOP_AND_GO))
    info = ended(srv, name)
    text = log_text(srv, name)
    assert info["status"] == "exited" and info["pause_checkpoint"] == "never-saved", f"{info}\n{text[-3000:]}"
    assert_legit(srv, name, 2)
    assert "a stop-and-go line of the journal was skipped" in text
    # written by the server after the supervisor's last log (it used to be lost)
    assert "[nsml] the pause checkpoint never-saved did not reach the server; the session ends as it would have." in text
    assert len(info["pause_error"]) <= spool.MAX_PAUSE_ERROR
    assert all(not e.startswith("paused") for e in
               [ev["status"] for ev in srv.api.get(f"/api/web/sessions/{name}/info").json()["events"]])
    other = srv.session(bystander)
    assert (other["pausable"], other["pause_checkpoint"], other["pause_error"], other["status"]) == (False, "", "", "exited")
    assert cli("ps", "-a").returncode == 0
