"""The evaluator's position, attacked: a dataset's evaluation.py and `submit -t`, through real
sessions, real submits and the real CLI.

An evaluation.py runs in a bubblewrap sandbox of its own (nsml.scheduler.evaluator): no network,
the labels at /data/NAME/test/test_label and nothing else of the platform, its files in a private
folder removed afterwards. `submit -t` says whether the evaluator returned a number, never the
number, and has its own rate limit. Each hostile script here reports what it managed; the test
fails if anything got through.
"""

import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from nsml.scheduler import bwrap, evaluator
from tests.cli.test_relaunch import PROJECT, TEST_Y, trained, write_board_dataset
from tests.conftest import Cli, Server, check_failed, clean_env, kill_leftover_supervisors, serve_for_module, start_session

MODE = evaluator.sandbox_mode()
sandboxed = pytest.mark.skipif(not MODE.sandboxed, reason=f"no sandbox for the evaluator here: {MODE.detail}")
TESTS_PER_HOUR = 3
EVAL_TIMEOUT = 20
EVAL_MEMORY_MB = 300


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_for_module(tmp_path_factory, "evaluator", env={
        "NSML_TEST_SUBMITS_PER_HOUR": str(TESTS_PER_HOUR), "NSML_EVALUATION_TIMEOUT": str(EVAL_TIMEOUT),
        "NSML_EVALUATION_MEMORY_MB": str(EVAL_MEMORY_MB)})


@pytest.fixture(scope="module")
def cli(server, tmp_path_factory) -> Cli:
    work = tmp_path_factory.mktemp("evaluator-work")
    shutil.copytree(PROJECT, work, dirs_exist_ok=True)
    return Cli(clean_env(server.home), work)


def submit(cli, *args, check=True):
    return cli("submit", *args, check=check, timeout=240)


def board_dataset(cli, tmp_path, name: str, evaluation: str, labels=TEST_Y, **extra) -> None:
    """Push NAME scored by `evaluation`; the source folder is removed (its labels must not lie
    around for the scans below to find)."""
    folder = write_board_dataset(tmp_path / f"{name}-data", labels=labels, **extra)
    script = tmp_path / f"{name}-evaluation.py"
    script.write_text(evaluation)
    cli("dataset", "push", name, folder, "-e", script)
    shutil.rmtree(folder)
    script.unlink()


def fill(template: str, **values) -> str:
    for key, value in values.items():
        template = template.replace(f"@{key}@", str(value))
    return template


def evaluations(server) -> list[Path]:
    folder = server.home / evaluator.WORKSPACE
    return sorted(folder.iterdir()) if folder.is_dir() else []


# -- a normal evaluation.py ---------------------------------------------------------------------
# 2018 style: only --prediction; the labels opened by their fixed path.
FIXED_PATH = """\
import argparse, json, os
p = argparse.ArgumentParser(); p.add_argument('--prediction')
a = p.parse_args()
assert 'test_label' in os.listdir('/data/@name@/test')
labels = open('/data/@name@/test/test_label').read().split()
predictions = [json.loads(line)[1] for line in open(a.prediction) if line.strip()]
print(sum(str(p) == t for p, t in zip(predictions, labels)) / len(labels))
"""


def test_a_normal_evaluation_reads_the_labels_at_data_path_and_scores(server, cli, tmp_path):
    flipped = [1 - y if i < 2 else y for i, y in enumerate(TEST_Y)]  # two of six wrong: 4/6
    board_dataset(cli, tmp_path, "fixed", fill(FIXED_PATH, name="fixed"), labels=flipped)
    source = trained(server, cli, dataset="fixed")
    proc = submit(cli, source, "2")
    assert "Score: 0.6666666666666666" in proc.stdout, proc.stdout + proc.stderr
    assert "without a sandbox" not in proc.stderr if MODE.sandboxed else "without a sandbox" in proc.stderr
    assert evaluations(server) == []  # its private folder is gone


