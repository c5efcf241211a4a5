"""The attack suite: hostile scripts run as real sessions (training, submit, infer) through the
real CLI against a real server, and what the platform still holds afterwards.

Threat model (issue 9, docs/security.md): a session's code is hostile. Each script lives in
tests/security/attacks/ and prints `ATTACK-OK …` for whatever got through; the tests fail on any
such line, and check the real state as well: the secrets' bytes absent from every log, output
file and checkpoint the platform keeps for the session, the loopback service never connected
to, root's files unchanged, the stored dataset blobs unchanged, the server and other sessions
alive.

Without a sandbox (no bubblewrap, or `--sandbox none`) sessions run unconfined by design, so the
suite is skipped; tests that need the platform to run as root (a uid of its own per session,
root-owned files) say so.
"""

import json
import os
import random
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from nsml.store.blobs import BlobStore
from tests.conftest import write_project
from tests.security.conftest import (
    ROOT, Secrets, assert_absent, assert_held, attack_lines, checkpoint_bytes, cli_for, host_addresses, host_spool,
    hostile_project, kill_marked, logs, needs_root, needs_sandbox, outputs, processes_with, sha, start_server, started,
    stop_server, wait_log,
)

pytestmark = needs_sandbox
FAMILIES = ("token", "network", "labels", "privilege", "processes")
ROWS = 40
SCOPED_TOKEN = "nsml-s."


# -- the shared platform --------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["embedded-storage", "team-storage"])
def srv(request, tmp_path_factory):
    """The attacked platform, twice: on the embedded default (SQLite, a blob folder) and on a team
    server's storage (a real PostgreSQL with a password, a real bucket with its own keys): the
    whole suite must hold on both."""
    env, extra = {"NSML_PAUSED_TIMEOUT": "60"}, []
    if request.param == "team-storage":
        postgres, bucket = request.getfixturevalue("postgres"), request.getfixturevalue("s3_server")
        env.update(bucket.env())
        extra = ["--db", postgres.new_database(), "--blobs", bucket.url()]
    server = start_server(tmp_path_factory.mktemp("attacked"), *extra, env=env)
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def board(srv, tmp_path_factory):
    """A dataset with a leaderboard and hidden labels found nowhere else (random, 40 rows)."""
    folder = tmp_path_factory.mktemp("board-data")
    rng = random.Random(secrets.randbits(64))
    labels = "".join(f"{rng.randint(0, 1)}\n" for _ in range(ROWS))
    (folder / "train").mkdir()
    (folder / "test").mkdir()
    (folder / "train" / "train_data").write_text("".join(f"{i}\n" for i in range(11)))
    (folder / "test" / "test_data").write_text("".join(f"{i}\n" for i in range(ROWS)))
    (folder / "test" / "test_label").write_text(labels)
    cli = cli_for(srv, tmp_path_factory.mktemp("board-cli"))
    cli("dataset", "push", "board", folder, "--leaderboard")
    return {"name": "board", "folder": folder, "labels": labels, "cli": cli}


def base_targets(srv, board, listener, root_secrets: Secrets, wildcard=None) -> dict:
    """What a hostile session is told: all an attacker could find out, and how to recognise
    each secret (never the secret itself)."""
    targets = {
        "home": str(srv.home), "server_port": int(srv.url.rsplit(":", 1)[1]), "server_pid": srv.proc.pid,
        "platform_pids": [srv.proc.pid], "listener_port": listener.port, "hosts": host_addresses(),
        "dataset": board["name"], "token_sha": sha(srv.token.encode()), **root_secrets.targets(),
    }
    if wildcard is not None:
        targets["wildcard_port"] = wildcard.port
    if board.get("labels"):
        label = board["labels"].encode()
        targets.update(label_sha=sha(label), label_size=len(label),
                       label_blob=str(BlobStore(srv.home / "blobs").path(sha(label))))
    return targets


