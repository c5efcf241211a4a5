"""The session's end of its channel to the server: `nsml exec` and `nsml sh` arrive here.

The supervisor opens the channel; the server never connects to a session's files or sockets, so
this works wherever the session runs (another machine, a Ray node) as long as it can reach the
server. A daemon thread long-polls ``GET /api/sessions/S/channel/next`` with the supervisor's
credentials and gets one request at a time, ``{"id", "kind", "payload"}``; each is handled in a
worker thread (at most ``MAX_WORKERS`` at once) and its result, a JSON object, is posted to
``POST /api/sessions/S/channel/ID/result``. ``HANDLERS`` maps a request kind to the function that
answers it, so infer can join as one more kind (issue 11). A result with ``"failure"`` (one line)
means the request could not be carried out (no scope registered, the process ended, a time
limit); the server turns it into an error for the caller.

- ``sh``: the supervisor runs ``/bin/sh -c COMMAND`` in the session's working directory (its
  /app), with the session's environment and the same dataset view and hidden blob store as the
  user process, within a time limit, keeping ``MAX_OUTPUT`` bytes of each stream.
- ``exec``: forwarded to the user process, which listens on a Unix socket once the script
  registered a scope (nsml.client.repl writes ``SPOOL/repl.json`` then).
"""

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

POLL_WAIT = 20  # seconds the server holds one poll open when nothing is asked
MAX_WORKERS = 4
MAX_OUTPUT = 1 << 20  # bytes of each output stream sent back
SH_TIMEOUT, SH_TIMEOUT_MAX = 60.0, 600.0
EXEC_TIMEOUT, EXEC_TIMEOUT_MAX = 30.0, 600.0
NO_SCOPE = ("the session has not registered a scope: call nsml.report(scope=locals()) or "
            "nsml.paused(scope=locals())")
ENDED = "the session's process has ended"