# -- a hostile evaluation.py --------------------------------------------------------------------
HOSTILE = r"""
import json, os, socket, subprocess, sys, time
report = {}

def attempt(name, fn):
    try:
        report[name] = 'GOT:' + repr(fn())[:60]
    except BaseException as exc:
        report[name] = 'no:' + type(exc).__name__ + ':' + str(getattr(exc, 'errno', ''))

def connect(host, port):
    with socket.create_connection((host, port), timeout=3):
        return 'connected'

attempt('tcp_server', lambda: connect('127.0.0.1', @port@))
attempt('tcp_outside', lambda: connect('1.1.1.1', 53))
attempt('tcp_host', lambda: connect(@host_ip@, @port@))
report['interfaces'] = [name for _, name in socket.if_nameindex()]
attempt('read_db', lambda: open('@home@/nsml.db', 'rb').read(16))
attempt('read_token', lambda: open('@home@/token').read())
attempt('list_home', lambda: os.listdir('@home@'))
attempt('list_blobs', lambda: os.listdir('@home@/blobs'))
attempt('read_label_blob', lambda: open('@label_blob@').read())
attempt('list_evaluations', lambda: os.listdir('@home@/evaluations'))
attempt('read_other_session', lambda: open('@victim@').read())
attempt('proc_server_root', lambda: open('/proc/@server_pid@/root@home@/token').read())
attempt('proc_server_environ', lambda: open('/proc/@server_pid@/environ', 'rb').read())
attempt('signal_server', lambda: os.kill(@server_pid@, 0))
attempt('write_home', lambda: open('@home@/pwned', 'w').write('x'))
open('@tmp_marker@', 'w').write('x')  # its /tmp is its own: the host's /tmp must not get it
attempt('write_data', lambda: open('/data/@name@/pwned', 'w').write('x'))
attempt('write_label', lambda: open('/data/@name@/test/test_label', 'a').write('0\n'))
attempt('write_usr', lambda: open('/usr/pwned', 'w').write('x'))
attempt('remount', lambda: subprocess.run(['mount', '-o', 'remount,rw', '/data/@name@'], check=True, capture_output=True))
report['uid'] = os.getuid()
report['data'] = sorted(os.listdir('/data/@name@'))
report['label_ok'] = open('/data/@name@/test/test_label').read().split() == @labels@
# Things left behind: files in its folder and its /tmp, and a daemon that ignores SIGTERM.
open('/app/leftover', 'w').write('x')
open('/tmp/@marker@-tmp', 'w').write('x')
subprocess.Popen([sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)',
                  '@marker@-daemon'], start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
time.sleep(0.5)
print(json.dumps(report, separators=(',', ':')), file=sys.stderr)
sys.exit(1)  # the report reaches the test as the failed submit's error
"""

VICTIM = """\
import os, time
open('/app/victim-secret.txt', 'w').write('victim-@marker@')
print('secret written', flush=True)
time.sleep(300)
"""


def find_on_host(server, session: str, name: str, timeout: float = 60) -> Path:
    """The host path of a file that running session `session` wrote in its /app."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = next(server.home.rglob(name), None)
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{name}, written by {session}, was not found under {server.home} (where are run folders now?); "
                         f"the session: {server.session(session)}")


def host_ip() -> str:
    """An address of this machine other than loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def own_label_blob(server, labels: list) -> Path:
    data = ("\n".join(map(str, labels)) + "\n").encode()
    return server.home / "blobs" / (sha := hashlib.sha256(data).hexdigest())[:2] / sha[2:]


