"""The user process's one way to the platform: a Unix socket in its spool, served by the supervisor.

A sandboxed session holds no token and reaches no server (docs/security.md). What the library
still needs from the platform, it asks its supervisor here, one JSON line per request
(nsml.core.wire):

- ``{"op": "load", "session": S, "checkpoint": C}``: a checkpoint of S (its own session, or
  another of its owner's: the server decides, on the supervisor's session-scoped credentials),
  extracted into the spool; the answer is ``{"dir": "loads/ID"}``, a path relative to the spool,
  or ``{"error": TEXT, "status": HTTP_STATUS}``.

The socket is made by the supervisor in the run directory's spool (a relative path: the home
can be deeper than a socket path may be long) and left connectable by the session's uid.
"""

import os
import secrets
import shutil
import threading
from pathlib import Path
from urllib.parse import quote

from nsml.core import spool as codec
from nsml.core import wire

REQUEST_LIMIT = 64 << 10


class Gateway:
    def __init__(self, spec: dict, shipper=None):
        self.spec = spec
        self.shipper = shipper  # set before start()
        self.spool = Path(spec["spool"])
        box = spec.get("sandbox") or {}
        self.uid = box.get("uid")
        self.listener = None

    def bind(self) -> None:
        """Make the socket; called before the user process starts, so nothing of the session's
        is in the spool yet to race with (no chmod by path afterwards: it could be a link by
        then). The session's uid connects to it; nobody else sees this spool."""
        import socket

        path = os.path.join("spool", codec.SOCKET)  # relative to the run directory, our cwd
        old = os.umask(0o111)  # srw-rw-rw-
        try:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(path)
            listener.listen(16)
            self.listener = listener
        except OSError as exc:
            print(f"nsml supervisor: no gateway socket: {exc}", flush=True)
        finally:
            os.umask(old)

    def start(self) -> None:
        if self.listener is not None:
            threading.Thread(target=self._serve, name="nsml-gateway", daemon=True).start()

    def close(self) -> None:
        if self.listener is not None:
            try:
                self.listener.close()
            except OSError:
                pass

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn) -> None:
        import json

        with conn:
            try:
                conn.settimeout(600)
                line = wire.read_line(conn, REQUEST_LIMIT)
                request = json.loads(line) if line else None
                answer = self.handle(request) if isinstance(request, dict) else {"error": "not a JSON request"}
            except (OSError, ValueError) as exc:
                answer = {"error": f"bad request: {exc}"}
            try:
                conn.sendall(wire.encode_line(answer))
            except OSError:
                pass

    def handle(self, request: dict) -> dict:
        if request.get("op") == "load":
            return self.load(str(request.get("session", "")), str(request.get("checkpoint", "")))
        return {"error": f"unknown request {request.get('op')!r}"}

    def load(self, session: str, checkpoint: str) -> dict:
        parts = session.split("/")
        if len(parts) != 3 or not all(parts) or not checkpoint or "/" in checkpoint \
                or any(p in (".", "..") for p in (*parts, checkpoint)):  # no path games in the URL
            return {"error": f"not a session and checkpoint: {session!r} {checkpoint!r}", "status": 400}
        path = "/".join(quote(p, safe="") for p in parts)
        url = f"{self.shipper.url}/api/sessions/{path}/checkpoints/{quote(checkpoint, safe='')}/archive"
        loads = self.spool / "loads"
        loads.mkdir(exist_ok=True)
        target = loads / secrets.token_hex(8)
        target.mkdir()
        try:
            with self.shipper.client.stream("GET", url) as resp:
                if resp.status_code != 200:
                    resp.read()
                    return {"error": _detail(resp), "status": resp.status_code}
                from nsml.store.archive import extract_to

                extract_to(_Reader(resp.iter_bytes()), target)
        except Exception as exc:  # the server away, a broken archive: the library raises it
            shutil.rmtree(target, ignore_errors=True)
            return {"error": f"the checkpoint could not be fetched: {exc}", "status": 502}
        if self.uid is not None:  # the session may read it, and remove it when done
            for folder, dirs, files in os.walk(target):
                os.chown(folder, self.uid, self.uid)
                for name in files:
                    os.chown(os.path.join(folder, name), self.uid, self.uid)
        return {"dir": f"loads/{target.name}"}


def _detail(resp) -> str:
    try:
        detail = resp.json().get("detail")
    except ValueError:
        detail = None
    return detail if isinstance(detail, str) else f"the server answered {resp.status_code}"


class _Reader:
    """A file-like view of an iterator of byte chunks, for tarfile's stream mode."""

    def __init__(self, chunks):
        self.chunks = iter(chunks)
        self.buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) < size:
            try:
                self.buffer += next(self.chunks)
            except StopIteration:
                break
        if size < 0:
            data, self.buffer = self.buffer, b""
        else:
            data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data
