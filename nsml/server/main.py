"""Running a server process: `nsml server` in the foreground, or the embedded one in the background."""

import errno
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from nsml.core.errors import InvalidInput

from .settings import Settings


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind first, so a busy port is one clear line instead of a traceback from the server."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets created with it, and
    # without TCP_NODELAY every small response waits ~40 ms (Nagle + delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise InvalidInput(
                f"Port {port} on {host} is already in use (another NSML server or another program); "
                f"choose a free one with --port."
            ) from exc
        raise InvalidInput(f"Cannot listen on {host}:{port}: {exc.strerror}.") from exc
    sock.listen(2048)
    return sock


SWITCH_INTERVAL_S = 0.0005


def serve(settings: Settings, server_file: Path | None = None, announce: Callable[[Settings], None] | None = None) -> None:
    """Bind, then (only once the port is ours) write server_file and call announce, then serve."""
    import uvicorn
    from dataclasses import replace

    from .app import create_app

    from .isolation import choose

    if settings.inventory:  # a malformed nodes.yaml: one line naming the problem, before anything starts
        from nsml.scheduler.inventory import load_declared

        load_declared(settings.inventory)
    if settings.policy:  # so is a malformed policy file
        from nsml.scheduler.policy_file import load_policy

        load_policy(settings.policy)
    if settings.executor not in ("", "local"):  # an unreachable cluster: one line, before anything starts
        if settings.inventory:
            raise InvalidInput("--inventory declares nodes for the local executor; a Ray cluster's nodes are its own (drop one of them).")
        from nsml.scheduler.ray_executor import connect

        connect(settings.executor)
    sock = bind_socket(settings.host, settings.port)  # a busy port first: one line, nothing else
    try:
        mode, line = choose(settings.sandbox, team=server_file is None or announce is not None)
    except InvalidInput:
        sock.close()
        raise
    print(line, file=sys.stderr if mode.name == "none" else sys.stdout, flush=True)
    settings = replace(settings, port=sock.getsockname()[1], isolation=mode)
    if server_file:
        server_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = server_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"url": local_url(settings), "pid": os.getpid(), "home": str(settings.home)}))
        tmp.replace(server_file)
    if announce:
        announce(settings)
    # The journal ingest thread makes a dozen database calls a post, each releasing the
    # interpreter lock and waiting to take it back; with the default 5 ms switch interval the
    # event loop and the worker threads held it for most of that wait (bench/load.py: 16 ms a
    # small post under load). A shorter interval hands it back sooner.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    config = uvicorn.Config(create_app(settings), log_level="warning", access_log=False, timeout_graceful_shutdown=3)
    server = uvicorn.Server(config)
    # uvicorn shuts down on SIGTERM, then raises the signal again for the previous handler; the
    # default one would end the process on the spot, before the finally below removes server_file.
    signal.signal(signal.SIGTERM, _exit_quietly)
    try:
        server.run(sockets=[sock])
    finally:
        if server_file:
            try:
                if json.loads(server_file.read_text()).get("pid") == os.getpid():
                    server_file.unlink()
            except (OSError, ValueError):
                pass


def _exit_quietly(_signum, _frame) -> None:
    raise SystemExit(0)


def local_url(settings: Settings) -> str:
    """The address a command on this machine uses: a wildcard host is reached through loopback."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "") else settings.host
    return f"http://{host}:{settings.port}"


def main(argv: list[str] | None = None) -> None:
    """`python -m nsml.server.main --home H --port P [--host] [--db] [--embedded]` (used by the CLI)."""
    import argparse

    p = argparse.ArgumentParser(prog="nsml-server")
    p.add_argument("--home", type=Path, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--db", default=None)
    p.add_argument("--blobs", default=None, help="s3://BUCKET[/PREFIX] (default: a folder in --home)")
    p.add_argument("--public-url", default=None, help="the address supervisors report to (a proxy before several servers)")
    p.add_argument("--cpus", type=float, default=None)
    p.add_argument("--memory", default=None)
    p.add_argument("--gpus", type=int, default=None)
    p.add_argument("--inventory", type=Path, default=None, help="a declared inventory (nodes.yaml)")
    p.add_argument("--policy", type=Path, default=None, help="the scheduler's policy (policy.yaml; docs/scheduler.md)")
    p.add_argument("--embedded", action="store_true", help="write HOME/server.json for the CLI to find")
    p.add_argument("--sandbox", default="auto", help="auto, bwrap or none (docs/security.md)")
    p.add_argument("--no-session-network", action="store_true", help="training sessions get no network either")
    p.add_argument("--executor", default=os.environ.get("NSML_EXECUTOR", "local"), help="local, ray, ray://HOST:PORT or HOST:PORT (docs/cluster.md)")
    a = p.parse_args(argv)
    from nsml.core.resources import parse_size

    settings = Settings(home=a.home, db_url=a.db, blobs=a.blobs, public_url=a.public_url, host=a.host, port=a.port, cpus=a.cpus,
                        memory=parse_size(a.memory) if a.memory else None, gpus=a.gpus, sandbox=a.sandbox, inventory=a.inventory,
                        **({"policy": a.policy} if a.policy else {}), session_network=not a.no_session_network,
                        executor=a.executor)
    try:
        serve(settings, server_file=a.home / "server.json" if a.embedded else None)
    except InvalidInput as exc:
        print(f"nsml: {exc}", file=sys.stderr)
        sys.exit(1)
    except SystemExit as stop:  # SIGTERM, once everything was shut down and closed
        exit_now(stop.code if isinstance(stop.code, int) else 0)
    exit_now(0)


def exit_now(code: int) -> None:
    """Leave without the interpreter's final garbage collection, which takes seconds for a
    heap this size: stores are closed and threads joined by then, so nothing is lost."""
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