@sandboxed
def test_a_hostile_evaluation_reaches_nothing_and_leaves_nothing(server, cli, tmp_path):
    marker = f"nsml-evil-{uuid.uuid4().hex[:12]}"
    victim_folder = tmp_path / "victim"
    victim_folder.mkdir()
    (victim_folder / "main.py").write_text(fill(VICTIM, marker=marker))
    victim = start_session(cli, cwd=victim_folder)
    secret = find_on_host(server, victim, "victim-secret.txt")
    blob = own_label_blob(server, TEST_Y)
    script = fill(HOSTILE, port=server.url.rsplit(":", 1)[1], host_ip=repr(host_ip()), home=server.home, victim=secret,
                  label_blob=blob, server_pid=server.proc.pid, tmp_marker=f"/tmp/{marker}-host", name="hostile",
                  marker=marker, labels=[str(y) for y in TEST_Y])
    board_dataset(cli, tmp_path, "hostile", script)
    assert blob.is_file()
    blob_before = blob.read_bytes()
    source = trained(server, cli, dataset="hostile")
    proc = submit(cli, source, "2", check=False)
    assert proc.returncode == 1 and "evaluate failed" in proc.stderr, proc.stdout + proc.stderr
    report = json.loads(next(line for line in proc.stderr.splitlines() if line.startswith("{")))
    got = {k: v for k, v in report.items() if isinstance(v, str) and v.startswith("GOT:")}
    assert not got, f"the evaluator got through: {got}"
    # No network at all: a namespace of its own with only its own loopback, where nothing listens
    # (the server's port on the host's loopback is open: refused means another loopback), and
    # every other address unreachable.
    assert report["interfaces"] == ["lo"], report
    assert report["tcp_server"] == "no:ConnectionRefusedError:111", report
    for name in ("tcp_outside", "tcp_host"):
        assert report[name] == "no:OSError:101", report  # ENETUNREACH
    if MODE.drops_uid:  # a uid of its own, never a session's
        assert bwrap.EVALUATOR_UID_BASE <= report["uid"] < bwrap.EVALUATOR_UID_BASE + bwrap.EVALUATOR_UID_SPAN, report
    # Its /data/NAME: the dataset's top-level files and test/, not train/.
    assert report["data"] == ["evaluation.py", "test"] and report["label_ok"], report
    # Nothing written outside, nothing left behind.
    assert not (server.home / "pwned").exists() and not Path(f"/tmp/{marker}-host").exists()
    assert not list(Path("/tmp").glob(f"{marker}*"))
    assert blob.read_bytes() == blob_before
    assert evaluations(server) == []
    time.sleep(1)
    alive = subprocess.run(["pgrep", "-f", f"{marker}-daemon"], capture_output=True, text=True).stdout.split()
    assert not alive, f"processes the evaluator started outlived it: {alive}"
    assert secret.read_text() == f"victim-{marker}"
    cli("stop", victim)


# -- nothing of an evaluation is visible while it runs ------------------------------------------
SLOW_MARKED = """\
import argparse, json, time
p = argparse.ArgumentParser(); p.add_argument('--prediction'); p.add_argument('--test_label_path')
a = p.parse_args()
labels = [line.rsplit('-', 1)[1] for line in open(a.test_label_path).read().split()]
time.sleep(4)  # the window in which the scanners look for the labels
predictions = [json.loads(line)[1] for line in open(a.prediction) if line.strip()]
print(sum(str(p) == t for p, t in zip(predictions, labels)) / len(labels))
"""

SCANNER = """\
import argparse, os, time
p = argparse.ArgumentParser(); p.add_argument('--reversed'); p.add_argument('--seconds', type=float)
a = p.parse_args()
marker = a.reversed[::-1].encode()  # never written down whole, so only the labels hold it
deadline = time.time() + a.seconds
while time.time() < deadline:
    found = []
    for folder, dirs, files in os.walk('/tmp'):
        for name in files:
            path = os.path.join(folder, name)
            try:
                if os.path.getsize(path) < 1 << 20 and marker in open(path, 'rb').read():
                    found.append(path)
            except OSError:
                pass
    print('scan', time.time(), 'found', found, flush=True)
    time.sleep(0.2)
"""


def host_scan(root: Path, marker: bytes, skip: Path) -> list[str]:
    """Files under `root`, outside `skip`, holding `marker`."""
    found = []
    for folder, dirs, files in os.walk(root):
        if Path(folder) == skip or skip in Path(folder).parents:
            dirs.clear()
            continue
        for name in files:
            path = os.path.join(folder, name)
            try:
                if os.path.getsize(path) < 1 << 20 and marker in Path(path).read_bytes():
                    found.append(path)
            except OSError:
                pass
    return found


SCAN_SECONDS = 45  # how long the scanning session looks: the submit and its evaluation fit in it


