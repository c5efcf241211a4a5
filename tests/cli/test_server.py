"""The server process: the embedded one the CLI starts, `nsml server`, tokens, login and logout."""

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import Cli, clean_env, write_dataset, check_failed




def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


def server_pids(home: Path) -> list[int]:
    """Server processes serving home (the CLI's embedded ones or `nsml server --home`)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(home).encode() in argv and (b"nsml.server.main" in argv or b"server" in argv) and alive(int(proc.name)):
            pids.append(int(proc.name))
    return sorted(pids)


def listening_hosts(port: int) -> set[str]:
    """The local addresses with a listening TCP socket on port, from /proc/net."""
    hosts = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":
                raw = bytes.fromhex(addr)
                if len(raw) == 4:
                    hosts.add(socket.inet_ntoa(raw[::-1]))
                else:
                    hosts.add(socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))))
    return hosts


def stop_servers(home: Path) -> None:
    """Teardown: end the server processes this test started for home, by pid."""
    for pid in server_pids(home):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while server_pids(home) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in server_pids(home):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def fresh(tmp_path):
    """A CLI whose NSML_HOME does not exist yet: no server, no token, no config."""
    home = tmp_path / "home"
    yield Cli(clean_env(home), tmp_path)
    stop_servers(home)


def home_of(cli: Cli) -> Path:
    return Path(cli.env["NSML_HOME"])


# -- the embedded server -----------------------------------------------------------------------
def test_a_command_starts_the_embedded_server_and_later_ones_reuse_it(fresh, tmp_path):
    home = home_of(fresh)
    assert fresh("dataset", "ls", "-j").stdout.strip() == "[]"
    info = json.loads((home / "server.json").read_text())
    pid, url = info["pid"], info["url"]
    assert url.startswith("http://127.0.0.1:") and alive(pid)
    port = int(url.rsplit(":", 1)[1])
    assert listening_hosts(port) == {"127.0.0.1"}  # loopback only, never the network
    token_file = home / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700

    fresh("dataset", "push", "toy", write_dataset(tmp_path / "ds"))
    assert json.loads((home / "server.json").read_text())["pid"] == pid
    assert server_pids(home) == [pid]

    out = fresh("server", "stop").stdout.strip()
    assert out == f"Stopped the NSML server at {url}"
    assert not alive(pid)
    assert not (home / "server.json").exists()
    assert fresh("server", "stop").stdout.strip() == "No background NSML server is running"

    # the next command starts a new one: same port, same token, same data
    names = [d["name"] for d in json.loads(fresh("dataset", "ls", "-j").stdout)]
    assert names == ["toy"]
    again = json.loads((home / "server.json").read_text())
    assert again["pid"] != pid and again["url"] == url
    assert token_file.read_text() == (home / "token").read_text()


def test_commands_started_together_share_one_embedded_server(fresh):
    with ThreadPoolExecutor(3) as pool:
        procs = list(pool.map(lambda _: fresh("dataset", "ls", "-j", check=False), range(3)))
    assert [p.returncode for p in procs] == [0, 0, 0], [p.stderr for p in procs]
    home = home_of(fresh)
    assert server_pids(home) == [json.loads((home / "server.json").read_text())["pid"]]


def test_version_and_help_start_no_server(fresh):
    out = fresh("--version").stdout
    assert out.startswith("nsml ") and "Preconfigured connection: local (starts on first use)" in out
    top = fresh("--help").stdout
    for command in ["dataset", "run", "logs", "server", "login", "logout"]:
        assert f" {command} " in top, top
    assert "NSML" in top
    assert "push" in fresh("dataset", "--help").stdout
    server_help = fresh("server", "--help").stdout
    assert "--port" in server_help and "stop" in server_help
    assert not (home_of(fresh) / "server.json").exists()
    assert server_pids(home_of(fresh)) == []


# -- tokens ------------------------------------------------------------------------------------
def test_the_api_needs_the_right_bearer_token(server, cli):
    assert httpx.get(server.url + "/api/health").json()["ok"] is True  # the only open door
    for path in ["/api/whoami", "/api/datasets", "/api/sessions", "/api/resources"]:
        for headers in [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {server.token}"},
                        {"Authorization": server.token}]:
            resp = httpx.get(server.url + path, headers=headers)
            assert resp.status_code == 401, (path, headers, resp.text)
            assert "nsml login" in resp.json()["detail"]
    assert server.api.get("/api/whoami").json()["user"] == "alice"

    env = {**cli.env, "NSML_SERVER_URL": server.url, "NSML_TOKEN": "wrong-token"}
    line = check_failed(Cli(env, cli.cwd)("dataset", "ls", check=False))
    assert line == "nsml: The token is not valid for this server: run `nsml login URL` again."
    env.pop("NSML_TOKEN")
    line = check_failed(Cli(env, cli.cwd)("dataset", "ls", check=False))
    assert line == "nsml: NSML_SERVER_URL is set but NSML_TOKEN is not; set both, or neither."


# -- `nsml server` in the foreground -----------------------------------------------------------
def test_server_on_a_busy_port_says_so_in_one_line(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        proc = Cli(clean_env(tmp_path / "home"), tmp_path)("server", "--port", port, "--home", tmp_path / "team", check=False, timeout=60)
    finally:
        busy.close()
    assert check_failed(proc) == (
        f"nsml: Port {port} on 127.0.0.1 is already in use (another NSML server or another program); "
        f"choose a free one with --port."
    )
    assert proc.stdout == ""  # no banner for a server that never started


def start_foreground(home: Path, env: dict, *extra) -> tuple[subprocess.Popen, str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "nsml", "server", "--port", "0", "--home", str(home), *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"nsml server ended: {lines} {proc.stderr.read()}")
        lines.append(line.strip())
        if line.startswith("Connect with:"):
            _, _, url, _, token = line.split()[2:]
            return proc, url, token
    raise AssertionError(f"nsml server did not announce itself: {lines}")


def test_foreground_server_serves_a_team_and_stops_cleanly(tmp_path):
    team = tmp_path / "team"
    proc, url, token = start_foreground(team, clean_env(tmp_path / "unused"))
    try:
        assert url.startswith("http://localhost:") and url != "http://localhost:0"
        assert token == (team / "token").read_text().strip()
        assert stat.S_IMODE((team / "token").stat().st_mode) == 0o600
        info = json.loads((team / "server.json").read_text())
        assert info["pid"] == proc.pid  # commands using this home find it instead of starting another

        second = Cli(clean_env(tmp_path / "unused"), tmp_path)("server", "--port", "0", "--home", team, check=False)
        assert check_failed(second).startswith(f"nsml: An NSML server for {team} already runs at {info['url']}")

        client = Cli(clean_env(tmp_path / "client"), tmp_path)
        assert client("login", url, "--token", token).stdout.strip() == f"Welcome to NSML, alice! Commands now use {url}"
        client("dataset", "push", "teamdata", write_dataset(tmp_path / "ds"))
        same_home = Cli(clean_env(team), tmp_path)
        assert [d["name"] for d in json.loads(same_home("dataset", "ls", "-j").stdout)] == ["teamdata"]
        assert server_pids(team) == [proc.pid]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
    assert code == 0
    assert not (team / "server.json").exists()


# -- login / logout ----------------------------------------------------------------------------
def test_login_stores_the_server_and_logout_forgets_it(server, tmp_path):
    client_home = tmp_path / "client"
    client = Cli(clean_env(client_home), tmp_path)
    config = client_home / "config.json"
    client_home.mkdir()
    config.write_text("{not json")
    os.chmod(config, 0o644)
    assert check_failed(client("dataset", "ls", check=False)) == (
        f"nsml: {config} is damaged; run `nsml login URL` again (or `nsml logout`)."
    )

    line = check_failed(client("login", server.url, "--token", "not-the-token", check=False))
    assert line == "nsml: The token is not valid for this server: run `nsml login URL` again."
    assert config.read_text() == "{not json"  # a failed login changes nothing

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    assert check_failed(client("login", dead_url, "--token", "t", check=False)).startswith(f"nsml: Cannot reach {dead_url}: ")

    out = client("login", server.url + "/", "--token", server.token).stdout.strip()
    assert out == f"Welcome to NSML, alice! Commands now use {server.url}"
    assert json.loads(config.read_text()) == {"url": server.url, "token": server.token}
    assert stat.S_IMODE(config.stat().st_mode) == 0o600  # even though the old file was 0644

    client("dataset", "push", "remote", write_dataset(tmp_path / "ds"))
    assert [d["name"] for d in server.api.get("/api/datasets").json()] == ["remote"]
    assert f"Preconfigured connection: {server.url}" in client("--version").stdout
    assert not (client_home / "server.json").exists() and server_pids(client_home) == []

    assert client("logout").stdout.strip() == "Logged out; commands use the local NSML server"
    assert not config.exists()
    assert "Preconfigured connection: local" in client("--version").stdout


def test_restart_sweeps_blobs_left_by_a_crashed_upload_and_keeps_the_rest(server, cli, tmp_path):
    cli("dataset", "push", "kept", write_dataset(tmp_path / "ds"))
    blobs = server.home / "blobs"
    stored = {p for p in blobs.glob("??/*")}
    orphan = blobs / "ff" / ("0" * 62)  # what a server killed between storing and registering leaves
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"half an upload")
    server.stop()
    server.start()
    deadline = time.monotonic() + 30
    while orphan.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not orphan.exists()
    assert {p for p in blobs.glob("??/*")} == stored
    cli("dataset", "pull", "kept", tmp_path / "back")
    assert (tmp_path / "back" / "train" / "train_data").read_text() == "1,2\n3,4\n"
