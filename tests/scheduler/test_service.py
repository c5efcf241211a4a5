"""The scheduling loop's liveness rules on a real store and the real local executor, with
session records (and, where a kill is at stake, real processes): a running session silent past
the heartbeat timeout is lost; one that reported in is not; a silence that was the server's own
(the machine slept, the process stalled) gives every session a new chance instead; a session the
stopped server was preparing queues again, what its launch started killed and nothing else."""

import subprocess
import sys
import time

import pytest

from nsml.core.inventory import GpuDevice, Node
from nsml.core.resources import Resources
from nsml.core.states import Status
from nsml.scheduler.local import LocalExecutor
from nsml.scheduler.service import Scheduler
from nsml.store.blobs import BlobStore
from nsml.store.sql import open_store

NODES = [Node("n", 4, 8 << 30, (GpuDevice(0),))]
NO_SUCH_PID = 2**22 + 12345  # above the kernel's pid_max: never a live process


@pytest.fixture
def world(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'nsml.db'}")
    executor = LocalExecutor(tmp_path / "home", BlobStore(tmp_path / "blobs"), "http://127.0.0.1:9", "t", nodes=NODES)
    scheduler = Scheduler(store, executor, NODES, heartbeat_timeout=30)
    yield store, scheduler
    store.close()


def a_running_session(store, heartbeat_age: float):
    s = store.create_session("alice", "d", "main.py", "", Resources(1, 1 << 30, 1), "", "", [])
    now = time.time()
    store.move_session(s.id, Status.RUNNING, started=now - 600, node="n", gpu_ids="0")
    store.record_launch(s.id, NO_SUCH_PID)
    return store.record_heartbeat(s.id, now - heartbeat_age)


def test_silent_past_the_timeout_is_lost_and_frees_its_gpu(world):
    store, scheduler = world
    scheduler.started_at = time.time() - 3600  # the server has run for an hour
    silent, alive = a_running_session(store, heartbeat_age=45), a_running_session(store, heartbeat_age=3)
    scheduler.reconcile()
    lost = store.session_by_id(silent.id)
    assert lost.status == Status.LOST and "no heartbeat for 30 s" in lost.error and lost.ended
    assert store.session_by_id(alive.id).status == Status.RUNNING
    assert [s.id for s in store.list_sessions({Status.RUNNING})] == [alive.id]  # its GPU is placeable again


def test_a_server_that_just_started_gives_every_session_a_whole_timeout(world):
    store, scheduler = world  # started_at: now
    silent = a_running_session(store, heartbeat_age=3600)  # silent while the server was away
    scheduler.reconcile(at_startup=True)
    assert store.session_by_id(silent.id).status == Status.RUNNING


def test_a_silence_of_the_servers_own_is_not_the_sessions_fault(world):
    store, scheduler = world
    scheduler.started_at = time.time() - 3600
    silent = a_running_session(store, heartbeat_age=120)
    scheduler._last_reconcile_wall = time.time() - 120  # the loop did not run for two minutes: the machine slept
    scheduler.reconcile()
    assert store.session_by_id(silent.id).status == Status.RUNNING
    scheduler.started_at -= 31  # and if it stays silent a whole timeout after that, it is lost
    scheduler.reconcile()
    assert store.session_by_id(silent.id).status == Status.LOST


def a_session_being_prepared(store, started_ago: float):
    s = store.create_session("alice", "d", "main.py", "", Resources(1, 1 << 30, 1), "", "", [])
    return store.move_session(s.id, Status.RUNNING, started=time.time() - started_ago, node="n", gpu_ids="0")


def test_a_session_the_stopped_server_was_preparing_queues_again_and_what_it_started_is_killed(world, tmp_path):
    store, scheduler = world
    prepared = a_session_being_prepared(store, started_ago=2)
    # The server stopped after starting its supervisor but before recording it: a process whose
    # command line is a supervisor's for this session, known only by the pid file launch() writes.
    run_dir = scheduler.executor.run_dir(prepared)
    run_dir.mkdir(parents=True)
    stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "nsml.scheduler.supervisor",
                              str(run_dir / "spec.json")])
    (run_dir / "supervisor.pid").write_text(str(stray.pid))
    try:
        scheduler.reconcile(at_startup=True)
        assert stray.wait(timeout=10) == -9  # it must not run beside the attempt launched next
    finally:
        stray.kill()
    again = store.session_by_id(prepared.id)
    assert (again.status, again.attempt, again.started, again.gpu_ids, again.node) == (Status.QUEUED, 1, None, "", "")
    assert store.session_events(prepared.id)[-1].note == "queued again: the server stopped while preparing it"
    assert store.requeue_unlaunched(prepared.id, "again") is None  # queued now: not such a session
    launched = a_running_session(store, heartbeat_age=1)
    assert store.requeue_unlaunched(launched.id, "x") is None  # its supervisor runs: it did start


def test_a_forged_supervisor_pid_kills_nothing_that_is_not_the_sessions_supervisor(world):
    """supervisor.pid lies outside the sandbox's reach; were it forged anyway (a session run
    without the sandbox), the command-line check keeps kill() to this session's supervisor."""
    store, scheduler = world
    prepared = a_session_being_prepared(store, started_ago=2)
    run_dir = scheduler.executor.run_dir(prepared)
    run_dir.mkdir(parents=True)
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    (run_dir / "supervisor.pid").write_text(str(decoy.pid))
    try:
        scheduler.reconcile(at_startup=True)
        assert decoy.poll() is None, "a process named by a forged supervisor.pid was killed"
        assert store.session_by_id(prepared.id).status == Status.QUEUED
    finally:
        decoy.kill()
        decoy.wait()


def test_a_session_left_unprepared_a_minute_into_a_running_server_fails(world):
    store, scheduler = world
    left, fresh = a_session_being_prepared(store, started_ago=90), a_session_being_prepared(store, started_ago=5)
    scheduler.reconcile()
    assert store.session_by_id(left.id).status == Status.FAILED
    assert "the server stopped while preparing it" in store.session_by_id(left.id).error
    assert store.session_by_id(fresh.id).status == Status.RUNNING  # perhaps still being prepared elsewhere
