"""nsml server [stop], nsml login, nsml logout."""

import getpass
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import typer

from . import render
from .connection import CliError, check, config_path, home, running_embedded

app = typer.Typer(help="Run an NSML server in the foreground, or stop the background one.", invoke_without_command=True)


@app.callback()
def server(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 for a team server)."),
    port: int = typer.Option(18553, "--port", help="Port to listen on."),
    home_dir: Path = typer.Option(None, "--home", help="Where the server keeps its data (default: NSML_HOME or ~/.nsml)."),
    db: str = typer.Option(None, "--db", help="Database URL (default: SQLite under --home; e.g. postgresql+psycopg://…)."),
    blobs: str = typer.Option(None, "--blobs", help="Where datasets, code and checkpoints are kept: s3://BUCKET or s3://BUCKET/PREFIX (endpoint and keys from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; docs/cluster.md). Default: a folder in --home."),
    public_url: str = typer.Option(None, "--public-url", help="The address sessions' supervisors report to: with several servers on one database, a proxy in front of them all (docs/cluster.md). Default: this server's."),
    cpus: float = typer.Option(None, "--cpus", help="CPUs sessions may use in total (default: all)."),
    memory: str = typer.Option(None, "--memory", help="Memory sessions may use in total (default: all)."),
    gpus: int = typer.Option(None, "--gpus", help="GPUs sessions may use (default: all found)."),
    inventory: Path = typer.Option(None, "--inventory", help="Schedule onto the nodes declared in this YAML file instead of this machine (docs/scheduler.md); sessions still run here."),
    policy: Path = typer.Option(None, "--policy", help="The scheduler's policy file: fair-share weights, GPU quotas, credits, reservations, preemption (docs/scheduler.md). Default: NSML_POLICY, else fair share with no limits."),
    sandbox: str = typer.Option("auto", "--sandbox", help="Session sandbox: auto (bubblewrap; a team server refuses to start without it), bwrap, or none (sessions run unconfined: only for a machine you alone use)."),
    no_session_network: bool = typer.Option(False, "--no-session-network", help="Training sessions get no network either (submit and infer sessions never have any)."),
    executor: str = typer.Option("local", "--executor", envvar="NSML_EXECUTOR", help="Where sessions run: local (this machine), or a Ray cluster: ray (its head runs here), ray://HOST:PORT (Ray Client) or HOST:PORT (the head's GCS, from a cluster node). docs/cluster.md."),
    usage_analytics: bool = typer.Option(False, "--usage-analytics", help="Record how the dashboard is used (kind of page, action, time; never names or values), in this server's database only, for the admins' Usability page (docs/web.md). Off by default."),
):
    """Run a server in the foreground. Without this, `nsml` commands start a private one in the background."""
    if ctx.invoked_subcommand:
        return
    from nsml.core.resources import parse_size
    from nsml.server.app import read_or_create_token
    from nsml.server.main import local_url, serve
    from nsml.server.settings import Settings

    h = (home_dir or home()).expanduser()
    h.mkdir(parents=True, exist_ok=True)
    other = running_embedded(h)
    if other is not None:
        raise CliError(
            f"An NSML server for {h} already runs at {other['url']} (pid {other['pid']}); "
            f"stop it with `nsml server stop` or choose another --home."
        )
    token = read_or_create_token(h)
    settings = Settings(home=h, db_url=db, blobs=blobs, public_url=public_url, host=host, port=port, token=token, cpus=cpus,
                        memory=parse_size(memory) if memory else None, gpus=gpus, sandbox=sandbox, inventory=inventory,
                        **({"policy": policy} if policy else {}), session_network=not no_session_network, usage_analytics=usage_analytics,
                        executor=executor)

    def announce(bound: Settings) -> None:  # only once the port is ours
        shown = local_url(bound).replace("127.0.0.1", "localhost") if host in ("127.0.0.1", "0.0.0.0") else bound.url
        render.console.print(f"NSML server on {bound.url} (data in {h})")
        render.console.print(f"Connect with: nsml login {shown} --token {token}")
        render.console.print(f"That token is {bound.user or getpass.getuser()}'s, this server's admin: add the others with "
                             f"`nsml user add NAME --password`; they log in with `nsml login {shown} --user NAME`.")

    # server.json lets `nsml` commands using this home talk to this server instead of starting another.
    serve(settings, server_file=h / "server.json", announce=announce)


@app.command("stop")
def stop_server():
    """Stop the background server started by earlier `nsml` commands (sessions keep running)."""
    info = running_embedded()
    if info is None:
        render.console.print("No background NSML server is running")
        return
    try:
        os.kill(info["pid"], signal.SIGTERM)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        raise CliError(f"The NSML server at {info['url']} (pid {info['pid']}) belongs to another user.") from exc
    for _ in range(300):
        if _ended(info["pid"]):
            break
        time.sleep(0.05)
    else:
        raise CliError(f"The NSML server at {info['url']} (pid {info['pid']}) did not stop within 15s.")
    render.console.print(f"Stopped the NSML server at {info['url']}")


