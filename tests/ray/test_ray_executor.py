"""Sessions on a real two-node Ray cluster on loopback (tests/ray/conftest.py): `nsml server
--executor` with Ray's token authentication on, real sessions in the real sandbox, through the
real CLI."""

import pytest

from tests.conftest import Server, cli_in, push_dataset, start_session, wait_for, write_project
from tests.ray.conftest import ray_server, stop

TRAIN = '''
import argparse, os, sys, time
import nsml

p = argparse.ArgumentParser()
p.add_argument("--pause", type=int, default=0)
p.add_argument("--iteration", default="-1")
p.add_argument("--steps", type=int, default=3)
p.add_argument("--hold", type=float, default=0.0)  # seconds to stay running before the first step
p.add_argument("--hang-after", type=int, default=-1)  # the first attempt: wait there (to be lost)
p.add_argument("--linger", type=float, default=0.0)  # seconds to stay running after the last step
config = p.parse_args()
state = {"step": -1}


def save(folder):
    with open(os.path.join(folder, "state"), "w") as f:
        f.write(str(state["step"]))


def load(folder):
    with open(os.path.join(folder, "state")) as f:
        state["step"] = int(f.read())
    print("loaded step", state["step"], flush=True)


nsml.bind(save=save, load=load)
print("devices", os.environ.get("CUDA_VISIBLE_DEVICES", ""), "data", sorted(os.listdir(os.environ["NSML_DATASET_PATH"]))
      if os.environ.get("NSML_HAS_DATASET") == "1" else [], flush=True)
if config.pause:
    nsml.paused(scope=locals())
time.sleep(config.hold)
for step in range(state["step"] + 1, config.steps):
    state["step"] = step
    nsml.report(step=step, loss=1.0 / (step + 1), scope=globals())
    with open("progress.txt", "w") as f:  # in the working directory: an output file
        f.write(str(step))
    nsml.save(step)
    if step == config.hang_after and not config.pause:
        while True:
            time.sleep(0.1)
time.sleep(config.linger)
'''


@pytest.fixture(scope="module")
def server(cluster, tmp_path_factory):
    srv = ray_server(cluster, tmp_path_factory.mktemp("ray-server"))
    yield srv
    stop(srv, cluster)


@pytest.fixture(scope="module")
def cli(server, tmp_path_factory):
    cli = cli_in(server, tmp_path_factory.mktemp("ray-work") / "code")
    write_project(cli.cwd, TRAIN)
    push_dataset(cli, "raydata")
    return cli


def log_of(cli, name: str) -> str:
    return cli("logs", name).stdout


def test_the_inventory_is_the_clusters(server):
    nodes = {n["name"]: n for n in server.api.get("/api/resources").json()["nodes"]}
    assert set(nodes) == {"head", "gpu1"}
    assert len(nodes["gpu1"]["gpus"]) == 2 and not nodes["head"]["gpus"]


def test_a_gpu_session_lands_on_the_gpu_node_with_the_devices_ray_gave_it(server, cli):
    name = start_session(cli, "-d", "raydata", "-e", "main.py", "-g", "1", "--cpus", "1", "--memory", "512M")
    s = server.wait(name, timeout=120)
    assert s["status"] == "exited", (s["error"], log_of(cli, name))
    assert s["node"] == "gpu1"
    assert s["gpu_ids"] in ("0", "1")
    log = log_of(cli, name)
    assert f"devices {s['gpu_ids']} data" in log, log  # what the session saw is what was recorded
    assert "on Ray node gpu1 with GPU" in log
    assert "test" not in log.split("data", 1)[1].splitlines()[0]  # the view has no test split


def test_two_sessions_run_at_once_on_two_nodes_and_a_node_fetches_a_dataset_once(server, cli):
    first = start_session(cli, "-d", "raydata", "-e", "main.py", "-g", "0", "--cpus", "2", "--memory", "512M", "-a", "--hold 4")
    second = start_session(cli, "-d", "raydata", "-e", "main.py", "-g", "0", "--cpus", "2", "--memory", "512M", "-a", "--hold 4")
    both = wait_for(lambda: (lambda a, b: (a, b) if a["status"] == b["status"] == "running" else None)(server.session(first), server.session(second)),
                    "both running at once", timeout=120, every=0.2)
    assert {both[0]["node"], both[1]["node"]} == {"head", "gpu1"}
    for name in (first, second):
        assert server.wait(name, timeout=120)["status"] == "exited"
    # Both nodes hold the view and the code now: a third session fetches nothing at all.
    third = start_session(cli, "-d", "raydata", "-e", "main.py", "-g", "0", "--cpus", "1", "--memory", "512M")
    assert server.wait(third, timeout=120)["status"] == "exited"
    assert "fetched 0 files (0 bytes) from the server" in log_of(cli, third)


def test_ps_shows_the_node(server, cli):
    out = cli("ps", "-a").stdout
    assert "Node" in out.splitlines()[0] and "gpu1" in out and "head" in out, out


def test_exec_reaches_a_session_on_its_node_and_the_server_restarts_under_it(server, cli):
    name = start_session(cli, "-g", "0", "--cpus", "1", "--memory", "256M", "-a", "--steps 1 --linger 120")
    wait_for(lambda: server.session(name)["last_values"], "its first report", timeout=120, every=0.2)
    assert cli("exec", name, "state['step']").stdout == "0\n"
    server.stop()
    server.start(timeout=90)  # the session's actor outlived its server, and its supervisor reports to the new one
    assert server.session(name)["status"] == "running"
    assert cli("exec", name, "state['step'] + 1").stdout == "1\n"
    cli("stop", name)
    assert server.wait(name, timeout=120)["status"] == "stopped"