def kept_for(srv, cli, name: str, folder: Path) -> bytes:
    """Everything the platform keeps for a session and gives its owner: log, output files,
    checkpoints."""
    return logs(srv, name).encode() + outputs(cli, name, folder) + checkpoint_bytes(srv, name)


def assert_nothing_leaked(kept: bytes, srv, board, root_secrets: Secrets) -> None:
    assert_absent(kept, "what the platform keeps of the session", srv.token, SCOPED_TOKEN, board["labels"],
                  root_secrets.secret_text)


def section(text: str, family: str) -> str:
    """The lines a family printed (families run one after another, each ending with DONE)."""
    lines, current = [], []
    for line in text.splitlines():
        current.append(line)
        if line.startswith("DONE "):
            if line == f"DONE {family}":
                lines = current
            current = []
    return "\n".join(lines)


def wait_ended(srv, name: str, timeout: float = 180) -> dict:
    return srv.wait(name, timeout=timeout)


# -- a training session ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(srv, board, listener, wildcard, root_secrets, tmp_path_factory):
    """One hostile training session running every family; its log, and what the platform kept."""
    work = tmp_path_factory.mktemp("trained")
    project = hostile_project(work / "code", base_targets(srv, board, listener, root_secrets, wildcard))
    cli = cli_for(srv, work)
    name = started(cli, project, "-d", board["name"], "-a", "--attacks " + ",".join(FAMILIES))
    info = wait_ended(srv, name)
    text = logs(srv, name)
    return {"name": name, "info": info, "log": text, "kept": kept_for(srv, cli, name, work / "kept"), "cli": cli}


def test_training_session_holds_no_token_and_finds_none(srv, board, listener, root_secrets, trained):
    assert trained["info"]["status"] == "exited", f"{trained['info']}\n{trained['log'][-3000:]}"
    assert_held(section(trained["log"], "token"), "token")
    assert_nothing_leaked(trained["kept"], srv, board, root_secrets)
    env_keys = next(ln for ln in trained["log"].splitlines() if ln.startswith("NOTE environment keys"))
    assert "NSML_TOKEN" not in env_keys and "NSML_SERVER_URL" not in env_keys, env_keys


def test_training_session_cannot_reach_the_host_loopback(srv, listener, wildcard, trained):
    text = section(trained["log"], "network")  # the wildcard service is the next test's
    assert_held("\n".join(ln for ln in text.splitlines() if f":{wildcard.port}" not in ln), "network")
    assert listener.accepted == [], f"the loopback service was connected to from a session: {listener.accepted}"
    assert srv.alive()


def test_training_session_cannot_reach_host_services_on_other_addresses(wildcard, trained):
    """A service listening on every address (0.0.0.0) is on the host's loopback too: a session's
    outbound network must not reach it through the host's own addresses either."""
    reached = [ln for ln in section(trained["log"], "network").splitlines()
               if ln.startswith("ATTACK-OK") and f":{wildcard.port}" in ln]
    assert not reached and wildcard.accepted == [], \
        f"a session reached a host service on 0.0.0.0: {reached} {wildcard.accepted}"


def test_training_session_cannot_read_the_hidden_labels(srv, board, root_secrets, trained):
    assert_held(section(trained["log"], "labels"), "labels")
    assert "BLOCKED test_label in the dataset view: ['train']" in trained["log"]
    assert_nothing_leaked(trained["kept"], srv, board, root_secrets)


@needs_root
def test_training_session_has_no_privilege(root_secrets, trained):
    text = section(trained["log"], "privilege")
    assert_held(text, "privilege")
    caps = next(ln for ln in text.splitlines() if ln.startswith("CAPEFF ")).split()
    assert caps[1] == "0" and caps[3] != "0" and caps[5] != "0", caps  # no capabilities, not root
    assert caps[7] == "1", caps  # no_new_privs: setuid programs (mount, su) give nothing back
    assert root_secrets.rootfile.read_bytes() == root_secrets.rootfile_bytes
    assert oct(root_secrets.rootfile.stat().st_mode & 0o777) == "0o644"