def _ended(pid: int) -> bool:
    """Gone, or a zombie: the embedded server's parent (an earlier command) is gone, so it
    waits for init to reap it, which may take a while."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def login(
    url: str = typer.Argument(..., help="Server address, e.g. http://gpu-box:18553", metavar="URL"),
    token: str = typer.Option(None, "--token", help="Token printed by `nsml server` or `nsml user add` (asked for if omitted, on a terminal)."),
    user: str = typer.Option(None, "--user", "-u", help="Log in with this user's password instead (asked on a terminal, else read from stdin's first line); makes a token valid 90 days."),
):
    """Use a remote (team) server from now on, instead of the private background one.

    Log in with your username and password (--user, or asked on a terminal), or with a token
    (--token). Either way the token is kept in NSML_HOME/config.json, readable by you only."""
    url = url.rstrip("/")
    if "://" not in url:
        raise CliError(f"'{url}' is not a server address; write it like http://gpu-box:18553.")
    if token and user:
        raise CliError("Give --user (to log in with a password) or --token, not both.")
    _check_server(url)  # before asking for a token: a typo in the URL is found first
    if not token and not user:
        if not sys.stdin.isatty():
            raise CliError(f"No --token or --user given and no terminal to ask for one; run nsml login {url} --user NAME "
                           f"(the password is read from stdin) or nsml login {url} --token TOKEN (the token `nsml server` printed).")
        user = typer.prompt("Username (Enter to give a token instead)", default="", show_default=False).strip()
        if not user:
            token = typer.prompt("Token", hide_input=True)
    expires = None
    if user:
        from .accounts import read_password

        password = read_password(what=f"{user}'s password")
        resp = _post(url + "/api/login", {"username": user, "password": password, "label": f"login from {socket.gethostname()}"[:64]})
        try:
            new = resp.json()
            user, token, expires = new["user"], new["token"], new["expires"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CliError(f"{url} does not look like an NSML server.") from exc
    else:
        try:
            resp = httpx.get(url + "/api/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        except httpx.HTTPError as exc:
            raise CliError(f"Cannot reach {url}: {exc}") from exc
        check(resp)
        try:
            user = resp.json()["user"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CliError(f"{url} does not look like an NSML server.") from exc
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds the token: owner only
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "token": token}, f)
    os.replace(tmp, path)
    render.console.print(f"Welcome to NSML, {user}! Commands now use {url}")
    if expires:
        from .accounts import until

        render.console.print(f"This login expires {until(expires)}; log in again then (`nsml token ls` lists your tokens).")


def _post(url: str, body: dict) -> httpx.Response:
    try:
        resp = httpx.post(url, json=body, timeout=30)
    except httpx.HTTPError as exc:
        raise CliError(f"Cannot reach {url.rsplit('/api/', 1)[0]}: {exc}") from exc
    check(resp)
    return resp


def _check_server(url: str) -> None:
    """The address answers, and what answers is an NSML server (its /api/health says so)."""
    try:
        resp = httpx.get(url + "/api/health", timeout=10)
    except httpx.HTTPError as exc:
        raise CliError(f"Cannot reach {url}: {exc or type(exc).__name__}; check the address and that `nsml server` runs there.") from exc
    try:
        is_nsml = resp.status_code == 200 and resp.json().get("service") == "nsml"
    except (ValueError, AttributeError):
        is_nsml = False
    if not is_nsml:
        raise CliError(f"{url} answers, but it is not an NSML server (no NSML health answer at {url}/api/health); check the address and port.")


def credit(as_json: bool = typer.Option(False, "-j", "--json", help="Print the answer as JSON.")):
    """Show your GPU credit and your teams' (1 credit = 1 GPU-minute, refilled each period up to a cap)."""
    import time

    from nsml.core.resources import format_duration

    from .connection import api

    data = api().get("/api/credit")
    if as_json:
        render.as_json(data)
        return
    if not data["enabled"]:
        render.console.print(f"User : {data['user']}  credit: off ({data['message'] or 'this server does not limit GPU time'})")
        return
    mine = data["credit"]
    render.console.print(f"User : {data['user']}  credit: {mine:g}" if mine is not None else f"User : {data['user']}  credit: (your teams' below)")
    for b in data["balances"]:
        left = f"{b['credit']:g} of at most {b['cap']:g}, +{b['refill']:g} each {format_duration(data['period'])}"
        busy = f"; {b['committed']:g} promised to running sessions" if b["committed"] else ""
        render.console.print(f"  {b['holder']}: {left}{busy}")
    render.console.print(f"Next refill in {format_duration(max(0.0, data['next_refill'] - time.time()))}")


def usage(days: int = typer.Option(14, "--days", min=1, max=366, help="The last N days (UTC), today included."),
          everyone: bool = typer.Option(False, "--all", help="Everyone's usage (admins only); else yours and your teams'."),
          as_json: bool = typer.Option(False, "-j", "--json", help="Print the answer as JSON.")):
    """GPU-hours by day for you and your teams (running sessions included)."""
    from .connection import api

    data = api().get("/api/usage", params={"days": days, "all": str(everyone).lower()})
    if as_json:
        render.as_json(data)
        return
    if not data["rows"]:
        render.console.print(f"No GPU time used in the last {render.plural(days, 'day')}.")
        return
    shown = data["days"][-7:]  # the table stays readable; the total covers every day asked for
    render.table(["holder", *(d[5:] for d in shown), f"total ({days} d)"],
                 [[r["holder"], *(f"{h:.1f}" for h in r["hours"][-7:]), f"{r['total']:.1f}"] for r in data["rows"]])


def logout():
    """Forget the remote server; commands use the private background server again."""
    config_path().unlink(missing_ok=True)
    render.console.print("Logged out; commands use the local NSML server")
