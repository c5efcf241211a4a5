"""The scheduler against a real server and real sessions, on a declared inventory that stands in
for GPUs (nodes.yaml): allocation on one node, CUDA_VISIBLE_DEVICES, the GPU model, the queue
with positions and reasons, priorities, time limits, heartbeats (lost, resume), restarts and
the zombie flag driven by the inventory's utilisation feed."""

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.cli.test_resume import TRAIN
from tests.conftest import (
    Cli, Server, clean_env, kill_leftover_supervisors, open_gate, run_dir, start_session, wait_for, write_project,
)

WAIT_S = 60
NODES = """
nodes:
  - name: gpu-a
    cpus: 8
    memory: 32G
    gpus: {count: 4, model: NVIDIA A100-SXM4-80GB, memory: 80G}
  - name: gpu-b
    cpus: 8
    memory: 32G
    gpus: {count: 2, model: NVIDIA H100 80GB HBM3, memory: 80G}
utilisation: feed.jsonl
"""
HOLD = """\
import os, time
import nsml
print("visible", os.environ.get("CUDA_VISIBLE_DEVICES"), "gpu_num", nsml.GPU_NUM, flush=True)
while not os.path.exists("gate"):
    time.sleep(0.05)
print("released", flush=True)
"""
SMALL = ("-c", "0.1", "--memory", "128M")



def start(inventory_dir: Path, home: Path, **env) -> Server:
    (inventory_dir / "nodes.yaml").write_text(NODES)
    return Server(home, extra=["--inventory", str(inventory_dir / "nodes.yaml")], env=env).start()


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inventory")
    server = start(folder, folder / "home", NSML_HEARTBEAT_TIMEOUT="6", NSML_ZOMBIE_AFTER="4")
    server.feed = folder / "feed.jsonl"
    yield server
    server.stop()
    kill_leftover_supervisors(server.home)


@pytest.fixture
def cli(srv, tmp_path) -> Cli:
    write_project(tmp_path / "code", HOLD)
    return Cli(clean_env(srv.home), tmp_path / "code")


@pytest.fixture(autouse=True)
def everything_released(srv):
    """Each test leaves every GPU free and nothing running or queued."""
    yield
    open_gate_all(srv)
    wait_for(lambda: not srv.api.get("/api/sessions").json(), "every session to end")
    gpus = srv.api.get("/api/resources").json()["gpus"]
    assert [g for g in gpus if g["holder"]] == []


def open_gate_all(srv: Server) -> None:
    for s in srv.api.get("/api/sessions").json():
        if s["status"] == "running":
            open_gate(srv, s["name"])
        else:
            srv.api.post(f"/api/sessions/{s['name']}/stop")


def session(srv: Server, name: str) -> dict:
    return srv.session(name)


def log(srv: Server, name: str) -> str:
    return srv.api.get(f"/api/sessions/{name}/logs").json().get("text", "")


def running(srv: Server, name: str) -> dict:
    return wait_for(lambda: (s := session(srv, name))["status"] == "running" and "visible" in log(srv, name) and s,
                    f"{name} to run")


def test_gpus_are_allocated_on_one_node_seen_by_the_session_and_released(srv, cli):
    h100 = start_session(cli, "-g", "2", "--gpu-model", "h100", *SMALL)
    a100 = start_session(cli, "-g", "3", *SMALL)
    s = running(srv, h100)
    assert (s["node"], s["gpu_ids"], s["gpu_model"]) == ("gpu-b", "0,1", "h100")
    assert "visible 0,1 gpu_num 2" in log(srv, h100)
    s = running(srv, a100)
    assert (s["node"], s["gpu_ids"]) == ("gpu-a", "0,1,2")
    assert "visible 0,1,2 gpu_num 3" in log(srv, a100)

    waiting = start_session(cli, "-g", "2", "--gpu-model", "H100", *SMALL)
    s = session(srv, waiting)
    assert s["status"] == "queued" and s["queue_position"] == 1
    assert s["queue_reason"] == "waiting for 2 H100 GPUs on one node (at most 0 free); 0 ahead of you; alice holds 5"
    row = next(r for r in cli("ps").stdout.splitlines() if waiting in r)
    assert "#1 in queue" in row and "waiting for 2 H100 GPUs" in " ".join(cli("ps").stdout.split())
    resources = srv.api.get("/api/resources").json()
    holders = {(g["node"], g["index"]): g["holder"] for g in resources["gpus"]}
    assert holders == {("gpu-a", 0): a100, ("gpu-a", 1): a100, ("gpu-a", 2): a100, ("gpu-a", 3): None,
                       ("gpu-b", 0): h100, ("gpu-b", 1): h100}
    assert [(q["session"], q["position"]) for q in resources["queue"]] == [(waiting, 1)]

    refused = cli("run", "-g", "1", "--gpu-model", "v100", *SMALL, check=False)
    assert refused.returncode == 1 and "No node has 1 GPU(s) of a model matching 'v100'" in refused.stderr
    assert "NVIDIA A100-SXM4-80GB, NVIDIA H100 80GB HBM3" in refused.stderr
    too_many = cli("run", "-g", "5", *SMALL, check=False)
    assert too_many.returncode == 1 and "the largest node has 4" in too_many.stderr

    open_gate(srv, h100)  # its GPUs go to the one waiting for them
    assert srv.wait(h100)["status"] == "exited"
    s = running(srv, waiting)
    assert (s["node"], s["gpu_ids"]) == ("gpu-b", "0,1")