def test_training_session_cannot_see_or_touch_platform_processes(srv, trained):
    assert_held(section(trained["log"], "processes"), "processes")
    seen = int(next(ln for ln in trained["log"].splitlines() if ln.startswith("NOTE visible processes")).split()[-1])
    assert seen < 10, f"a session sees {seen} processes: the host's PID namespace"
    assert srv.alive()


def test_the_stored_dataset_is_unchanged_after_the_attacks(srv, board, trained, tmp_path):
    """The privilege family wrote to the view, remounted it, unmounted it, from a user namespace
    of its own; the view is hard links to the blobs, and push -f dedupes by sha: what is pulled
    back must be the bytes pushed."""
    cli = board["cli"]
    cli("dataset", "push", "-f", board["name"], board["folder"])
    cli("dataset", "pull", board["name"], tmp_path / "pulled")
    blobs = BlobStore(srv.home / "blobs")
    for original in sorted(p for p in board["folder"].rglob("*") if p.is_file()):
        rel = original.relative_to(board["folder"])
        data = original.read_bytes()
        assert (tmp_path / "pulled" / rel).read_bytes() == data, f"{rel} changed in the store"
        assert blobs.path(sha(data)).read_bytes() == data, f"the blob of {rel} changed"
    assert sorted(p.relative_to(tmp_path / "pulled").as_posix() for p in (tmp_path / "pulled").rglob("*") if p.is_file()) == \
        sorted(p.relative_to(board["folder"]).as_posix() for p in board["folder"].rglob("*") if p.is_file())


# -- relaunched: submit and infer -----------------------------------------------------------------
def runner_of(cli, source: str, kind: str) -> str:
    rows = [s for s in json.loads(cli("ps", "-a", "-j").stdout) if s["kind"] == kind and s["source"] == source]
    assert rows, f"no {kind} session of {source}"
    return rows[-1]["name"]


def test_submit_session_sees_test_data_only_and_has_no_network(srv, board, listener, wildcard, root_secrets, trained, tmp_path):
    cli = trained["cli"]
    reached_before = len(wildcard.accepted)  # the training session's own attempts are another test's
    proc = cli("submit", trained["name"], "0", check=False, timeout=300)
    runner = runner_of(cli, trained["name"], "submit")
    text = logs(srv, runner)
    assert "DONE processes" in text, f"{proc.stdout}\n{proc.stderr}\n{text[-3000:]}"
    assert_held(text, *FAMILIES)
    assert "BLOCKED test_label in the dataset view: ['test']" in text
    interfaces = next(ln for ln in text.splitlines() if ln.startswith("NOTE network interfaces"))
    assert interfaces.endswith("['lo']"), f"a submit session has a network: {interfaces}"
    assert listener.accepted == [] and len(wildcard.accepted) == reached_before
    assert_nothing_leaked(kept_for(srv, cli, runner, tmp_path / "kept") + proc.stdout.encode() + proc.stderr.encode(),
                          srv, board, root_secrets)


def test_infer_session_runs_confined(srv, board, listener, wildcard, root_secrets, trained):
    cli = trained["cli"]
    reached_before = len(wildcard.accepted)
    proc = cli("infer", f"{trained['name']}/0", input="x\n", check=False, timeout=300)
    try:
        report = proc.stdout
        assert "DONE processes" in report, f"{proc.stdout}\n{proc.stderr}"
        assert_held(report, *FAMILIES)
        assert "NOTE network interfaces: ['lo']" in report, "an infer session has a network"
        assert listener.accepted == [] and len(wildcard.accepted) == reached_before
        runner = runner_of(cli, trained["name"], "infer")
        assert_nothing_leaked(report.encode() + logs(srv, runner).encode(), srv, board, root_secrets)
    finally:
        cli("infer", f"{trained['name']}/0", "--stop", check=False)


