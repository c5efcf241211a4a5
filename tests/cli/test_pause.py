"""Stop-and-go through the real CLI, a real server and real sessions in the sandbox: `nsml pause`
checkpoints a running script through its bound save (SIGUSR1 to the library), the session ends
paused with its resources released, and `nsml resume` goes on from that checkpoint under the
same name; preemption (pause --requeue) does both at once.

"Loses no step", precisely: the script reports step i once per iteration and its checkpoint
holds the next step to run; it is paused after it has reported step HOLD and recorded that, so
over both attempts the metric series has every step 0..STEPS-1 exactly once, and the second
attempt starts at HOLD + 1 because it loaded the checkpoint (its log says so).
"""

import pytest

from tests.conftest import (Cli, Server, check_failed, cli_in, kill_leftover_supervisors, open_gate, serve_for_module,
                            start_session, wait_for, write_project, app_dir)

TRAIN = '''
import argparse, os, sys, time
import nsml

p = argparse.ArgumentParser()
p.add_argument("--mode", default="train")
p.add_argument("--pause", type=int, default=0)
p.add_argument("--iteration", default="0")
p.add_argument("--steps", type=int, default=6)
p.add_argument("--hold-at", type=int, default=-1)  # after this step, wait for the file "gate"
p.add_argument("--bind", default="save")  # save, none (nothing bound), failing (the save raises), slow (waits for "save-gate")
config = p.parse_args()
state = {"next": 0}


def save(folder):
    if config.bind == "failing":
        raise OSError("the disk is full")
    if config.bind == "slow":
        open("saving", "w").close()
        while not os.path.exists("save-gate"):
            time.sleep(0.05)
    with open(os.path.join(folder, "state"), "w") as f:
        f.write(str(state["next"]))


def load(folder):
    with open(os.path.join(folder, "state")) as f:
        state["next"] = int(f.read())
    print("loaded: next step", state["next"], flush=True)


if config.bind != "none":
    nsml.bind(save=save, load=load)
print("argv", " ".join(sys.argv[1:]), flush=True)
if config.pause:
    nsml.paused(scope=locals())
for step in range(state["next"], config.steps):
    nsml.report(step=step, value=step)
    state["next"] = step + 1
    if step == config.hold_at and not os.path.exists("held"):  # once: the working directory carries over
        open("held", "w").close()
        nsml.report(step=step, holding=1)  # the test pauses it from here on
        while not os.path.exists("gate"):
            time.sleep(0.05)
print("done", flush=True)
'''
HOLD, STEPS = 2, 6
ENDED = ("exited", "failed", "stopped", "lost")  # a preempted session is paused for a moment, then queued again


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_for_module(tmp_path_factory, "pause")


@pytest.fixture(scope="module")
def cli(server, tmp_path_factory) -> Cli:
    cli = cli_in(server, tmp_path_factory.mktemp("pause-work") / "code")
    write_project(cli.cwd, TRAIN)
    return cli


def holding(server, name, pausable=True) -> dict:
    """The session once its script waits at the gate (and, with `pausable`, the server knows
    it can pause)."""
    def ready():
        s = server.session(name)
        assert s["status"] in ("queued", "running"), s
        return s if s["last_values"].get("holding") == 1 and (s["pausable"] or not pausable) else None
    return wait_for(ready, f"{name} to hold at its gate", timeout=120)


def events(server, name) -> list[tuple[str, str]]:
    return [(e["status"], e["note"]) for e in server.api.get(f"/api/web/sessions/{name}/info").json()["events"]]


def steps(server, name, key="value") -> list:
    return server.api.get(f"/api/sessions/{name}/metrics/{key}").json()["steps"]


def checkpoints(server, name) -> list[str]:
    return [c["name"] for c in server.api.get(f"/api/sessions/{name}/checkpoints").json()]


def running_names(server) -> list[str]:
    return server.api.get("/api/resources").json().get("running", [])


