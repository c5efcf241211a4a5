"""The session runtime, seen from inside sessions: dataset view, constants, Python environments,
metric validation; and the platform around them: queueing on a full machine, a server killed
mid-run, a supervisor killed mid-run."""

import json
import os
import signal
import time
from pathlib import Path

import pytest

from nsml.scheduler import sandbox
from nsml.scheduler.machine import discover_gpus
from tests.conftest import Cli, Server, cli_in, kill_leftover_supervisors, open_gate, run_dir, serve_for_module, wait_for, write_dataset, write_project
from tests.conftest import push_dataset as push, start_session as run

WAIT_S = 60


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    yield from serve_for_module(tmp_path_factory, "runtime", env={"NSML_HEARTBEAT_TIMEOUT": "6"})


@pytest.fixture
def mcli(srv, tmp_path) -> Cli:
    """The CLI against the module's server (tests that restart a server use conftest's cli)."""
    return cli_in(srv, tmp_path / "work")



def api_path(name: str) -> str:
    return "/api/sessions/" + name


def logs(srv: Server, name: str) -> str:
    return srv.api.get(api_path(name) + "/logs").json()["text"]


def process_gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def supervising(pid: int) -> int:
    """The supervisor above a user process: its parent without a sandbox; with one, the parent
    of the bubblewrap processes in between."""
    ancestor = pid
    while ancestor > 1:
        ancestor = parent(ancestor)
        if b"nsml.scheduler.supervisor" in Path(f"/proc/{ancestor}/cmdline").read_bytes():
            return ancestor
    raise AssertionError(f"no supervisor above process {pid}")


def finished(srv: Server, name: str) -> dict:
    s = srv.wait(name, timeout=WAIT_S)
    assert s["status"] == "exited", f"{s}\n{logs(srv, name)}"
    return s


VIEW = """\
import os
import sys
import nsml
from nsml import DATASET_PATH
from nsml.constants import DATASET_NAME, GPU_NUM, HAS_DATASET, IS_ON_NSML, SESSION_NAME

assert IS_ON_NSML is True and HAS_DATASET is True
assert DATASET_PATH == os.environ['NSML_DATASET_PATH'] and os.path.isabs(DATASET_PATH)
assert DATASET_NAME == nsml.DATASET_NAME == os.environ['NSML_DATASET_NAME'] == 'view'
assert GPU_NUM == 0 and type(GPU_NUM) is int and os.environ.get('CUDA_VISIBLE_DEVICES') == ''
assert SESSION_NAME == nsml.SESSION_NAME == os.environ['NSML_SESSION_NAME']
print('SESSION', SESSION_NAME)
assert sorted(os.listdir(DATASET_PATH)) == ['train'], os.listdir(DATASET_PATH)
assert not os.path.exists(os.path.join(DATASET_PATH, 'test'))
data = os.path.join(DATASET_PATH, 'train', 'train_data')
assert open(data).read() == '1,2\\n3,4\\n'

if sys.argv[1:] == ['unprotected']:  # root without mount namespaces: file modes do not bind root
    print('VIEW OK')
    raise SystemExit(0)
attempts = {
    'append': lambda: open(data, 'a').write('corrupted'),
    'truncate': lambda: open(data, 'w').close(),
    'create': lambda: open(os.path.join(DATASET_PATH, 'train', 'new'), 'w').close(),
    'remove': lambda: os.remove(data),
    'mkdir': lambda: os.mkdir(os.path.join(DATASET_PATH, 'test')),
}
for what, attempt in attempts.items():
    try:
        attempt()
    except OSError:
        continue
    raise SystemExit(f'the dataset was writable: {what} worked')
print('VIEW OK')
"""