def test_a_forged_relaunch_and_a_linked_prediction_get_no_score(srv, board, listener, root_secrets, tmp_path):
    """The submit never calls nsml.paused(): it writes relaunch.json ("done") itself and makes
    prediction.txt a link to the labels' blob, for the supervisor (outside the sandbox) to ship
    as its predictions: a perfect score, and the labels stored as the session's."""
    targets = base_targets(srv, board, listener, root_secrets)
    project = hostile_project(tmp_path / "code", targets)
    cli = cli_for(srv, tmp_path)
    name = started(cli, project, "-e", "forge.py", "-d", board["name"], "-a", "--plant relaunch,prediction")
    assert wait_ended(srv, name)["status"] == "exited", logs(srv, name)
    proc = cli("submit", name, "0", check=False, timeout=300)
    runner = runner_of(cli, name, "submit")
    assert "FORGED-SUBMIT" in logs(srv, runner)
    rows = json.loads(cli("dataset", "board", board["name"], "--all", "-j").stdout)["rows"]
    scores = [r["score"] for r in rows if r["session"] == name]
    assert 1.0 not in scores, f"the labels were scored as the session's predictions: {scores}\n{proc.stdout}{proc.stderr}"
    assert "Score: 1.0" not in proc.stdout
    assert_absent(logs(srv, runner) + proc.stdout + proc.stderr, "the submit's log and answer", board["labels"])


def test_an_infer_sessions_spool_cannot_steer_or_hang_the_server(srv, board, listener, root_secrets, tmp_path):
    """An infer session's spool is the session's to write: its infer.sock a link to a socket
    elsewhere on the host (relaunch.json saying "serving"), or its relaunch.json a FIFO. The
    owner's requests must not reach that other socket, and must be answered (an error is
    fine) in bounded time, not hang a server thread on the FIFO."""
    import httpx

    from tests.security.conftest import UnixTrap

    trap = UnixTrap(tmp_path / "trap")
    targets = {**base_targets(srv, board, listener, root_secrets), "trap_socket": str(trap.path)}
    project = hostile_project(tmp_path / "code", targets)
    cli = cli_for(srv, tmp_path)
    linked = started(cli, project, "-e", "forge.py", "-d", board["name"], "-a", "--plant infer-link --infer-wait 90")
    fifo = started(cli, project, "-e", "forge.py", "-d", board["name"], "-a", "--plant fifo-relaunch --infer-wait 90")
    runners = {}
    for source in (linked, fifo):
        assert wait_ended(srv, source)["status"] == "exited", logs(srv, source)
        runners[source] = srv.api.post(f"/api/sessions/{source}/infer-session", params={"checkpoint": "0"}).json()["name"]
        wait_log(srv, runners[source], "FORGED-RELAUNCH")
    try:
        for source, what in ((linked, "a linked infer.sock"), (fifo, "relaunch.json as a FIFO")):
            try:
                resp = srv.api.post(f"/api/sessions/{runners[source]}/infer", json={"data": ["1"]}, timeout=60)
            except httpx.TimeoutException:
                pytest.fail(f"an infer request to a session with {what} got no answer within 60 s (a server thread hangs)")
            assert "TRAPPED" not in resp.text, f"the server sent the owner's request to a socket the session named: {resp.text}"
            assert resp.status_code != 200, resp.text
        assert trap.accepted == 0, "the server connected to a socket outside the session because its spool said so"
        assert srv.alive()
    finally:
        release_fifos(srv)
        for source in (linked, fifo):
            cli("infer", f"{source}/0", "--stop", check=False)
        trap.close()


def release_fifos(srv) -> None:
    """Opens every FIFO planted in a spool for writing, so that a reader blocked on one goes on."""
    import stat

    for path in (srv.home / "runs").glob("*/spool/relaunch.json"):
        try:
            if stat.S_ISFIFO(path.lstat().st_mode):
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                os.write(fd, b"{}")
                os.close(fd)
        except OSError:
            pass