class Channel:
    """Takes requests from the server and answers them, until close()."""

    def __init__(self, spec: dict, shipper, preexec=None):
        import httpx

        self.spec = spec
        self.shipper = shipper  # for the server's current address (it may move after a restart)
        self.path = f"/api/sessions/{spec['session']}/channel"
        self.client = httpx.Client(timeout=httpx.Timeout(30, read=POLL_WAIT + 30),
                                   headers={"Authorization": f"Bearer {spec['token']}"})
        self.preexec = preexec
        self.slots = threading.BoundedSemaphore(MAX_WORKERS)
        self.closed = threading.Event()
        self.processes: set[subprocess.Popen] = set()  # running `sh` commands
        self.lock = threading.Lock()

    def start(self) -> None:
        threading.Thread(target=self._poll_loop, name="nsml-channel", daemon=True).start()

    def close(self) -> None:
        """The user process ended: take no more requests, and end running shell commands (they
        must not change the working directory while its files are being shipped)."""
        self.closed.set()
        with self.lock:
            running = list(self.processes)
        for proc in running:
            _kill_group(proc.pid)

    def _poll_loop(self) -> None:
        import httpx

        delay = 0.5
        while not self.closed.is_set():
            self.slots.acquire()  # a request is taken only when a worker is free to run it
            try:
                resp = self.client.get(self.shipper.url + self.path + "/next", params={"wait": POLL_WAIT})
            except httpx.TransportError:
                resp = None
                self.shipper.refresh_url()
            if resp is None or resp.status_code != 200:
                self.slots.release()
                if resp is not None and resp.status_code == 204:  # nothing asked: poll again
                    delay = 0.5
                    continue
                # Server away, restarting, or refusing (an older server, the session removed):
                # try again later; the main loop notices a removed session by itself.
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay = 0.5
            try:
                request = resp.json()
            except ValueError:
                self.slots.release()
                continue
            threading.Thread(target=self._handle, args=(request,), name="nsml-channel-request", daemon=True).start()

    def _handle(self, request: dict) -> None:
        try:
            kind = request.get("kind")
            handler = HANDLERS.get(kind)
            if self.closed.is_set():
                result = {"failure": ENDED}
            elif handler is None:
                result = {"failure": f"this session's supervisor does not handle {kind!r} requests"}
            else:
                result = handler(self, request.get("payload") or {})
        except Exception as exc:  # a bug here must still answer, or the caller waits in vain
            result = {"failure": f"the supervisor failed: {type(exc).__name__}: {exc}"}
        finally:
            self.slots.release()
        self._post_result(str(request.get("id", "")), result)

    def _post_result(self, request_id: str, result: dict) -> None:
        import httpx

        from urllib.parse import quote

        for attempt in range(4):  # the caller waits only so long: a few quick tries
            try:
                resp = self.client.post(f"{self.shipper.url}{self.path}/{quote(request_id, safe='')}/result", json=result)
                if resp.status_code < 500:
                    return
            except httpx.TransportError:
                self.shipper.refresh_url()
            time.sleep(0.5 * (attempt + 1))

    # -- handlers --------------------------------------------------------------------------
    def run_shell(self, payload: dict) -> dict:
        """`nsml sh`: one shell command in the session's working directory.

        Seam for the sandbox issue: this runs as the session's OS user with the user process's
        read-only dataset view and hidden blob store (the same preexec), but not inside a
        sandbox of its own; when sessions get one, this must enter it instead.
        """
        command = str(payload.get("command", ""))
        timeout = _clamp(payload.get("timeout"), SH_TIMEOUT, SH_TIMEOUT_MAX)
        argv, cwd = ["/bin/sh", "-c", command], self.spec["workdir"]
        if self.spec.get("sandbox"):  # the session's sandbox: its uid, its view, no network
            from nsml.scheduler import bwrap, userproc

            argv = bwrap.argv(userproc.confinement(self.spec, network=False), argv)
        try:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=self.spec["env"] if not self.spec.get("sandbox") else {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True, preexec_fn=None if self.spec.get("sandbox") else self.preexec,
            )
        except OSError as exc:
            return {"failure": f"the command could not start: {exc}"}
        with self.lock:
            self.processes.add(proc)
        out, err = _Capped(proc.stdout), _Capped(proc.stderr)
        timed_out = False
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc.pid)
            proc.wait()
        finally:
            with self.lock:
                self.processes.discard(proc)
        _kill_group(proc.pid)  # what it left running in the background holds the pipes open
        stdout, stderr = out.text(), err.text()
        if timed_out:
            stderr += f"[nsml] the command was ended after {timeout:g} s (nsml sh --timeout sets the limit)\n"
        elif self.closed.is_set():
            stderr += "[nsml] the command was ended: the session ended\n"
        return {"ok": True, "stdout": stdout, "stderr": stderr, "exit_code": proc.returncode, "timed_out": timed_out}

    def forward_exec(self, payload: dict) -> dict:
        """`nsml exec`: the code goes to the user process's listener (nsml.client.repl)."""
        from nsml.core.wire import ask

        timeout = _clamp(payload.get("timeout"), EXEC_TIMEOUT, EXEC_TIMEOUT_MAX)
        try:
            info = json.loads((Path(self.spec["spool"]) / "repl.json").read_text())
        except (OSError, ValueError):
            return {"failure": NO_SCOPE}
        path = self._exec_socket(info)
        if path is None:
            return {"failure": "the session's nsml exec listener is not where the platform expects it (its repl.json was changed)"}
        try:
            return ask(path, {"code": str(payload.get("code", ""))}, timeout=timeout, limit=8 * MAX_OUTPUT)
        except TimeoutError:
            return {"failure": f"the code did not finish within {timeout:g} s (it goes on running in the session; "
                               "nsml exec --timeout sets the limit)"}
        except OSError:
            return {"failure": ENDED + " or stopped listening for nsml exec"}
        except (ValueError, KeyError, TypeError) as exc:
            return {"failure": f"the session's answer could not be read: {exc}"}


    def _exec_socket(self, info) -> str | None:
        """The socket named by repl.json, if it is one the library can have made: repl.json is
        written by the user's process, which must not point the supervisor at other sockets."""
        import stat
        import tempfile

        path = info.get("socket") if isinstance(info, dict) else None
        if not isinstance(path, str):
            return None
        box = self.spec.get("sandbox")
        if box:  # named as the session sees it: /run/nsml/repl.sock
            from nsml.scheduler import userproc

            path = userproc.host_path(self.spec, path)
            if path is None or os.path.basename(path) != "repl.sock":
                return None
            try:
                found = os.lstat(path)
            except OSError:
                return None
            owner = box.get("uid") if box.get("uid") is not None else os.getuid()
            return path if stat.S_ISSOCK(found.st_mode) and found.st_uid == owner else None
        folder, name = os.path.split(path)
        where = os.path.realpath(folder)
        expected = where == os.path.realpath(self.spec["spool"]) and name == "repl.sock"
        temporary = os.path.dirname(where) == os.path.realpath(tempfile.gettempdir()) \
            and os.path.basename(where).startswith("nsml-exec-") and name == "s"
        try:
            found = os.lstat(path)
        except OSError:
            return None
        if not (expected or temporary) or not stat.S_ISSOCK(found.st_mode) or found.st_uid != os.getuid():
            return None
        return path


HANDLERS = {"sh": Channel.run_shell, "exec": Channel.forward_exec}


class _Capped:
    """Reads a pipe to its end in a thread, keeping the first MAX_OUTPUT bytes."""

    def __init__(self, pipe):
        self.pipe, self.kept, self.dropped = pipe, bytearray(), 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with self.pipe:
            while chunk := self.pipe.read1(1 << 16):
                room = MAX_OUTPUT - len(self.kept)
                self.kept += chunk[:max(room, 0)]
                self.dropped += max(0, len(chunk) - max(room, 0))

    def text(self) -> str:
        self.thread.join(5)
        text = self.kept.decode(errors="replace")
        if self.dropped:
            text += f"\n[nsml] output truncated: {self.dropped} more bytes not shown\n"
        return text


def _clamp(value, default: float, most: float) -> float:
    try:
        value = float(value) if value is not None else default
    except (TypeError, ValueError):
        value = default
    return min(max(value, 0.1), most)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