@sandboxed
def test_a_concurrent_session_cannot_find_the_labels_while_an_evaluation_runs(server, cli, tmp_path):
    marker = f"lbl{uuid.uuid4().hex[:16]}"
    labels = [f"{marker}-{y}" for y in TEST_Y]
    board_dataset(cli, tmp_path, "marked", SLOW_MARKED, labels=labels)
    source = trained(server, cli, dataset="marked")
    scanner_folder = tmp_path / "scanner"
    scanner_folder.mkdir()
    (scanner_folder / "main.py").write_text(SCANNER)
    scanner = start_session(cli, "-a", f"--reversed {marker[::-1]} --seconds {SCAN_SECONDS}", cwd=scanner_folder)
    window, host_found, stop = [], [], threading.Event()

    def watch():  # when the evaluation's private folder exists (timestamps only: never slowed down)
        while not stop.is_set():
            if evaluations(server):
                window.append(time.time())
            time.sleep(0.05)

    def scan_host():  # what the host's /tmp shows meanwhile (a walk of /tmp takes a while)
        while not stop.is_set():
            if evaluations(server):
                host_found.extend(host_scan(Path("/tmp"), marker.encode(), skip=server.home))
                try:
                    modes.extend(os.stat(f).st_mode & 0o777 for f in evaluations(server) + [server.home / evaluator.WORKSPACE])
                except FileNotFoundError:
                    pass  # the evaluation just ended and its folder went
            time.sleep(0.1)

    modes: list[int] = []
    # The scanner must be scanning before the submit starts (a loaded machine starts it late).
    deadline = time.monotonic() + 60
    while "scan " not in cli("logs", scanner).stdout and time.monotonic() < deadline:
        time.sleep(0.2)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    threading.Thread(target=scan_host, daemon=True).start()
    try:
        proc = submit(cli, source, "2")
    finally:
        stop.set()
        watcher.join(10)
    assert "Score: 1.0" in proc.stdout, proc.stderr
    assert window, "the evaluation's private folder was never seen"
    assert host_found == [], f"the labels lay outside the private folder: {host_found}"
    assert all(mode == 0o700 for mode in modes), [oct(m) for m in modes]
    assert server.wait(scanner, timeout=SCAN_SECONDS + 60)["status"] == "exited"  # all its log shipped
    scans = []
    for line in cli("logs", scanner).stdout.splitlines():
        if line.startswith("scan "):
            _, when, _, found = line.split(" ", 3)
            scans.append((float(when), found))
    during = [found for when, found in scans if window[0] <= when <= window[-1]]
    assert during, (f"the scanner never ran during the evaluation ({len(scans)} scans, "
                    f"{scans[0][0] if scans else '-'}..{scans[-1][0] if scans else '-'}; evaluation {window[0]}..{window[-1]})")
    assert all(found == "[]" for _, found in scans), [f for _, f in scans if f != "[]"]


# -- submit -t: no score, its own rate limit ----------------------------------------------------
OFFSET = """\
import argparse, json, sys
p = argparse.ArgumentParser(); p.add_argument('--prediction'); p.add_argument('--test_label_path')
a = p.parse_args()
labels = open(a.test_label_path).read().split()
predictions = [json.loads(line)[1] for line in open(a.prediction) if line.strip()]
score = sum(str(p) == t for p, t in zip(predictions, labels)) / len(labels) + 7.0123  # a number to look for
print(score)
if '@fail@' == 'yes':
    sys.exit('boom: the evaluator fell over after printing its score')
"""


def no_number(text: str) -> bool:
    return "8.0123" not in text and "7.0123" not in text


def test_submit_t_says_the_evaluator_returned_a_score_but_never_shows_it(server, cli, tmp_path):
    board_dataset(cli, tmp_path, "oracle", fill(OFFSET, fail="no"))
    source = trained(server, cli, dataset="oracle")
    proc = submit(cli, source, "2", "-t")
    assert "Test submit OK: the evaluator returned a score (not shown" in proc.stdout, proc.stdout + proc.stderr
    assert "Score" not in proc.stdout and no_number(proc.stdout + proc.stderr)
    runner = next(s for s in json.loads(cli("ps", "-a", "-j").stdout) if s["kind"] == "submit_test" and s["source"] == source)
    # Every place a submission or its session is exposed: the submission, the dataset's list, the
    # board (--all too), the runner's session JSON and log, the database, the server's log.
    api = server.api
    subs = api.get("/api/datasets/oracle/submissions").json()
    (mine,) = [s for s in subs if s["session"] == source and s["test"]]
    assert mine["status"] == "scored" and mine["score"] is None
    assert api.get(f"/api/submissions/{mine['id']}").json()["score"] is None
    exposed = [json.dumps(subs), api.get(f"/api/submissions/{mine['id']}").text, server.session(runner["name"]).__repr__(),
               cli("dataset", "board", "oracle", "--all", "-j").stdout, cli("logs", runner["name"]).stdout,
               (server.home / "server.log").read_text()]
    assert all(no_number(text) for text in exposed), [t[:300] for t in exposed if not no_number(t)]
    assert json.loads(exposed[3])["rows"] == []
    with sqlite3.connect(server.home / "nsml.db") as db:
        assert db.execute("SELECT score FROM submissions WHERE id = ?", (mine["id"],)).fetchone() == (None,)
    # The same checkpoint, ranked: the score is there.
    assert "Score: 8.0123" in submit(cli, source, "2").stdout