def test_dataset_view_and_constants(srv, mcli):
    # The server runs as this user: non-root is held by file modes, root only by a read-only mount.
    protected = os.geteuid() != 0 or sandbox.readonly_mounts_work()
    push(mcli, "view")
    write_project(mcli.cwd / "code", VIEW)
    first = run(mcli, "-d", "view", "-g", "0", "-a", "protected" if protected else "unprotected", cwd=mcli.cwd / "code")
    finished(srv, first)
    assert f"SESSION {first}\nVIEW OK\n" in logs(srv, first)
    second = run(mcli, "-d", "view", "-g", "0", cwd=mcli.cwd / "code")  # the shared view is intact
    finished(srv, second)
    assert "VIEW OK" in logs(srv, second)

    mcli("dataset", "pull", "view", "pulled")
    assert (mcli.cwd / "pulled" / "train" / "train_data").read_text() == "1,2\n3,4\n"
    assert (mcli.cwd / "pulled" / "test" / "test_label").read_text() == "1\n"  # hidden, not gone


REQ_MAIN = """\
import sys
import numpy
import sklearn
print('PREFIX', sys.prefix)
print('EXECUTABLE', sys.executable)
"""
SETUP_PY = """\
from setuptools import setup
raise RuntimeError('setup.py was executed')
setup(name='project', install_requires=['numpy>=1.0'])
"""


def test_requirements_build_an_environment_once(srv, mcli):
    push(mcli, "reqs")
    code = write_project(mcli.cwd / "code", REQ_MAIN)
    (code / "requirements.txt").write_text("#nsml: some/image:1.0\nsklearn  # the old name\n")
    (code / "setup.py").write_text(SETUP_PY)

    first = run(mcli, "-d", "reqs", cwd=code)
    finished(srv, first)
    log1 = logs(srv, first)
    assert "[nsml] installing requirements: numpy>=1.0 scikit-learn" in log1
    assert "setup.py was executed" not in log1
    prefix = Path(log1.split("PREFIX ")[1].split()[0])
    assert prefix.parent == srv.home / "envs" and (prefix / ".ready").is_file()

    second = run(mcli, "-d", "reqs", cwd=code)
    finished(srv, second)
    log2 = logs(srv, second)
    assert "installing requirements" not in log2
    assert f"PREFIX {prefix}\n" in log2
    assert [p.name for p in (srv.home / "envs").iterdir() if p.is_dir()] == [prefix.name]

    listed = {s["name"]: s for s in json.loads(mcli("ps", "-a", "-j", "-d", "reqs").stdout)}
    assert listed[first]["image"] == listed[second]["image"] == "some/image:1.0"


def test_unparsable_setup_py_fails_with_one_clear_line(srv, mcli):
    push(mcli, "badsetup")
    code = write_project(mcli.cwd / "code", "print('never')\n")
    (code / "setup.py").write_text("from setuptools import setup\nsetup(install_requires=[\n")
    name = run(mcli, "-d", "badsetup", cwd=code)
    s = srv.wait(name)
    assert s["status"] == "failed"
    assert s["error"].startswith("The session could not start: setup.py could not be parsed (line ")
    assert "\n" not in s["error"]
    assert "never" not in logs(srv, name)


METRICS = """\
import numpy as np
import nsml

nsml.report(step=0, loss=0.5)
for bad in (object(), np.array([1.0, 2.0]), {1, 2}, [1, object()]):
    try:
        nsml.report(step=1, weights=bad)
    except TypeError as exc:
        print('TypeError:', exc, flush=True)
    else:
        raise SystemExit('a non-JSON value was accepted')
nsml.report(step=2, loss=0.25, hist=[1, 2], cfg={'lr': 0.1}, name='x', nan=float('nan'), f64=np.float64(1.5))
"""