# -- sessions against each other -----------------------------------------------------------------
def test_a_session_cannot_reach_another_sessions_files_processes_or_scope(srv, board, listener, root_secrets, tmp_path):
    private = f"VICTIM-PRIVATE-{secrets.token_hex(16)}\n"
    tag = f"victim-{secrets.token_hex(6)}"
    vcli = cli_for(srv, tmp_path / "victim")
    vproject = hostile_project(tmp_path / "victim" / "code", {"private_text": private})
    victim = started(vcli, vproject, "-e", "victim.py", "-d", board["name"], "-a", tag)
    wait_log(srv, victim, "VICTIM-READY")
    pids = processes_with(tag)
    assert pids, "the victim's processes were not found on the host"
    supervisors = sorted({parent_of(pid) for pid in pids} - set(pids))  # the victim's supervisor
    spool = host_spool(srv, victim, tag)
    workdir = spool.parent / "app"
    assert (workdir / "private.txt").read_text() == private
    socket_path = spool / "repl.sock"
    targets = base_targets(srv, board, listener, root_secrets)
    targets.update({"platform_pids": targets["platform_pids"] + supervisors, "victim_pids": pids, "kill_pids": pids,
               "victim_workdir": str(workdir), "victim_socket": str(socket_path),
                    "private_path": str(workdir / "private.txt"), "private_sha": sha(private.encode()),
                    "private_size": len(private)})
    acli = cli_for(srv, tmp_path / "attacker")
    project = hostile_project(tmp_path / "attacker" / "code", targets)
    attacker = started(acli, project, "-e", "forge.py", "-d", board["name"], "-a",
                       "--attacks processes,labels --plant repl --wait 90")
    try:
        text = wait_log(srv, attacker, "FORGE-WAITING")
        # nsml exec of the attacker must not run code in the victim's scope (its repl.json names
        # the victim's socket).
        probe = "import os; print('EXEC-IN', os.environ.get('NSML_SESSION_NAME'))"
        exec_out = acli("exec", attacker, probe, check=False)
        assert f"EXEC-IN {victim}" not in exec_out.stdout, exec_out.stdout
        assert_held(text, "processes", "labels")
        assert_absent(text, "the attacker's log", private)
    finally:
        acli("stop", attacker, check=False)
    (workdir / "release").touch()
    ended = wait_ended(srv, victim)
    assert ended["status"] == "exited" and ended["exit_code"] == 0, f"{ended}\n{logs(srv, victim)}"
    assert "VICTIM-DONE released" in logs(srv, victim)
    wait_ended(srv, attacker)
    assert_absent(kept_for(srv, acli, attacker, tmp_path / "kept"), "what the platform keeps of the attacker", private)


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


# -- the spool and the platform's own processes (a server of their own: they try to kill it) -----
@pytest.fixture
def own_server(tmp_path):
    server = start_server(tmp_path / "platform")
    yield server
    stop_server(server)


