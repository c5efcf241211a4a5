"""One session on a Ray node: the actor the Ray executor (ray_executor.py) starts for it.

Why an actor per session, not a Ray job: an actor holds the session's CPUs, memory and GPUs as
Ray resources for exactly as long as the session runs, Ray picks its node and its GPUs
(`ray.get_gpu_ids()`, what is recorded and what the sandbox exposes), and it answers calls
(stop, signal, a log note, an infer request) on the node where the session's files are. A job
would give none of that back but a log.

On its node the actor does what the local executor does on the server's machine, with the
local executor's own code (local.LocalExecutor, on a home of the node's: NSML_NODE_HOME, else
~/.nsml-node): it prepares the run directory, the dataset view and the environment, and starts
the same supervisor in the same sandbox. Only the bytes come from elsewhere: the session's
code, its dataset view and the outputs of its earlier attempts are fetched from the server over
HTTP with the session's own scoped token (GET …/files/SHA), which serves nothing else (never a
dataset's hidden test labels), into a cache of the node's keyed by content hash. A second
session on the same data finds the view built and fetches nothing.

The supervisor is told to end with the actor (`die_with_parent`): a node whose raylet dies
takes its sessions with it, and the server, told by Ray that the node is gone, marks them lost.
"""

import hashlib
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

from nsml.core.entities import Dataset, FileEntry, Session

from .local import LocalExecutor

NODE_LABEL = "nsml.io/node"  # `ray start --labels nsml.io/node=NAME`: the node's name in ps and the web
FETCH_TIMEOUT = 300.0


def node_home() -> Path:
    return Path(os.environ.get("NSML_NODE_HOME") or Path.home() / ".nsml-node").expanduser()


class FetchedBlobs:
    """The node's read-through cache of blobs, filled over HTTP with one session's token: what
    local.LocalExecutor needs of a blob store (`root`, `path(sha)`)."""

    def __init__(self, root: Path, server_url: str, session_name: str, token: str):
        self.root = root
        self.tmp = root / "tmp"
        self.url = f"{server_url.rstrip('/')}/api/sessions/{session_name}/files/"
        self.token = token
        self.fetched = self.cached = self.bytes = 0
        self._client = None

    def path(self, sha: str) -> Path:
        local = self.root / sha[:2] / sha[2:]
        if local.exists():
            self.cached += 1
            return local
        self._fetch(sha, local)
        return local

    def _fetch(self, sha: str, local: Path) -> None:
        import httpx

        if self._client is None:
            self._client = httpx.Client(headers={"Authorization": f"Bearer {self.token}"}, timeout=FETCH_TIMEOUT)
        self.tmp.mkdir(parents=True, exist_ok=True)
        part = self.tmp / f"{sha}.{os.getpid()}.{threading.get_ident()}"
        digest = hashlib.sha256()
        with self._client.stream("GET", self.url + sha) as reply:
            if reply.status_code != 200:
                reply.read()
                raise RuntimeError(f"the server refused file {sha[:12]}… to this node ({reply.status_code}: {reply.text[:200]})")
            with open(part, "wb") as out:
                for chunk in reply.iter_bytes(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
                    self.bytes += len(chunk)
        if digest.hexdigest() != sha:
            part.unlink(missing_ok=True)
            raise RuntimeError(f"file {sha[:12]}… arrived damaged (its content hash differs)")
        part.chmod(0o444)  # like the server's blobs: views hard-link them, nobody writes them
        local.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, local)  # atomic: two sessions fetching one blob both end with it whole
        self.fetched += 1

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