def test_priorities_order_the_queue_and_high_is_for_admins(srv, cli, tmp_path):
    holder = start_session(cli, "-g", "4", "--gpu-model", "a100", *SMALL)
    running(srv, holder)
    normal = start_session(cli, "-g", "1", "--gpu-model", "a100", *SMALL)
    low = start_session(cli, "-g", "1", "--gpu-model", "a100", "--priority", "low", *SMALL)
    high = start_session(cli, "-g", "1", "--gpu-model", "a100", "--priority", "high", *SMALL)  # alice administers the server
    positions = {s["name"]: (s["queue_position"], s["priority"]) for s in srv.api.get("/api/sessions").json() if s["status"] == "queued"}
    assert positions == {high: (1, "high"), normal: (2, "normal"), low: (3, "low")}

    token = srv.api.post("/api/users", json={"name": "bob"}).json()["token"]
    bobs = Cli({**clean_env(srv.home), "NSML_SERVER_URL": srv.url, "NSML_TOKEN": token}, cli.cwd)
    refused = bobs("run", "-g", "1", "--priority", "high", *SMALL, check=False)
    assert refused.returncode == 1 and "--priority high is for admins" in refused.stderr
    bad = cli("run", "--priority", "urgent", *SMALL, check=False)
    assert bad.returncode == 1 and "--priority must be one of low, normal, high" in bad.stderr

    open_gate(srv, holder)
    assert srv.wait(holder)["status"] == "exited"
    s = running(srv, high)  # the high one first, on a freed GPU; then the others, in order
    assert s["node"] == "gpu-a"
    for name in (normal, low):
        running(srv, name)


def test_a_time_limit_stops_the_session_with_a_line_in_its_log(srv, cli):
    name = start_session(cli, "-g", "0", "--time-limit", "2s", *SMALL)
    assert session(srv, name)["time_limit"] == 2.0
    s = srv.wait(name, timeout=WAIT_S)
    assert s["status"] == "stopped", s
    assert "[nsml] the session reached its time limit (2s) and was stopped by the platform." in log(srv, name)
    assert s["ended"] - s["started"] < 2 + 2 + 15  # the limit, a reconcile period, the grace, a loaded machine
    bad = cli("run", "--time-limit", "soon", *SMALL, check=False)
    assert bad.returncode == 1 and "is not a duration" in bad.stderr


def test_a_session_whose_supervisor_is_killed_is_lost_frees_its_gpus_and_resumes(srv, tmp_path):
    code = write_project(tmp_path / "train", TRAIN)
    cli = Cli(clean_env(srv.home), code)
    name = start_session(cli, "-g", "2", *SMALL, "-a", "--epochs 4 --hang-after 1")
    wait_for(lambda: "1" in [c["name"] for c in srv.api.get(f"/api/sessions/{name}/checkpoints").json()], "checkpoint 1")
    user = int((run_dir(srv, name, holding="user.pid") / "user.pid").read_text())
    os.kill(supervisor_of(srv, name), signal.SIGKILL)
    s = srv.wait(name, statuses=("lost",), timeout=6 + 2 + WAIT_S)
    assert s["error"].startswith("The session's supervisor stopped reporting (no heartbeat for 6 s")
    assert f"nsml resume {name}" in s["error"]
    wait_for(lambda: not _alive(user), "its unsupervised user process to be ended")
    assert not [g for g in srv.api.get("/api/resources").json()["gpus"] if g["holder"] == name]
    assert "Lost" in next(r for r in cli("ps", "-a").stdout.splitlines() if name in r)

    cli("resume", name)
    s = srv.wait(name, statuses=("exited", "failed"))
    assert s["status"] == "exited" and s["attempt"] == 2, s
    text = log(srv, name)
    assert "--pause 1 --iteration 1" in text and "loaded epoch 1" in text