def test_submit_t_names_a_failing_step_without_the_evaluators_stdout(server, cli, tmp_path):
    board_dataset(cli, tmp_path, "oracle-fails", fill(OFFSET, fail="yes"))
    source = trained(server, cli, dataset="oracle-fails")
    proc = submit(cli, source, "2", "-t", check=False)
    assert proc.returncode == 1 and "evaluate failed" in proc.stderr, proc.stdout + proc.stderr
    assert "boom: the evaluator fell over" in proc.stderr  # its stderr, for debugging
    assert no_number(proc.stdout + proc.stderr)  # its stdout, where the score is printed, never
    ranked = submit(cli, source, "2", check=False)  # a ranked submit shows all of it, as before
    assert "boom" in ranked.stderr and "8.0123" in ranked.stderr


def test_submit_t_has_its_own_rate_limit(server, cli, tmp_path):
    cli("dataset", "push", "limited-t", write_board_dataset(tmp_path / "limited-t-data"), "-l")
    source = trained(server, cli, dataset="limited-t")
    for _ in range(TESTS_PER_HOUR):
        assert "Test submit OK" in submit(cli, source, "2", "-t").stdout
    line = check_failed(cli("submit", source, "1", "-t", check=False))
    assert f"takes {TESTS_PER_HOUR} test submits (-t) per hour from each user" in line, line
    assert "you can test-submit again in" in line and ("min" in line or " s" in line), line
    assert "Score: 1.0" in submit(cli, source, "2").stdout  # ranked submits are not counted
    # Another dataset's count is its own.
    cli("dataset", "push", "limited-t2", write_board_dataset(tmp_path / "limited-t2-data"), "-l")
    other = trained(server, cli, dataset="limited-t2")
    assert "Test submit OK" in submit(cli, other, "2", "-t").stdout