def test_a_pause_and_resume_round_trip_loses_no_step(server, cli):
    name = start_session(cli, "-a", f"--steps {STEPS} --hold-at {HOLD}")
    assert holding(server, name)["pause_requested"] == ""

    out = cli("pause", name).stdout.strip()
    info = server.session(name)
    checkpoint = info["pause_checkpoint"]
    assert out == f"Session {name} is paused at checkpoint {checkpoint}; nsml resume {name} continues it"
    assert info["status"] == "paused" and checkpoint.startswith("paused-") and info["pause_requested"] == ""
    assert checkpoint in checkpoints(server, name) and info["exit_code"] == 0
    assert name not in running_names(server)  # its resources are released
    assert events(server, name)[-2:] == [("running", "pause requested by alice"), ("paused", f"paused at checkpoint {checkpoint}")]
    row = next(ln for ln in cli("ps", "-a").stdout.splitlines() if ln.startswith(name + " "))
    assert "Paused" in row and f"paused at checkpoint {checkpoint}; nsml resume {name}" in " ".join(row.split())
    assert steps(server, name) == list(range(HOLD + 1))

    assert cli("resume", name).stdout.strip() == f"Session {name} is resumed from checkpoint {checkpoint} (attempt 2)"
    info = server.wait(name)
    logs = cli("logs", name).stdout
    assert info["status"] == "exited" and info["attempt"] == 2 and info["resumed_from"] == checkpoint, logs
    second = logs.partition(f"[nsml] resumed from checkpoint {checkpoint} (attempt 2)\n")[2]
    assert f"--pause 1 --iteration {checkpoint}\n" in second and f"loaded: next step {HOLD + 1}\n" in second, logs
    assert steps(server, name) == list(range(STEPS))  # every step, each once, over both attempts
    assert [s for s, _ in events(server, name)][-3:] == ["queued", "running", "exited"]


def test_a_script_without_a_bound_save_is_refused_and_runs_on(server, cli):
    name = start_session(cli, "-a", "--bind none --steps 4 --hold-at 1")
    assert holding(server, name, pausable=False)["pausable"] is False
    line = check_failed(cli("pause", name, check=False))
    assert line == (f"nsml: Session {name} cannot be paused: its script has not bound a save function (nsml.bind(save=...)), "
                    "or handles SIGUSR1 itself, so a pause would lose everything since its last checkpoint. Bind a save "
                    "(and call nsml.paused(scope=locals()) when --pause is 1, so that nsml resume loads it), "
                    f"or end the session with nsml stop {name}.")
    resp = server.api.post(f"/api/sessions/{name}/pause")
    assert resp.status_code == 409
    info = server.session(name)
    assert (info["status"], info["pause_requested"]) == ("running", "")
    open_gate(server, name)
    info = server.wait(name)
    assert info["status"] == "exited", cli("logs", name).stdout
    assert steps(server, name) == [0, 1, 2, 3]


def test_a_save_that_raises_leaves_the_session_running(server, cli):
    name = start_session(cli, "-a", "--bind failing --steps 4 --hold-at 1")
    holding(server, name)
    line = check_failed(cli("pause", name, check=False))
    assert line == (f"nsml: The pause of {name} failed: its save raised OSError: the disk is full. The session keeps running; "
                    f"fix the save function (see nsml logs {name}), or end it with nsml stop {name}.")
    info = server.session(name)
    assert (info["status"], info["pause_requested"], info["pause_checkpoint"]) == ("running", "", "")
    assert ("running", "pause failed: OSError: the disk is full; the session keeps running") in events(server, name)
    assert not [c for c in checkpoints(server, name) if c.startswith("paused-")]  # nothing half-saved
    open_gate(server, name)
    info = server.wait(name)
    logs = cli("logs", name).stdout
    assert info["status"] == "exited", logs
    assert "nsml: the pause failed: saving checkpoint paused-" in logs and "OSError: the disk is full" in logs
    assert steps(server, name) == [0, 1, 2, 3]


def test_a_queued_session_is_paused_at_once_and_resume_queues_it_again(server, cli):
    blocker = start_session(cli, "-c", "64", "-a", "--steps 1 --hold-at 0")  # every CPU of the server
    holding(server, blocker)
    name = start_session(cli, "-a", "--steps 2")
    assert server.session(name)["status"] == "queued"
    assert cli("pause", name).stdout.strip() == f"Session {name} is paused (it had not started); nsml resume {name} queues it again"
    info = server.session(name)
    assert (info["status"], info["started"]) == ("paused", None)
    assert cli("resume", name).stdout.strip() == f"Session {name} is queued again"
    assert server.session(name)["status"] == "queued"
    open_gate(server, blocker)
    info = server.wait(name)
    assert (info["status"], info["attempt"]) == ("exited", 1), cli("logs", name).stdout
    assert events(server, name) == [("queued", ""), ("paused", "pause requested by alice (before it started)"),
                                    ("queued", "queued again (it was paused before it started)"), ("running", ""), ("exited", "")]
    server.wait(blocker)


