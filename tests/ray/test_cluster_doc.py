"""docs/cluster.md, section 5, followed from scratch: its bash blocks run exactly as written, in
order, on this machine, with its variables pointing three "nodes" (a, b, c) at loopback, the
server on a real PostgreSQL and a real bucket; then a session runs through the real CLI on the
cluster they made. A command changed in the page changes what this test runs."""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


from tests.conftest import REPO, Cli, clean_env, kill_leftover_supervisors, push_dataset, start_session, wait_for, write_project
from tests.ray_cluster import _leftovers, free_ports

SECTION = "## 5. Sessions on a Ray cluster"


def section_blocks() -> list[str]:
    text = (REPO / "docs" / "cluster.md").read_text()
    body = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", body, flags=re.S)


def test_the_page_has_its_commands():
    blocks = "\n".join(section_blocks())
    for command in ("ray start --head", "ray start --address", "nsml server", "--executor", "RAY_AUTH_MODE=token"):
        assert command in blocks, command


def test_the_pages_commands_make_a_running_team_platform(postgres, s3_server, tmp_path):
    short = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # Ray's sockets: keep the path short
    home = tmp_path / "nsml-home"
    ray_port, nsml_port = free_ports(2)
    bindir = os.path.dirname(sys.executable)
    env = {**clean_env(home), **s3_server.env(), "PATH": f"{bindir}:{os.environ['PATH']}", "HOME": str(tmp_path),
           "CONF": str(tmp_path / "conf"), "HEAD": "127.0.0.2", "NODE_IP": "127.0.0.2", "RAY_PORT": str(ray_port),
           "NSML_PORT": str(nsml_port), "RAY_TMP": str(short), "NODE_HOME": str(tmp_path / "nodes"),
           "BLOBS": s3_server.url(), "NSML_DB_URL": postgres.new_database(), "RAY_USAGE_STATS_ENABLED": "0",
           # Two GPUs declared, and small: three raylets share this machine.
           "NODE_RESOURCES": "--num-cpus 1 --num-gpus 2 --memory 1073741824 --object-store-memory 100000000"}
    env.pop("USER", None)
    script = "set -euo pipefail\n" + "\n".join(section_blocks())
    group = None
    try:
        proc = subprocess.Popen(["bash", "-c", script], env=env, cwd=tmp_path, start_new_session=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        group = proc.pid
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-4000:]
        server_log = Path(env["CONF"]) / "server.log"
        wait_for(lambda: "Connect with" in server_log.read_text(), "the server to start", timeout=120, every=0.5)
        cli = Cli({**clean_env(home), "PATH": env["PATH"]}, tmp_path / "code")
        (tmp_path / "code").mkdir()
        write_project(cli.cwd, "import os\nprint('devices', os.environ['CUDA_VISIBLE_DEVICES'])\n")
        push_dataset(cli, "clusterdata")
        names = [start_session(cli, "-d", "clusterdata", "-g", "1", "--cpus", "1", "--memory", "256M") for _ in range(2)]
        ps = cli("ps", "-a", "-j").stdout
        for name in names:
            s = wait_for(lambda: (lambda x: x if x["status"] in ("exited", "failed") else None)(_session(cli, name)),
                         f"{name} to end", timeout=180, every=0.5)
            assert s["status"] == "exited" and s["node"] in ("b", "c"), (s["status"], s["error"], ps)
            assert "devices" in cli("logs", name).stdout
        token = subprocess.run([sys.executable, "-c", "import ray; ray.init(address='auto')"], env={
            **env, "RAY_ADDRESS": f"127.0.0.2:{ray_port}", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64,
            "RAY_gcs_server_port_wait_time_s": "1"}, capture_output=True, text=True, timeout=120)
        assert token.returncode != 0, "a driver with the wrong token joined the cluster"
        assert "auth" in (token.stdout + token.stderr).lower(), token.stderr[-2000:]  # refused for its token
    finally:
        if group:
            try:
                os.killpg(group, signal.SIGTERM)
            except ProcessLookupError:
                pass
        _stop_ray(short)
        kill_leftover_supervisors(home)


def _session(cli: Cli, name: str) -> dict:
    import json

    return next(s for s in json.loads(cli("ps", "-a", "-j").stdout) if s["name"] == name)


def _stop_ray(short: Path) -> None:
    """What `ray start` left running (never `ray stop`: it would end every cluster on the machine)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = _leftovers(short)
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)
    assert not _leftovers(short), "Ray processes survived the test"