def test_non_json_metric_values_raise_a_type_error_naming_the_key(srv, mcli):
    push(mcli, "metrics")
    write_project(mcli.cwd / "code", METRICS)
    name = run(mcli, "-d", "metrics", cwd=mcli.cwd / "code")
    finished(srv, name)
    errors = [ln for ln in logs(srv, name).splitlines() if ln.startswith("TypeError:")]
    assert len(errors) == 4
    assert all("nsml.report: value for 'weights'" in e for e in errors), errors
    assert "ndarray" in errors[1] and "set" in errors[2]

    keys = srv.api.get(api_path(name) + "/metrics").json()
    assert keys == {"loss": 2, "hist": 1, "cfg": 1, "name": 1, "f64": 1}  # a NaN is not stored (issue 9)...
    series = {k: srv.api.get(api_path(name) + f"/metrics/{k}").json()["values"] for k in keys}
    assert series == {"loss": [0.5, 0.25], "hist": [[1, 2]], "cfg": [{"lr": 0.1}], "name": ["x"], "f64": [1.5]}
    assert "[nsml] nan=nan at step 2 was not stored: metric values must be finite numbers" in logs(srv, name)  # ...but named


GATED = """\
import os, sys, time
print('waiting', flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
print('released', flush=True)
"""


def test_a_full_machine_queues_sessions_until_resources_free(server, cli):
    server.stop()
    server.extra = ["--cpus", "1"]
    server.start()
    push(cli, "queue")
    write_project(cli.cwd / "code", GATED)
    code = cli.cwd / "code"
    # "gate": relative to the session's working directory (/app in its sandbox), opened there
    first = run(cli, "-d", "queue", "-a", "gate", cwd=code)
    wait_for(lambda: "waiting" in logs(server, first), "the first session to run")
    second = run(cli, "-d", "queue", "-a", "gate", cwd=code)
    third = run(cli, "-d", "queue", "-a", "gate", cwd=code)

    too_big = cli("run", "-d", "queue", "-c", "2", cwd=code, check=False)
    assert too_big.returncode == 1
    assert "but the largest node has" in too_big.stderr and " 1 CPU" in " ".join(too_big.stderr.split())

    time.sleep(1)  # several scheduler rounds: the queued ones must still be waiting
    rows = {r.split()[0]: r for r in cli("ps", "-d", "queue").stdout.splitlines()[2:]}
    assert "Running" in rows[first] and "Queued" in rows[second] and "Queued" in rows[third]
    assert server.session(second)["started"] is None

    # a queued session can be stopped; it never runs
    assert "is stopped" in cli("stop", third).stdout
    assert server.session(third)["status"] == "stopped"

    open_gate(server, first)
    finished(server, first)
    open_gate(server, second)  # a queued session has a working directory once it runs
    finished(server, second)
    assert logs(server, second) == "waiting\nreleased\n"
    assert server.session(second)["started"] >= server.session(first)["ended"]
    assert logs(server, third) == "" and server.session(third)["started"] is None

    # a queued session whose dataset is removed before it starts fails and says why
    fourth = run(cli, "-d", "queue", "-a", "gate2", cwd=code)
    fifth = run(cli, "-d", "queue", "-a", "gate2", cwd=code)
    wait_for(lambda: "waiting" in logs(server, fourth), "the fourth session to run")
    assert server.session(fifth)["status"] == "queued"
    cli("dataset", "rm", "-f", "queue")  # sessions use it: -f, as a user would
    open_gate(server, fourth, gate="gate2")
    finished(server, fourth)
    failed = server.wait(fifth)
    assert failed["status"] == "failed" and failed["error"] == "Dataset 'queue' was removed before the session started."


LOOP = """\
import os, sys, time
import nsml

def save(path):
    with open(os.path.join(path, 'step'), 'w') as f:
        f.write(str(i))

nsml.bind(save=save)
gate = sys.argv[1]
i = 0
while not os.path.exists(gate):
    nsml.report(step=i, loss=i * 0.5, acc=i)
    print('line', i, flush=True)
    if i % 100 == 0:
        nsml.save(i)
    i += 1
    time.sleep(0.005)
print('TOTAL', i, flush=True)
"""


