"""The Executor protocol's contract (nsml.scheduler.executor), run against every implementation.

Each executor is driven directly, with no server behind it (its supervisor's reports go
nowhere, as when the server is away): launch starts the session on a node of the inventory
with exactly its devices visible; signal reaches the user process; note lands in its log;
live outputs show what it wrote; stop ends it (the user process first); kill ends it at once;
remove leaves nothing behind.

The Ray executor fetches a session's files from a server over HTTP, so it cannot be driven
without one: the same contract is checked for it through a real server on a real cluster
(tests/ray/test_ray_executor.py: launch on the node with Ray's devices, a signal through
`nsml pause`, notes in the log, live outputs through `nsml download`, stop, kill and remove
through `nsml rm -f`).
"""

import os
import signal
import time
from pathlib import Path

import pytest

from nsml.core.entities import FileEntry, Session
from nsml.core.inventory import GpuDevice, Node
from nsml.core.resources import Resources
from nsml.core.states import Status
from nsml.scheduler.executor import Executor, Launched
from nsml.scheduler.local import LocalExecutor
from nsml.store.blobs import BlobStore
from tests.conftest import wait_for

MAIN = b"""\
import os, signal, sys, time
signal.signal(signal.SIGUSR1, lambda *_: open("usr1", "w").write("caught"))
open("written.txt", "w").write("hello")
print("visible", os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
while not os.path.exists("gate"):
    time.sleep(0.05)
"""
NODES = [Node("node-a", 4, 8 << 30, (GpuDevice(0, "Test GPU"), GpuDevice(1, "Test GPU")))]


def local(tmp_path: Path) -> LocalExecutor:
    # Port 9 (discard) is closed: reports fail fast and are retried, as with a server away.
    return LocalExecutor(tmp_path / "home", BlobStore(tmp_path / "home" / "blobs"), "http://127.0.0.1:9", "no-server",
                         nodes=NODES)


EXECUTORS = {"local": local}


@pytest.fixture(params=sorted(EXECUTORS))
def executor(request, tmp_path) -> Executor:
    made = EXECUTORS[request.param](tmp_path)
    yield made
    for session in getattr(made, "_contract_sessions", []):
        made.kill(session)


def launch(executor, session_id: int = 1, gpu_ids=(1,)) -> tuple[Session, Launched]:
    sha, size = executor.blobs.put_chunks([MAIN])  # where the server keeps the code the executor ships
    session = Session(id=session_id, owner="alice", dataset=".nodata", number=session_id, entry="main.py", args="",
                      status=Status.RUNNING, resources=Resources(0.1, 256 << 20, len(gpu_ids)), created=time.time(),
                      started=time.time(), node="node-a", gpu_ids=",".join(map(str, gpu_ids)))
    launched = executor.launch(session, tuple(gpu_ids), [FileEntry("main.py", size, sha)], None, [])
    session = Session(**{**session.__dict__, "supervisor_pid": launched.handle})
    executor._contract_sessions = [*getattr(executor, "_contract_sessions", []), session]
    return session, launched



def outputs(executor, session) -> dict[str, int]:
    return {rel: size for rel, _path, size in executor.live_outputs(session, {})}


def test_it_is_an_executor_with_an_inventory(executor):
    assert isinstance(executor, Executor)
    assert executor.inventory() == NODES


def test_launch_signal_note_outputs_and_stop(executor):
    session, launched = launch(executor)
    assert isinstance(launched, Launched) and launched.handle
    wait_for(lambda: outputs(executor, session).get("written.txt") == 5, "what the session wrote, live")
    assert executor.signal(session, signal.SIGUSR1)
    wait_for(lambda: "usr1" in outputs(executor, session), "the signal to reach the user process")
    executor.note(session, "[nsml] a line from the platform")
    log = executor.run_dir(session) / "output.log"
    wait_for(lambda: "visible 1" in log.read_text(), "the session to see exactly its device")
    assert "[nsml] a line from the platform" in log.read_text()
    user = int((executor.run_dir(session) / "user.pid").read_text())
    assert executor.stop(session)
    wait_for(lambda: not _alive(user), "stop to end the user process")
    executor.kill(session)  # its supervisor, retrying reports to a server that is away
    wait_for(lambda: not executor.signal(session, signal.SIGUSR1), "nothing left to signal (once reaped)")
    executor.remove(session)
    assert not executor.run_dir(session).exists() and outputs(executor, session) == {}


def test_kill_ends_everything_at_once(executor):
    session, launched = launch(executor, session_id=2, gpu_ids=())
    user = int(wait_for(lambda: (p := executor.run_dir(session) / "user.pid").exists() and p.read_text(), "the user process"))
    executor.kill(session)
    wait_for(lambda: not _alive(user) and not _alive(launched.handle), "kill to end the session")
    assert not executor.stop(session)  # already gone


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return not Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].startswith("Z")
    except OSError:
        return False