def test_pause_resume_live_outputs_and_rm_of_a_session_on_a_node(server, cli, cluster, tmp_path):
    """What the local executor's contract checks (tests/scheduler/test_executor_contract.py),
    through a real server: a signal reaches the user process (nsml pause checkpoints through
    SIGUSR1), the files written so far come from the node, kill and remove leave nothing."""
    name = start_session(cli, "-g", "0", "--cpus", "1", "--memory", "256M", "-a", "--steps 2 --linger 300")
    wait_for(lambda: server.session(name)["last_values"].get("step") == 1, "its last step", timeout=120, every=0.2)
    cli("download", name, tmp_path / "live")
    assert (tmp_path / "live" / "progress.txt").read_text() == "1"
    cli("pause", name)
    paused = server.wait(name, statuses=("paused",), timeout=120)
    assert paused["pause_checkpoint"], paused
    cli("resume", name)
    wait_for(lambda: (lambda s: s["status"] == "running" and s["attempt"] == 2)(server.session(name)), "attempt 2", timeout=120, every=0.2)
    wait_for(lambda: "loaded step" in log_of(cli, name), "the resumed attempt to load its checkpoint", timeout=120, every=0.5)
    cli("rm", "-f", name)
    wait_for(lambda: cluster.run_driver("import ray; ray.init(logging_level='ERROR'); "
                                        "print(len([a for a in ray.util.list_named_actors(all_namespaces=True) "
                                        "if a['namespace'].startswith('nsml-')]))").stdout.strip().endswith("0"),
             "the removed session's actor to go", timeout=60, every=1)


def test_a_server_outside_the_cluster_uses_ray_client(cluster, cli, tmp_path):
    port = cluster.head.ports.get("ray_client_server")
    if not port:
        pytest.skip("Ray here has no client server (pip install 'ray[client]')")
    host = cluster.address.rsplit(":", 1)[0]
    srv = Server(tmp_path / "home", extra=["--executor", f"ray://{host}:{port}"], env=cluster.driver_env()).start(timeout=150)
    try:
        work = cli_in(srv, tmp_path / "code")
        write_project(work.cwd, TRAIN)
        name = start_session(work, "-g", "1", "--cpus", "1", "--memory", "256M")
        s = srv.wait(name, timeout=120)
        assert s["status"] == "exited" and s["node"] == "gpu1", (s["status"], s["error"])
    finally:
        stop(srv, cluster)


@pytest.mark.parametrize("case", ["wrong token", "nobody there", "no address"])
def test_a_server_that_cannot_join_the_cluster_says_why_in_one_line(cluster, tmp_path, case):
    import subprocess
    import sys

    from tests.conftest import clean_env
    from tests.ray_cluster import free_ports

    address = {"wrong token": cluster.address, "nobody there": f"127.0.0.1:{free_ports(1)[0]}", "no address": "bogus"}[case]
    env = {**clean_env(tmp_path / "home"), **cluster.driver_env(), "RAY_gcs_server_port_wait_time_s": "1"}
    if case == "wrong token":
        env["RAY_AUTH_TOKEN"] = "0" * 64
    proc = subprocess.run([sys.executable, "-m", "nsml.server.main", "--home", str(tmp_path / "home"), "--executor", address],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("nsml: ") and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert {"wrong token": "token", "nobody there": "Cannot reach", "no address": "HOST:PORT"}[case] in line, line


def test_a_lost_node_loses_its_sessions_and_they_come_back_on_the_other_one(server, cli, cluster):
    """Last in this module: it kills node gpu1."""
    filler = start_session(cli, "-e", "main.py", "-g", "0", "--cpus", "2", "--memory", "256M", "-a", "--hold 600")
    assert wait_for(lambda: server.session(filler)["node"], "the filler placed", timeout=120, every=0.2) == "head"
    lost = start_session(cli, "-d", "raydata", "-e", "main.py", "-g", "0", "--cpus", "1", "--memory", "256M", "-a", "--steps 5 --hang-after 2")
    spare = start_session(cli, "-d", "raydata", "-e", "main.py", "-g", "0", "--cpus", "1", "--memory", "256M", "--preemptible", "-a",
                          "--steps 5 --hang-after 1")
    for name, step in ((lost, 2), (spare, 1)):
        wait_for(lambda: any(c["name"] == str(step) for c in server.api.get(f"/api/sessions/{name}/checkpoints").json()),
                 f"{name}'s checkpoint {step}", timeout=120, every=0.2)
        assert server.session(name)["node"] == "gpu1"
    before = {name: server.api.get(f"/api/sessions/{name}/metrics/loss").json() for name in (lost, spare)}
    cluster.kill_node("gpu1")
    gone = server.wait(lost, statuses=("lost",), timeout=90)
    assert "gpu1" in gone["error"] and "nsml resume" in gone["error"], gone["error"]
    # What it shipped before is intact: its log, its metrics, its checkpoints.
    assert "loaded" not in log_of(cli, lost)
    assert server.api.get(f"/api/sessions/{lost}/metrics/loss").json() == before[lost]
    # The preemptible one comes back on its own, queued for the head; the regular one on nsml resume.
    cli("stop", filler)
    cli("resume", lost)
    for name, step in ((spare, 1), (lost, 2)):
        s = server.wait(name, statuses=("exited", "failed"), timeout=180)
        assert s["status"] == "exited" and s["node"] == "head" and s["attempt"] == 2, (s["status"], s["node"], s["error"], log_of(cli, name))
        log = log_of(cli, name)
        assert f"loaded step {step}" in log, log
    steps = server.api.get(f"/api/sessions/{lost}/metrics/loss").json()["steps"]
    assert sorted(set(steps)) == [0, 1, 2, 3, 4], steps