def test_forged_spool_files_turn_stop_and_rm_against_nothing(own_server, listener, root_secrets, tmp_path):
    srv = own_server
    cli = cli_for(srv, tmp_path / "work")
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "train" / "x").write_text("1\n")
    cli("dataset", "push", "plain", data)
    decoy = subprocess.Popen(["sleep", "300"], start_new_session=True)  # anyone's process group
    targets = {**base_targets(srv, {"name": "plain"}, listener, root_secrets), "kill_pids": [srv.proc.pid, decoy.pid]}
    project = hostile_project(tmp_path / "code", targets)
    args = ("-e", "forge.py", "-d", "plain", "-a", "--attacks processes --plant user.pid,supervisor.pid,output.log --wait 90")
    try:
        stopped, removed = started(cli, project, *args), started(cli, project, *args)
        texts = [wait_log(srv, name, "FORGE-WAITING") for name in (stopped, removed)]
        assert srv.alive(), "the server was killed from a session"
        assert decoy.poll() is None, "another process group was killed from a session"
        shell = cli("sh", stopped, f"id -u; grep CapEff /proc/self/status; cat {srv.home}/token; ls /proc", check=False)
        assert srv.token not in shell.stdout + shell.stderr
        if ROOT:
            assert shell.stdout.split()[0] != "0", shell.stdout
        assert "CapEff:\t0000000000000000" in shell.stdout, shell.stdout
        cli("stop", stopped)
        assert srv.wait(stopped)["status"] == "stopped"
        assert srv.alive(), "nsml stop of a session that forged user.pid killed the server"
        cli("rm", "-f", removed)
        time.sleep(1)
        assert srv.alive(), "nsml rm -f of a session that forged user.pid killed the server"
        assert decoy.poll() is None, "nsml stop / rm -f killed a process group that was not the session's"
        for text in texts:
            assert_held(text, "processes")
        assert_absent(logs(srv, stopped), "the log of a session that linked output.log to a root file",
                      root_secrets.secret_text)
        assert root_secrets.rootfile.read_bytes() == root_secrets.rootfile_bytes
    finally:
        decoy.kill()
        decoy.wait()


# -- resources ------------------------------------------------------------------------------------
BENIGN = "print('benign session ran')\n"


def benign_session_completes(srv, cli, folder: Path) -> None:
    code = write_project(folder, BENIGN)
    name = started(cli, code)
    info = wait_ended(srv, name)
    assert info["status"] == "exited" and "benign session ran" in logs(srv, name), f"{info}\n{logs(srv, name)}"


def pids_per_session() -> int:
    from nsml.scheduler import local

    return getattr(local, "PIDS_PER_SESSION", 4096)


def test_a_fork_bomb_ends_only_its_own_session(own_server, tmp_path):
    srv = own_server
    cli = cli_for(srv, tmp_path / "work")
    cap = pids_per_session() + 64  # more than a session may have; bounded all the same
    mark = f"600.{random.randint(10**8, 10**9)}"  # sleep's argument: how its processes are found
    project = hostile_project(tmp_path / "code", {})
    name = started(cli, project, "-e", "forkbomb.py", "-c", "1", "--memory", "2G", "-a", f"{cap} 4 {mark}")
    try:
        text = wait_log(srv, name, "BOMB-HOLDING", timeout=240)
        assert srv.alive(), "the server stopped answering during a fork bomb"
        assert cli("ps", check=False).returncode == 0, "the host could not start a command during a fork bomb"
        info = wait_ended(srv, name)
        text = logs(srv, name)
        made = int(next(ln for ln in text.splitlines() if ln.startswith("BOMB ")).split()[1])
        assert made < cap, f"the bomb made {made} processes: no process limit held it"
        assert not attack_lines(text)
        assert info["status"] == "failed", info
        deadline = time.monotonic() + 20
        while processes_with(mark) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not processes_with(mark), f"{len(processes_with(mark))} of the bomb's processes outlived its session"
        assert srv.alive()
        benign_session_completes(srv, cli, tmp_path / "benign")
    finally:
        kill_marked(mark)


def test_a_memory_hog_fails_its_session_as_out_of_memory(own_server, tmp_path):
    srv = own_server
    cli = cli_for(srv, tmp_path / "work")
    project = hostile_project(tmp_path / "code", {})
    name = started(cli, project, "-e", "memhog.py", "-c", "1", "--memory", "256M", "-a", "1536")
    info = wait_ended(srv, name)
    text = logs(srv, name)
    assert not attack_lines(text), text[-2000:]
    reached = max([int(ln.split()[1]) for ln in text.splitlines() if ln.startswith("HOG ")] or [0])
    assert reached < 1536, f"the hog allocated {reached} MB with --memory 256M"
    assert info["status"] == "failed", info
    assert "memory" in info["error"].lower() or "MemoryError" in text, f"{info['error']!r}\n{text[-1500:]}"
    assert srv.alive()
    benign_session_completes(srv, cli, tmp_path / "benign")