def test_parallel_test_submits_cannot_slip_past_the_limit(server, cli, tmp_path):
    cli("dataset", "push", "burst", write_board_dataset(tmp_path / "burst-data"), "-l")
    source = trained(server, cli, dataset="burst")
    owner, ds, n = source.split("/")
    codes = []

    def one():
        codes.append(server.api.post(f"/api/sessions/{owner}/{ds}/{n}/submit", params={"checkpoint": "2", "test": True}).status_code)

    threads = [threading.Thread(target=one) for _ in range(TESTS_PER_HOUR + 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(codes) == [201] * TESTS_PER_HOUR + [409] * 5, codes


# -- the private folder goes, whatever happens -----------------------------------------------------
HANGS = """\
import subprocess, sys, time
subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)', '@marker@'])
open('/app/partial', 'w').write('x')
time.sleep(300)
"""


@sandboxed
def test_a_timed_out_evaluation_is_killed_and_removed(server, cli, tmp_path):
    marker = f"nsml-hang-{uuid.uuid4().hex[:12]}"
    board_dataset(cli, tmp_path, "hangs", fill(HANGS, marker=marker))
    source = trained(server, cli, dataset="hangs")
    proc = submit(cli, source, "2", check=False)
    assert proc.returncode == 1 and f"did not finish within {EVAL_TIMEOUT} s" in proc.stderr, proc.stderr
    assert evaluations(server) == []
    time.sleep(1)
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1, "its processes outlived the timeout"


MEMORY_HOG = """\
import argparse; p = argparse.ArgumentParser(); p.add_argument('--prediction'); p.add_argument('--test_label_path'); p.parse_args()
hog = [b'x' * (64 << 20) for _ in range(64)]  # 4 GiB, every page written
print(len(hog))
"""

FORK_BOMB = """\
import argparse, os, time
p = argparse.ArgumentParser(); p.add_argument('--prediction'); p.add_argument('--test_label_path'); p.parse_args()
forks = 0
try:
    for _ in range(5000):
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        forks += 1
except OSError as exc:
    print('FORKS', forks, type(exc).__name__, flush=True)
    raise SystemExit(3)
print('FORKS', forks, 'unlimited', flush=True)
"""


@sandboxed
def test_an_evaluation_that_hogs_memory_or_forks_without_end_fails_alone(server, cli, tmp_path):
    """The evaluator's limits: memory (NSML_EVALUATION_MEMORY_MB) and processes
    (evaluator.EVALUATION_PIDS). Each hostile script fails its own submit; the server lives on
    and the next evaluation scores."""
    board_dataset(cli, tmp_path, "hog", MEMORY_HOG)
    proc = submit(cli, trained(server, cli, dataset="hog"), "2", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    if evaluator._limits_backend().name == "rlimit":  # address space: the allocation fails
        assert "MemoryError" in proc.stderr, proc.stderr
    else:
        assert f"evaluation.py ran out of memory (its limit: {EVAL_MEMORY_MB} MiB" in proc.stderr, proc.stderr
    board_dataset(cli, tmp_path, "bomb", FORK_BOMB)
    proc = submit(cli, trained(server, cli, dataset="bomb"), "2", check=False)
    assert proc.returncode == 1 and "FORKS" in proc.stderr, proc.stdout + proc.stderr
    forks = int(proc.stderr.split("FORKS", 1)[1].split()[0])
    assert forks < evaluator.EVALUATION_PIDS, proc.stderr
    assert server.proc.poll() is None and evaluations(server) == []
    board_dataset(cli, tmp_path, "after", fill(FIXED_PATH, name="after"))
    assert "Score: 1.0" in submit(cli, trained(server, cli, dataset="after"), "2").stdout


SLOW = FIXED_PATH.replace("a = p.parse_args()", "a = p.parse_args()\nimport time; time.sleep(@sleep@)")


@sandboxed
def test_an_evaluation_cut_short_by_a_server_crash_is_cleaned_and_run_again(tmp_path):
    srv = Server(tmp_path / "home").start()
    try:
        work = tmp_path / "work"
        shutil.copytree(PROJECT, work)
        cli = Cli(clean_env(srv.home), work)
        board_dataset(cli, tmp_path, "crash", fill(SLOW, name="crash", sleep=6))
        source = trained(srv, cli, dataset="crash")
        owner, ds, n = source.split("/")
        sub = srv.api.post(f"/api/sessions/{owner}/{ds}/{n}/submit", params={"checkpoint": "2"}).json()
        deadline = time.monotonic() + 120
        while not evaluations(srv) and time.monotonic() < deadline:
            time.sleep(0.1)
        (left,) = evaluations(srv)
        srv.stop(signal.SIGKILL)
        assert left.exists()  # a crash leaves it; the next start removes it
        srv.start()
        deadline = time.monotonic() + 120
        while (state := srv.api.get(f"/api/submissions/{sub['id']}").json())["status"] not in ("scored", "failed"):
            assert time.monotonic() < deadline, state
            time.sleep(0.2)
        assert state["status"] == "scored" and state["score"] == 1.0, state
        assert not left.exists() and evaluations(srv) == []
    finally:
        srv.stop()
        kill_leftover_supervisors(srv.home)


# -- where no sandbox can run -------------------------------------------------------------------
def test_without_a_sandbox_the_submit_says_so_and_the_labels_stay_private(tmp_path):
    from tests.cli.test_legacy_submit import no_mount_namespaces_server

    srv = no_mount_namespaces_server(tmp_path / "home")  # root without CAP_SYS_ADMIN: bwrap cannot run
    probe = subprocess.run([srv.python, "-c", "from nsml.scheduler import bwrap; print(bwrap.probe().name)"],
                           capture_output=True, text=True, env=clean_env(srv.home))
    if probe.stdout.strip() != "none":
        pytest.skip(f"a sandbox runs even without CAP_SYS_ADMIN here ({probe.stdout.strip()} {probe.stderr.strip()[-200:]})")
    srv.start()
    try:
        work = tmp_path / "work"
        shutil.copytree(PROJECT, work)
        cli = Cli(clean_env(srv.home), work)
        board_dataset(cli, tmp_path, "unboxed", fill(FIXED_PATH, name="unboxed"))
        source = trained(srv, cli, dataset="unboxed")
        proc = submit(cli, source, "2")
        assert "Score: 1.0" in proc.stdout, proc.stdout + proc.stderr  # /data/NAME through the path shim
        assert "Warning: evaluation.py runs without a sandbox on this server" in proc.stderr, proc.stderr
        assert "evaluation.py runs without a sandbox" in (srv.home / "server.log").read_text()
        assert evaluations(srv) == [] and not list(Path(tempfile.gettempdir()).glob("nsml-eval-*"))
    finally:
        srv.stop()
        kill_leftover_supervisors(srv.home)


# -- the platform as an ordinary user ----------------------------------------------------------------
UNPRIVILEGED = """\
import argparse, json, os, socket, sys
p = argparse.ArgumentParser(); p.add_argument('--prediction')
a = p.parse_args()
problems = []
try:
    socket.create_connection(('127.0.0.1', @port@), timeout=3)
    problems.append('reached the server')
except OSError:
    pass
for path in ('@home@/token', '@home@/nsml.db'):
    if os.path.exists(path):
        problems.append('sees ' + path)
if problems:
    sys.exit('; '.join(problems))
labels = open('/data/@name@/test/test_label').read().split()
predictions = [json.loads(line)[1] for line in open(a.prediction) if line.strip()]
print(sum(str(p) == t for p, t in zip(predictions, labels)) / len(labels))
"""
NOBODY = 65534


def as_nobody(python: str) -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", python]


def runs_as_nobody(python: str, env: dict, cwd: Path) -> bool:
    """Whether uid 65534 can run `python` with the platform's packages, and start it again
    (as the executor starts sessions and evaluators)."""
    check = "import subprocess, sys, nsml.server.app; subprocess.run([sys.executable, '-c', 'import nsml'], check=True)"
    return subprocess.run([*as_nobody(python), "-c", check], capture_output=True, env=env, cwd=cwd).returncode == 0


def interpreter_for_nobody(folder: Path, env: dict) -> str:
    """This interpreter, or where it lies in a folder closed to other users (pyenv under /root),
    a venv of the system's Python of the same version on top of this one's site-packages."""
    if runs_as_nobody(sys.executable, env, folder):
        return sys.executable
    import site

    system = shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}", path="/usr/bin:/bin")
    if not system:
        pytest.skip(f"uid {NOBODY} cannot run {sys.executable}, and the system has no Python {sys.version_info.major}.{sys.version_info.minor}")
    venv = folder / "venv"
    subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    pth = next(venv.glob("lib/python*/site-packages")) / "platform-packages.pth"
    pth.write_text("".join(f"import site; site.addsitedir({p!r})\n" for p in site.getsitepackages()))
    python = str(venv / "bin" / "python")
    if not runs_as_nobody(python, env, folder):
        pytest.skip(f"uid {NOBODY} cannot run the platform's packages here (neither {sys.executable} nor {python})")
    return python


def unprivileged_server(tmp_path: Path) -> Server:
    """The server as uid 65534, with a home of its own outside pytest's root-only folders."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to start the server as an ordinary user")
    home = Path(tempfile.mkdtemp(prefix="nsml-nobody-")) / "home"
    home.mkdir()
    for path in (home.parent, home):
        os.chown(path, NOBODY, NOBODY)
    try:
        python = interpreter_for_nobody(home.parent, clean_env(home))
        wrapper = home.parent / "python-as-nobody"
        wrapper.write_text("#!/bin/sh\nexec " + " ".join(as_nobody(python)) + ' "$@"\n')
        wrapper.chmod(0o755)
        probe = subprocess.run([str(wrapper), "-c", "from nsml.scheduler import evaluator; m = evaluator.sandbox_mode(); print(m.name, m.detail)"],
                               capture_output=True, text=True, env=clean_env(home), cwd=home.parent)
        if not probe.stdout.startswith("bwrap "):
            pytest.skip(f"no unprivileged sandbox for uid {NOBODY} here: {probe.stdout.strip()} {probe.stderr.strip()[-300:]}")
    except BaseException:
        shutil.rmtree(home.parent, ignore_errors=True)
        raise
    return Server(home, python=str(wrapper))


def test_the_evaluator_is_sandboxed_when_the_platform_is_not_root(tmp_path):
    srv = unprivileged_server(tmp_path)
    try:
        srv.start(timeout=60)
        work = tmp_path / "work"
        shutil.copytree(PROJECT, work)
        cli = Cli(clean_env(srv.home), work)
        script = fill(UNPRIVILEGED, port=srv.url.rsplit(":", 1)[1], home=srv.home, name="nobody")
        board_dataset(cli, tmp_path, "nobody", script)
        source = trained(srv, cli, dataset="nobody")
        proc = submit(cli, source, "2")
        assert "Score: 1.0" in proc.stdout and "without a sandbox" not in proc.stderr, proc.stdout + proc.stderr
        assert evaluations(srv) == []
    finally:
        srv.stop()
        kill_leftover_supervisors(srv.home)
        shutil.rmtree(srv.home.parent, ignore_errors=True)