def supervisor_of(srv: Server, name: str) -> int:
    spec = str(run_dir(srv, name) / "spec.json")
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"nsml.scheduler.supervisor" in args and spec.encode() in args:
                return int(pid)
    raise AssertionError(f"no supervisor for {name}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")


def test_an_idle_gpu_past_the_threshold_flags_a_zombie_in_ps(srv, cli):
    name = start_session(cli, "-g", "1", "--gpu-model", "h100", *SMALL)
    s = running(srv, name)
    reading = {"node": s["node"], "gpu": int(s["gpu_ids"]), "memory_used": 1 << 30}
    with open(srv.feed, "a") as f:
        f.write(json.dumps({**reading, "util": 0}) + "\n")
    s = wait_for(lambda: (s := session(srv, name))["zombie"] and s, "the zombie flag (samples every 5 s)")
    assert s["zombie"] == [int(s["gpu_ids"])]
    assert f"zombie? GPU {s['gpu_ids']} idle" in next(r for r in cli("ps").stdout.splitlines() if name in r)
    wait_for(lambda: "while this session holds it (a zombie?)" in log(srv, name), "its owner to be told in the log")
    gpu = next(g for g in srv.api.get("/api/resources").json()["gpus"] if g["holder"] == name)
    assert gpu["util"] == 0 and gpu["memory_used"] == 1 << 30
    with open(srv.feed, "a") as f:  # busy again: the flag goes
        f.write(json.dumps({**reading, "util": 80}) + "\n")
    wait_for(lambda: not session(srv, name)["zombie"], "the zombie flag to clear")


def test_a_server_restart_keeps_sessions_running_queued_in_order_and_gpus_booked_once(tmp_path):
    srv = start(tmp_path, tmp_path / "home", NSML_HEARTBEAT_TIMEOUT="6")
    try:
        write_project(tmp_path / "code", HOLD)
        cli = Cli(clean_env(srv.home), tmp_path / "code")
        a = start_session(cli, "-g", "3", "--gpu-model", "a100", *SMALL)
        b = start_session(cli, "-g", "2", "--gpu-model", "h100", *SMALL)
        doomed = start_session(cli, "-g", "1", "--gpu-model", "a100", *SMALL)
        for name in (a, b, doomed):
            running(srv, name)
        q1 = start_session(cli, "-g", "2", "--gpu-model", "h100", *SMALL)
        q2 = start_session(cli, "-g", "1", "--gpu-model", "h100", *SMALL)
        doomed_supervisor, doomed_user = supervisor_of(srv, doomed), int((run_dir(srv, doomed) / "user.pid").read_text())

        srv.stop()  # sessions outlive their server
        os.killpg(doomed_user, signal.SIGKILL)  # and one dies while it is away
        os.kill(doomed_supervisor, signal.SIGKILL)
        srv.start()

        assert session(srv, a)["status"] == "running" and session(srv, b)["status"] == "running"
        assert [(s["name"], s["queue_position"]) for s in srv.api.get("/api/sessions").json() if s["status"] == "queued"] \
            == [(q2, 2), (q1, 1)]  # newest first, as ps lists them; the queue keeps its order
        s = srv.wait(doomed, statuses=("lost",), timeout=6 + 2 + WAIT_S)
        assert "no heartbeat" in s["error"]
        wait_for(lambda: session(srv, a)["heartbeat"] > time.time() - 6, "the survivors' heartbeats to reach the new server")
        after = start_session(cli, "-g", "1", "--gpu-model", "a100", *SMALL)
        s = running(srv, after)  # the lost session's GPU is free again; a's are still a's
        assert s["gpu_ids"] == "3" and session(srv, a)["gpu_ids"] == "0,1,2"
        open_gate(srv, a, b, after)
        assert [srv.wait(n)["status"] for n in (a, b, after)] == ["exited"] * 3
        running(srv, q1)
        open_gate(srv, q1)
        running(srv, q2)
        open_gate(srv, q2)
        assert [srv.wait(n)["status"] for n in (q1, q2)] == ["exited"] * 2
        assert not [g for g in srv.api.get("/api/resources").json()["gpus"] if g["holder"]]
    finally:
        srv.stop()
        kill_leftover_supervisors(srv.home)


def test_a_bad_inventory_stops_the_server_with_a_clear_line(tmp_path):
    (tmp_path / "nodes.yaml").write_text("nodes: [{name: a, cpus: 0, memory: 1G}]")
    with pytest.raises(RuntimeError) as failed:
        Server(tmp_path / "home", extra=["--inventory", str(tmp_path / "nodes.yaml")]).start()
    assert "nsml: " in str(failed.value) and "`cpus` must be a number above 0" in str(failed.value)
