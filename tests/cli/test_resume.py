"""nsml resume through the real CLI, a real server and real sessions: the same session, run
again from its latest checkpoint as its next attempt."""

import json
import time

import pytest

from tests.conftest import Cli, check_failed, cli_in, push_dataset, serve_for_module, start_session, write_project

TRAIN = '''
import argparse, os, sys, time
import nsml

p = argparse.ArgumentParser()
p.add_argument("--mode", default="train")
p.add_argument("--pause", type=int, default=0)
p.add_argument("--iteration", default="0")
p.add_argument("--epochs", type=int, default=4)
p.add_argument("--hang-after", type=int, default=-1)   # the first time: wait to be stopped
p.add_argument("--crash-after", type=int, default=-1)  # the first time: fail
p.add_argument("--no-save", action="store_true")
config = p.parse_args()
state = {"epoch": -1}


def first_time(tag):
    """True once per session: the working directory (and so this file) carries over to a
    resumed attempt, but a fork starts from the code alone."""
    if os.path.exists(tag):
        return False
    open(tag, "w").close()
    return True


def save(folder):
    with open(os.path.join(folder, "state"), "w") as f:
        f.write(str(state["epoch"]))


def load(folder):
    with open(os.path.join(folder, "state")) as f:
        state["epoch"] = int(f.read())
    print("loaded epoch", state["epoch"], flush=True)


nsml.bind(save=save, load=load)
print("argv", " ".join(sys.argv[1:]), flush=True)
if config.pause:
    nsml.paused(scope=locals())
with open("trace.txt", "a") as f:  # the working directory carries over between attempts
    f.write(f"attempt from {state['epoch'] + 1}\\n")
for epoch in range(state["epoch"] + 1, config.epochs):
    nsml.report(step=epoch, summary=True, loss=1.0 / (epoch + 1))
    state["epoch"] = epoch
    if not config.no_save:
        nsml.save(epoch)
    if epoch == config.hang_after and first_time("hung"):
        while True:
            time.sleep(0.1)
    if epoch == config.crash_after and first_time("crashed"):
        raise RuntimeError("the GPU fell over")
if config.no_save:
    raise SystemExit(2)
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_for_module(tmp_path_factory, "resume")


@pytest.fixture(scope="module")
def cli(server, tmp_path_factory) -> Cli:
    cli = cli_in(server, tmp_path_factory.mktemp("resume-work") / "code")
    write_project(cli.cwd, TRAIN)
    push_dataset(cli, "resumedata")
    return cli


def checkpoints(cli, name) -> list[str]:
    return [c["name"] for c in json.loads(cli("model", "ls", name, "-j").stdout)]


def wait_for_checkpoint(cli, name, checkpoint, timeout=60):
    deadline = time.monotonic() + timeout
    while checkpoint not in checkpoints(cli, name):
        assert time.monotonic() < deadline, cli("logs", name).stdout
        time.sleep(0.2)


def series(server, name, key):
    return server.api.get(f"/api/sessions/{name}/metrics/{key}").json()


def test_resume_of_a_stopped_session_continues_from_its_latest_checkpoint(server, cli):
    name = start_session(cli, "-d", "resumedata", "-a", "--epochs 4 --hang-after 1")
    wait_for_checkpoint(cli, name, "1")
    cli("stop", name)
    assert server.wait(name)["status"] == "stopped"

    out = cli("resume", name).stdout
    assert out.strip() == f"Session {name} is resumed from checkpoint 1 (attempt 2)"
    info = server.wait(name)
    assert info["status"] == "exited", cli("logs", name).stdout
    assert (info["attempt"], info["resumed_from"], info["kind"]) == (2, "1", "normal")

    logs = cli("logs", name).stdout
    first, _, second = logs.partition("[nsml] resumed from checkpoint 1 (attempt 2)\n")
    assert second, logs
    assert "argv --epochs 4 --hang-after 1\n" in first and "loaded epoch" not in first  # the first attempt's log is kept
    assert "argv --epochs 4 --hang-after 1 --pause 1 --iteration 1\n" in second
    assert "loaded epoch 1" in second
    assert checkpoints(cli, name) == ["0", "1", "2", "3"]
    loss = series(server, name, "loss")
    assert loss["steps"] == [0, 1, 2, 3]  # one series: the step count goes on
    assert info["summary"]["step"] == 3
    # The files the first attempt wrote were there for the second (and are kept together).
    assert cli("download", "-s", "trace.txt", name, cli.cwd.parent / "out").returncode == 0
    assert (cli.cwd.parent / "out" / "trace.txt").read_text() == "attempt from 0\nattempt from 2\n"

    row = next(ln for ln in cli("ps", "-a").stdout.splitlines() if ln.startswith(name + " "))
    assert "Exited (attempt 2)" in row
    events = server.api.get(f"/api/web/sessions/{name}/info").json()["events"]
    assert [e["status"] for e in events] == ["queued", "running", "stopped", "queued", "running", "exited"]
    assert events[3]["note"] == "resumed from checkpoint 1 (attempt 2)"


def test_resume_of_a_failed_session_and_again(server, cli):
    name = start_session(cli, "-d", "resumedata", "-a", "--epochs 3 --crash-after 0")
    info = server.wait(name)
    assert info["status"] == "failed" and "the GPU fell over" in info["error"]
    assert cli("resume", name).stdout.strip() == f"Session {name} is resumed from checkpoint 0 (attempt 2)"
    info = server.wait(name)
    assert info["status"] == "exited" and info["error"] == "" and info["exit_code"] == 0, cli("logs", name).stdout
    assert checkpoints(cli, name) == ["0", "1", "2"]
    assert series(server, name, "loss")["steps"] == [0, 1, 2]
    # Exited: its work is done; fork trains further.
    line = check_failed(cli("resume", name, check=False))
    assert line == (f"nsml: Session {name} has exited: it finished its work, so there is nothing to resume. "
                    f"Train further with nsml fork {name} (from its latest checkpoint).")


def test_resume_of_a_running_session_is_refused(server, cli):
    name = start_session(cli, "-d", "resumedata", "-a", "--hang-after 0")
    try:
        server.wait(name, statuses=("running",))
        line = check_failed(cli("resume", name, check=False))
        assert line == (f"nsml: Session {name} is running; nsml resume restarts a stopped or failed session "
                        f"(nsml stop {name} first to restart it).")
    finally:
        cli("stop", name)
    assert server.session(name)["attempt"] == 1


def test_resume_without_a_checkpoint_is_refused_clearly(server, cli):
    name = start_session(cli, "-d", "resumedata", "-a", "--no-save")
    assert server.wait(name)["status"] == "failed"
    line = check_failed(cli("resume", name, check=False))
    assert line == (f"nsml: Session {name} has no checkpoint to resume from (its script never called nsml.save()). "
                    "Start it afresh with nsml run.")
    info = server.session(name)
    assert (info["status"], info["attempt"]) == ("failed", 1)


def test_resume_of_a_fork_loads_the_forks_own_checkpoint(server, cli):
    source = start_session(cli, "-d", "resumedata", "-a", "--epochs 2")
    assert server.wait(source)["status"] == "exited"
    fork = cli("fork", source, "-c", "0", "-a", "--epochs 4 --crash-after 2").stdout.split()[1]
    assert server.wait(fork)["status"] == "failed", cli("logs", fork).stdout
    assert checkpoints(cli, fork) == ["1", "2"]
    assert cli("resume", fork).stdout.strip() == f"Session {fork} is resumed from checkpoint 2 (attempt 2)"
    info = server.wait(fork)
    # Checkpoint 2 is the fork's own (its source has 0 and 1 only): loaded from the fork itself.
    assert info["status"] == "exited", cli("logs", fork).stdout
    assert (info["kind"], info["source"], info["source_checkpoint"]) == ("fork", source, "0")
    second = cli("logs", fork).stdout.partition("[nsml] resumed from checkpoint 2 (attempt 2)\n")[2]
    assert "--epochs 4 --crash-after 2 --pause 1 --iteration 2\n" in second and "loaded epoch 2" in second
    assert checkpoints(cli, fork) == ["1", "2", "3"]
    row = next(ln for ln in cli("ps", "-a").stdout.splitlines() if ln.startswith(fork + " "))
    assert "Exited (attempt 2)" in row and f"normal/fork ({source}:0)" in row


def test_only_the_owner_may_resume(server, cli):
    from tests.cli.test_datasets import add_user

    name = start_session(cli, "-d", "resumedata", "-a", "--epochs 3 --crash-after 0")
    assert server.wait(name)["status"] == "failed"
    bob = add_user(server, "bob", "bobs-resume-token")
    resp = bob.post(f"/api/sessions/{name}/resume")  # not bob's to read either: as if it did not exist
    assert resp.status_code == 404 and resp.json()["detail"].startswith(f"Session '{name}' does not exist.")
    assert server.session(name)["attempt"] == 1