def test_pausing_an_ended_session_is_refused(server, cli):
    name = start_session(cli, "-a", "--steps 1")
    assert server.wait(name)["status"] == "exited"
    line = check_failed(cli("pause", name, check=False))
    assert line == f"nsml: Session {name} has already exited; only a running or queued session can be paused."
    assert server.api.post(f"/api/sessions/{name}/pause").status_code == 409


def test_only_whoever_controls_the_session_may_pause_it(server, cli):
    from tests.cli.test_datasets import add_user

    name = start_session(cli, "--visibility", "public", "-a", "--steps 2 --hold-at 0")
    holding(server, name)
    bob = add_user(server, "bob", "bobs-pause-token")
    resp = bob.post(f"/api/sessions/{name}/pause")  # bob reads it (public), but it is not his
    assert resp.status_code == 403 and resp.json()["detail"] == f"Session {name} belongs to alice; only they or an admin may do that."
    info = server.session(name)
    assert (info["status"], info["pause_requested"]) == ("running", "")
    open_gate(server, name)
    assert server.wait(name)["status"] == "exited"


def test_a_preemption_pauses_and_queues_the_session_again_from_its_checkpoint(server, cli):
    name = start_session(cli, "-a", f"--steps {STEPS} --hold-at {HOLD}")
    holding(server, name)
    out = cli("pause", "--requeue", name).stdout.strip()
    info = server.wait(name, ENDED)  # paused, queued again at once, run from its checkpoint
    logs = cli("logs", name).stdout
    assert info["status"] == "exited" and info["attempt"] == 2, logs
    checkpoint = info["resumed_from"]
    assert checkpoint.startswith("paused-") and out.startswith(f"Session {name} is paused at checkpoint {checkpoint} and queued again")
    assert events(server, name) == [
        ("queued", ""), ("running", ""), ("running", "preempted by alice (pause --requeue)"),
        ("paused", f"paused at checkpoint {checkpoint}"),
        ("queued", f"preempted: resumed from checkpoint {checkpoint} (attempt 2)"), ("running", ""), ("exited", "")]
    assert f"loaded: next step {HOLD + 1}\n" in logs
    assert steps(server, name) == list(range(STEPS))


def test_a_pending_preemption_survives_a_server_restart(tmp_path):
    server = Server(tmp_path / "home").start()
    try:
        cli = cli_in(server, tmp_path / "code")
        write_project(cli.cwd, TRAIN)
        name = start_session(cli, "-a", "--bind slow --steps 4 --hold-at 1")
        holding(server, name)
        assert server.api.post(f"/api/sessions/{name}/pause", params={"requeue": "true"}).json()["pause_requested"] == "preempt"
        wait_for(lambda: (app_dir(server, name) / "saving").exists(), "the save to start")  # it waits for save-gate

        server.stop()
        server.start()  # same home, same port: the session's supervisor reports to it
        info = server.session(name)
        assert (info["status"], info["pause_requested"]) == ("running", "preempt")  # kept in the database
        open_gate(server, name, gate="save-gate")
        info = server.wait(name, ENDED, timeout=180)  # (not the moment it is paused, before it is queued again)
        logs = cli("logs", name).stdout
        assert info["status"] == "exited" and info["attempt"] == 2 and info["resumed_from"].startswith("paused-"), logs
        assert ("queued", f"preempted: resumed from checkpoint {info['resumed_from']} (attempt 2)") in events(server, name)
        assert steps(server, name) == [0, 1, 2, 3]
    finally:
        server.stop()
        kill_leftover_supervisors(server.home)


def test_a_session_that_does_not_pause_within_the_grace_period_is_stopped(tmp_path):
    server = Server(tmp_path / "home", env={"NSML_PAUSE_GRACE": "1"}).start()
    try:
        cli = cli_in(server, tmp_path / "code")
        write_project(cli.cwd, TRAIN)
        name = start_session(cli, "-a", "--bind slow --steps 4 --hold-at 1")  # its save never ends
        holding(server, name)
        out = cli("pause", name, check=False)
        info = server.wait(name)
        logs = cli("logs", name).stdout
        assert info["status"] == "stopped" and info["pause_requested"] == "", logs
        assert "[nsml] the session did not pause within 1 s of the request; it is stopped." in logs
        assert out.returncode == 1 and "without pausing" in out.stderr
        assert events(server, name)[-2:] == [
            ("stopped", ""), ("stopped", "the pause did not happen: the session ended (stopped) before saving its pause checkpoint")]
        assert not [c for c in checkpoints(server, name) if c.startswith("paused-")]
    finally:
        server.stop()
        kill_leftover_supervisors(server.home)