class NodeExecutor(LocalExecutor):
    """The local executor on a node several platforms may share: its caches are keyed by content
    (blobs by hash, dataset views by a hash of what they hold), never by one server's numbering,
    and its run directories by the platform's instance and the session's id."""

    def __init__(self, instance: str, *args, refused: tuple[str, ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.instance = instance
        self.refused = refused  # the cluster's addresses (its nodes', the server's), refused inside the sandbox

    def run_dir(self, session: Session) -> Path:
        return self.home / "runs" / f"{self.instance}-{session.id}"

    def confinement(self, *args, **kwargs) -> dict:
        box = super().confinement(*args, **kwargs)
        box["refused"] = list(self.refused)
        return box

    def view_key(self, dataset: Dataset, files: list[FileEntry]) -> str:
        manifest = "\n".join(f"{f.path}\0{f.sha256}" for f in sorted(files, key=lambda f: f.path))
        return "c" + hashlib.sha256(manifest.encode()).hexdigest()[:32]


class SessionHost:
    """The actor (created with max_concurrency > 1: an infer request may wait on the model while
    a stop or a note comes in; until `start` has returned, those find no session and do nothing)."""

    def __init__(self):
        self.executor = None
        self.session: Session | None = None

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def start(self, request: dict) -> dict:
        """Prepare and start the session here; returns its supervisor's pid, the GPUs Ray gave
        it, this node's name and what was fetched."""
        import ray

        session: Session = request["session"]
        gpu_ids = tuple(int(g) for g in ray.get_gpu_ids())
        home = node_home()
        isolation = self._isolation(request["sandbox"])
        blobs = FetchedBlobs(home / "blobs", request["server_url"], session.name, request["token"])
        self.executor = NodeExecutor(request["instance"], home, blobs, request["server_url"], request["token"],
                                     paused_timeout=request["paused_timeout"], isolation=isolation, network=request["network"],
                                     heartbeat_every=request["heartbeat_every"], die_with_parent=True,
                                     refused=tuple(request.get("refused", ())))
        began = time.monotonic()
        try:
            launched = self.executor.launch(session, gpu_ids, request["code"], request["dataset"], request["dataset_files"], request["outputs"])
        finally:
            blobs.close()
        self.session = replace(session, supervisor_pid=launched.handle)
        node = request["node_name"]
        self.executor.note(self.session, f"[nsml] on Ray node {node}"
                           f"{' with GPU ' + ','.join(map(str, gpu_ids)) if gpu_ids else ''}: fetched {blobs.fetched} files "
                           f"({blobs.bytes} bytes) from the server, {blobs.cached} from the node's cache, "
                           f"ready in {time.monotonic() - began:.1f} s (sandbox: {isolation.name}).")
        threading.Thread(target=self._end_with_supervisor, args=(launched.handle,), name="nsml-host-watch", daemon=True).start()
        return {"pid": launched.handle, "gpu_ids": list(gpu_ids), "fetched": blobs.fetched, "cached": blobs.cached}

    @staticmethod
    def _isolation(wanted: str):
        """The sandbox here, probed on this node: a server that requires one gets one or no session."""
        from . import bwrap

        if wanted == "none":
            return bwrap.Mode("none", "turned off with --sandbox none")
        mode = bwrap.probe()
        if wanted == "bwrap" and not mode.sandboxed:
            raise RuntimeError(f"no session sandbox can run on this node: {mode.detail}; install bubblewrap there")
        return mode

    def _end_with_supervisor(self, pid: int) -> None:
        """Once the supervisor has reported the end and exited, the session's files here are
        the server's already: drop them and end the actor, which gives its resources back to Ray."""
        while True:  # polled: Popen's own reaping may take the child first, and that ends it too
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    break
            except ChildProcessError:
                break
            time.sleep(0.5)
        self.executor.remove(self.session)
        _end_this_actor()

    # What the server asks of a running session (the local executor's methods, on this node).
    def stop(self) -> bool:
        return self.executor.stop(self.session) if self.session else False

    def signal(self, signum: int) -> bool:
        return self.executor.signal(self.session, signum) if self.session else False

    def kill(self) -> None:
        if self.session:
            self.executor.kill(self.session)
            self.executor.remove(self.session)

    def note(self, line: str) -> None:
        if self.session:
            self.executor.note(self.session, line)

    def live_outputs(self, code: dict[str, str], limit: int) -> list[tuple[str, bytes]]:
        """The files the session wrote so far, with their bytes (at most `limit` in all)."""
        out, total = [], 0
        for rel, path, size in self.executor.live_outputs(self.session, code) if self.session else []:
            if total + size > limit:
                break
            try:
                out.append((rel, Path(path).read_bytes()))
                total += size
            except OSError:
                continue
        return out

    def infer_ready(self) -> bool:
        return bool(self.session) and self.executor.infer_ready(self.session)

    def infer(self, data) -> object:
        return self.executor.infer(self.session, data)

    def user_pid(self) -> int | None:
        return self.executor.user_pid(self.session) if self.session else None


def _end_this_actor() -> None:
    import ray

    try:
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
    except Exception:
        pass
    time.sleep(10)  # the kill comes through Ray; should it not, the process ends itself
    os._exit(0)