def test_a_server_killed_mid_run_loses_and_duplicates_nothing(server, cli):
    push(cli, "crashsrv")
    write_project(cli.cwd / "code", LOOP)
    name = run(cli, "-d", "crashsrv", "-a", "gate", cwd=cli.cwd / "code")
    stored = lambda: server.api.get(api_path(name) + "/metrics").json().get("loss", 0)  # noqa: E731
    wait_for(lambda: stored() > 20, "metrics to arrive")

    server.stop(signal.SIGKILL)
    journal = run_dir(server, name) / "spool" / "journal.ndjson"
    size = journal.stat().st_size
    wait_for(lambda: journal.stat().st_size > size + 2000, "the session to go on reporting while the server is down")
    server.start()
    before = stored()
    wait_for(lambda: stored() > before + 20, "metrics to arrive after the restart")
    open_gate(server, name)
    finished(server, name)

    text = logs(server, name)
    total = int(text.rsplit("TOTAL ", 1)[1])
    assert text == "".join(f"line {i}\n" for i in range(total)) + f"TOTAL {total}\n"
    assert server.api.get(api_path(name) + "/metrics").json() == {"loss": total, "acc": total}
    series = server.api.get(api_path(name) + "/metrics/loss").json()
    assert series["steps"] == list(range(total))
    assert series["values"] == [i * 0.5 for i in range(total)]
    assert server.session(name)["last_values"] == {"step": total - 1, "loss": (total - 1) * 0.5, "acc": total - 1}
    ckpts = server.api.get(api_path(name) + "/checkpoints").json()
    assert [c["name"] for c in ckpts] == [str(i) for i in range(0, total, 100)]
    assert all(c["summary"]["step"] == int(c["name"]) for c in ckpts)  # reported just before each save
    assert not list((run_dir(server, name) / "spool" / "checkpoints").iterdir())  # all uploaded


FULL_SPEED = """\
import os, sys
import nsml

gate, cap = sys.argv[1], 300_000
i = 0
while not os.path.exists(gate):
    if i < cap:  # as fast as report() goes, then wait for the gate
        nsml.report(step=i, loss=i * 0.5, acc=i)
        i += 1
print('TOTAL', i, flush=True)
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_server(request, tmp_path):
    """A server on SQLite, or on a fresh database of the run's real PostgreSQL."""
    extra = ["--db", request.getfixturevalue("postgres").new_database()] if request.param == "postgresql" else []
    srv = Server(tmp_path / "home", extra=extra).start()
    yield srv
    srv.stop()
    kill_leftover_supervisors(srv.home)


def test_a_server_killed_during_a_full_speed_ingest_loses_and_duplicates_nothing(any_db_server, tmp_path):
    server = any_db_server
    cli = cli_in(server, tmp_path / "work")
    push(cli, "fullspeed")
    write_project(cli.cwd / "code", FULL_SPEED)
    name = run(cli, "-d", "fullspeed", "-a", "gate", cwd=cli.cwd / "code")
    stored = lambda: server.api.get(api_path(name) + "/metrics").json().get("loss", 0)  # noqa: E731
    wait_for(lambda: stored() > 0, "the first values to arrive")
    server.stop(signal.SIGKILL)  # while the journal is still being shipped and ingested
    server.start()
    wait_for(lambda: stored() >= 300_000, "all values after the restart", timeout=180)
    open_gate(server, name)
    finished(server, name)
    total = int(logs(server, name).rsplit("TOTAL ", 1)[1])
    assert total == 300_000
    assert server.api.get(api_path(name) + "/metrics").json() == {"loss": total, "acc": total}
    series = server.api.get(api_path(name) + "/metrics/acc").json()
    assert series["steps"] == list(range(total)) and series["values"] == list(map(float, range(total)))


FOREVER = """\
import time
print('ready', flush=True)
while True:
    time.sleep(0.05)
"""


