"""Which server the CLI talks to, and talking to it.

Order: NSML_SERVER_URL + NSML_TOKEN in the environment; else the server stored by `nsml login`
(NSML_HOME/config.json); else the embedded server under NSML_HOME, started in the background on
first use and reused by later commands.
"""

import fcntl
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# httpcore probes for trio when a client is made (~0.2 s if it is installed); the CLI only uses
# asyncio-free sync calls, so tell it trio is absent.
sys.modules.setdefault("trio", None)

import httpx  # noqa: E402

from nsml.core.errors import NsmlError

STARTUP_SECONDS = 30


class CliError(NsmlError):
    """One line for the user; the CLI exits with status 1."""


def home() -> Path:
    return Path(os.environ.get("NSML_HOME") or Path.home() / ".nsml").expanduser()


@dataclass
class Server:
    url: str
    token: str
    embedded: bool = False


def config_path() -> Path:
    return home() / "config.json"


def resolve(start: bool = True) -> Server:
    if os.environ.get("NSML_SERVER_URL"):
        if not os.environ.get("NSML_TOKEN"):
            raise CliError("NSML_SERVER_URL is set but NSML_TOKEN is not; set both, or neither.")
        return Server(os.environ["NSML_SERVER_URL"].rstrip("/"), os.environ["NSML_TOKEN"])
    cfg = config_path()
    if cfg.exists():
        try:
            data = json.loads(cfg.read_text())
            return Server(data["url"], data["token"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CliError(f"{cfg} is damaged; run `nsml login URL` again (or `nsml logout`).") from exc
    return ensure_embedded(start)


def _healthy(url: str) -> bool:
    try:
        with http_client(url, timeout=2) as client:
            return client.get(url + "/api/health").json().get("service") == "nsml"
    except (httpx.HTTPError, ValueError):
        return False


def running_embedded(h: Path | None = None) -> dict | None:
    """The server that serves home h (NSML_HOME by default), if it answers."""
    info_path = (h or home()) / "server.json"
    try:
        info = json.loads(info_path.read_text())
        url = info["url"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if _healthy(url) else None


def ensure_embedded(start: bool = True) -> Server:
    h = home()
    h.mkdir(parents=True, exist_ok=True, mode=0o700)  # datasets and the token: this user's only
    info = running_embedded()
    if info is None and start:
        with open(h / "server.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two commands at once start one server
            info = running_embedded() or _start_embedded(h)
    if info is None:
        raise CliError("No NSML server is running.")
    return Server(info["url"], (h / "token").read_text().strip(), embedded=True)


def _start_embedded(h: Path) -> dict:
    port_file = h / "port"
    port = port_file.read_text().strip() if port_file.exists() else "0"
    cmd = [sys.executable, "-m", "nsml.server.main", "--home", str(h), "--embedded", "--port", port]
    with open(h / "server.log", "ab") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if port != "0":  # the remembered port is taken now: try any free one
                port_file.unlink(missing_ok=True)
                return _start_embedded(h)
            raise CliError(f"The local NSML server did not start; see {h / 'server.log'}:\n" + _tail(h / "server.log"))
        info = running_embedded()
        if info and info.get("pid") == proc.pid:
            port_file.write_text(info["url"].rsplit(":", 1)[1])
            return info
        time.sleep(0.05)
    raise CliError(f"The local NSML server did not answer within {STARTUP_SECONDS}s; see {h / 'server.log'}.")


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def http_client(url: str, **kwargs) -> httpx.Client:
    """An httpx client; for plain http:// it skips building a TLS context (~50 ms per client)."""
    if url.startswith("http://"):
        kwargs.setdefault("verify", False)
    return httpx.Client(**kwargs)


class Api:
    """A thin httpx client that turns the server's errors into CliError lines."""

    def __init__(self, server: Server):
        self.server = server
        self.http = http_client(server.url, base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}, timeout=httpx.Timeout(60, read=600))

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            resp = self.http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise CliError(f"Cannot reach the NSML server at {self.server.url} ({exc}).") from exc
        except httpx.TransportError as exc:
            raise CliError(f"The connection to {self.server.url} failed: {exc}") from exc
        check(resp)
        return resp

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw).json()

    def post(self, path: str, **kw):
        return self.request("POST", path, **kw).json()

    def delete(self, path: str, **kw):
        return self.request("DELETE", path, **kw).json()

    def patch(self, path: str, **kw):
        return self.request("PATCH", path, **kw).json()

    def stream(self, path: str, **kw):
        return self.http.stream("GET", path, **kw)


def check(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        resp.read()
        detail = resp.json().get("detail", resp.text)
    except (ValueError, AttributeError):
        detail = resp.text
    if isinstance(detail, list):  # FastAPI validation errors
        detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])[1:]))}: {d.get('msg')}" for d in detail)
    raise CliError(str(detail) or f"HTTP {resp.status_code}")


def api(start: bool = True) -> Api:
    return Api(resolve(start))


def session_path(name: str) -> str:
    from nsml.core.naming import parse_session_name

    owner, dataset, number = parse_session_name(name)
    return f"/api/sessions/{owner}/{dataset}/{number}"
