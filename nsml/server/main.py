"""Running a server process: `nsml server` in the foreground, or the embedded one in the background."""

import errno
import json
import os
import socket
import sys
from pathlib import Path

from nsml.core.errors import InvalidInput

from .settings import Settings


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind first, so a busy port is one clear line instead of a traceback from the server."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
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


def serve(settings: Settings, server_file: Path | None = None) -> None:
    import uvicorn
    from dataclasses import replace

    from .app import create_app

    sock = bind_socket(settings.host, settings.port)
    settings = replace(settings, port=sock.getsockname()[1])
    if server_file:
        tmp = server_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"url": settings.url, "pid": os.getpid(), "home": str(settings.home)}))
        tmp.replace(server_file)
    config = uvicorn.Config(create_app(settings), log_level="warning", access_log=False, timeout_graceful_shutdown=3)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        if server_file:
            try:
                if json.loads(server_file.read_text()).get("pid") == os.getpid():
                    server_file.unlink()
            except (OSError, ValueError):
                pass


def main(argv: list[str] | None = None) -> None:
    """`python -m nsml.server.main --home H --port P [--host] [--db] [--embedded]` (used by the CLI)."""
    import argparse

    p = argparse.ArgumentParser(prog="nsml-server")
    p.add_argument("--home", type=Path, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--db", default=None)
    p.add_argument("--cpus", type=float, default=None)
    p.add_argument("--memory", default=None)
    p.add_argument("--gpus", type=int, default=None)
    p.add_argument("--embedded", action="store_true", help="write HOME/server.json for the CLI to find")
    a = p.parse_args(argv)
    from nsml.core.resources import parse_size

    settings = Settings(home=a.home, db_url=a.db, host=a.host, port=a.port, cpus=a.cpus,
                        memory=parse_size(a.memory) if a.memory else None, gpus=a.gpus)
    try:
        serve(settings, server_file=a.home / "server.json" if a.embedded else None)
    except InvalidInput as exc:
        print(f"nsml: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