def test_a_killed_supervisor_loses_the_session_and_ends_its_process(srv, mcli):
    """Liveness is the supervisor's heartbeat (nsml.scheduler.service): this module's server
    takes a session as lost after NSML_HEARTBEAT_TIMEOUT seconds of silence."""
    push(mcli, "orphan")
    write_project(mcli.cwd / "code", FOREVER)
    name = run(mcli, "-d", "orphan", cwd=mcli.cwd / "code")
    wait_for(lambda: "ready" in logs(srv, name), "the session to start")
    # The host pid of the user's process, a process-group leader (in a sandbox: inside its own
    # PID namespace), written beside the spool by the supervisor.
    user = int((run_dir(srv, name, holding="user.pid") / "user.pid").read_text())
    assert os.getpgid(user) == user
    supervisor = supervising(user)  # its parent, or (sandboxed) bubblewrap's parent
    assert b"nsml.scheduler.supervisor" in Path(f"/proc/{supervisor}/cmdline").read_bytes()

    os.kill(supervisor, signal.SIGKILL)
    s = srv.wait(name)
    assert s["status"] == "lost", s
    assert s["error"].startswith("The session's supervisor stopped reporting (no heartbeat for"), s
    assert f"nsml resume {name}" in s["error"]
    wait_for(lambda: process_gone(user), "the unsupervised user process to be ended")
    assert "ready" in mcli("logs", name).stdout
    row = [r for r in mcli("ps", "-a", "-d", "orphan").stdout.splitlines() if name in r][0]
    assert "Lost" in row and "supervisor stopped reporting" in row


GPU_MAIN = """\
import os, sys, time
import nsml
print('GPU', nsml.GPU_NUM, os.environ['CUDA_VISIBLE_DEVICES'], flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
"""


@pytest.mark.skipif(not discover_gpus(), reason="this machine has no GPU")
def test_gpus_are_allocated_and_counted(server, cli):
    gpus = discover_gpus()
    server.stop()
    server.extra = ["--gpus", "1"]  # one GPU, so a second GPU session has to wait
    server.start()
    push(cli, "gpu")
    code = write_project(cli.cwd / "code", GPU_MAIN)
    first = run(cli, "-d", "gpu", "-g", "1", "-a", "gate", cwd=code)
    wait_for(lambda: "GPU" in logs(server, first), "the GPU session to start")
    assert logs(server, first) == f"GPU 1 {gpus[0].index}\n"
    second = run(cli, "-d", "gpu", "-g", "1", "-a", "gate", cwd=code)
    cpu_only = run(cli, "-d", "gpu", "-g", "0", "-a", "gate", cwd=code)
    wait_for(lambda: "GPU" in logs(server, cpu_only), "the CPU session to start beside it")
    assert logs(server, cpu_only) == "GPU 0 \n"
    assert server.session(second)["status"] == "queued"
    open_gate(server, first, cpu_only)
    open_gate(server, second)  # once the GPU is free and it runs
    for name in (first, second, cpu_only):
        finished(server, name)
    assert logs(server, second) == f"GPU 1 {gpus[0].index}\n"


def test_views_of_replaced_datasets_are_removed_once_no_session_reads_them(srv, mcli):
    push(mcli, "viewgc")
    write_project(mcli.cwd, "import os, nsml\nprint(sorted(os.listdir(nsml.DATASET_PATH)))\n")
    finished(srv, run(mcli, "-d", "viewgc"))
    views = srv.home / "views"
    before = {p.name for p in views.iterdir() if (p / "viewgc").exists()}
    assert len(before) == 1
    mcli("dataset", "push", "-f", "viewgc", write_dataset(mcli.cwd / "ds-viewgc-2"))
    assert not any((views / name).exists() for name in before)
    finished(srv, run(mcli, "-d", "viewgc"))  # the new version gets a view of its own
    assert {p.name for p in views.iterdir() if (p / "viewgc").exists()} - before
