"""Usage sampling against real processes: a busy child in its own process group, read from
/proc, written to a real SQLite store; the zombie rule; thinning of old samples; the end of a
run, from the user process reaped with its resource usage to a real session's end sample."""

import os
import signal
import subprocess
import sys
import time

import pytest

from nsml.core.entities import FileEntry, UsageSample
from nsml.core.resources import Resources
from nsml.core.states import Status
from nsml.scheduler.usage import GroupCpu, NvmlReader, UsageSampler, processes_by_group, zombie_gpus, read_stat
from nsml.store.sql import open_store
from tests.conftest import cli_in, start_session, write_project

BUSY = """
import os, sys, time
ballast = bytearray(64 << 20)  # resident: touched below
for i in range(0, len(ballast), 4096):
    ballast[i] = 1
if os.fork() == 0:  # a second busy process in the same group
    while True:
        pass
print("ready", flush=True)
while True:
    pass
"""


@pytest.fixture
def busy_group():
    """A CPU-bound parent and child in a process group of their own (like a session's)."""
    proc = subprocess.Popen([sys.executable, "-c", BUSY], stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout.readline().strip() == b"ready"
    yield proc.pid
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path / 'nsml.db'}")
    yield s
    s.close()


class GroupOf:
    """Stand-in executor (named as such): the only call the sampler makes is user_pid, which
    for a real session reads SPOOL/user.pid; here it is the busy child's group."""

    def __init__(self, pgrp: int | None):
        self.pgrp = pgrp

    def user_pid(self, session):
        return self.pgrp


class NoGpus(NvmlReader):
    def read(self, indices, node=""):
        return []


def running_session(store):
    s = store.create_session("alice", "digits", "main.py", "", Resources(1, 1 << 30, 0), "", "", [FileEntry("main.py", 1, "0" * 64)])
    return store.move_session(s.id, Status.RUNNING, started=time.time())


def test_read_stat_of_this_process_and_its_group():
    me = read_stat(os.getpid())
    assert me.pid == os.getpid() and me.pgrp == os.getpgrp() and me.rss > 0 and me.ticks >= 0
    assert read_stat(2 ** 22 + 12345) is None
    assert any(s.pid == os.getpid() for s in processes_by_group()[os.getpgrp()])


def test_a_busy_process_group_shows_cpu_and_memory(store, busy_group):
    session = running_session(store)
    sampler = UsageSampler(store, GroupOf(busy_group), every=0.0, gpus=NoGpus())
    time.sleep(0.5)
    assert len(processes_by_group()[busy_group]) == 2
    assert sampler.sample() == 1  # the first look: the average since the group started
    time.sleep(0.5)
    assert sampler.sample() == 1
    first, sample = store.usage(session.id)
    assert first.cpu > 10.0 and sample.cpu > 10.0  # two spinning processes: up to 200 % on an idle machine
    assert sample.memory > 64 << 20  # the touched ballast is resident
    assert sample.gpus == []
    time.sleep(0.2)
    sampler.maybe_sample()  # due at once with every=0; never raises
    assert len(store.usage(session.id)) == 3


def test_a_session_is_sampled_soon_after_it_starts_not_only_every_few_seconds(store, busy_group):
    import nsml.scheduler.usage as usage

    sampler = UsageSampler(store, GroupOf(busy_group), every=3600.0, gpus=NoGpus())
    first = running_session(store)
    time.sleep(0.3)
    sampler.maybe_sample()  # the regular sample (due at once), with the first session in it
    assert len(store.usage(first.id)) == 1
    second = running_session(store)
    sampler._last_look -= usage.LOOK_EVERY  # a second later
    sampler.maybe_sample()
    assert len(store.usage(second.id)) == 1  # its start is sampled at the next look
    assert len(store.usage(first.id)) == 1  # the others wait for their regular turn
    sampler._last_look -= usage.LOOK_EVERY
    sampler.maybe_sample()
    assert len(store.usage(second.id)) == 1


def test_sessions_without_a_live_group_are_skipped(store):
    running_session(store)
    assert UsageSampler(store, GroupOf(None), every=0.0, gpus=NoGpus()).sample() == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    dead.wait()
    sampler = UsageSampler(store, GroupOf(dead.pid), every=0.0, gpus=NoGpus())
    assert sampler.sample() == 0 and sampler.sample() == 0
    zombie = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)  # exited, not reaped
    deadline = time.monotonic() + 30
    while read_stat(zombie.pid) is not None and b" Z " not in open(f"/proc/{zombie.pid}/stat", "rb").read():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    sampler = UsageSampler(store, GroupOf(zombie.pid), every=0.0, gpus=NoGpus())
    assert sampler.sample() == 0 and sampler.sample() == 0  # never a sample at 0 bytes
    zombie.wait()


def test_a_failing_store_never_breaks_the_scheduler_tick(busy_group):
    class Broken:
        def list_sessions(self, statuses):
            raise RuntimeError("database is locked")

    UsageSampler(Broken(), GroupOf(busy_group), every=0.0, gpus=NoGpus()).maybe_sample()


def test_cpu_percent_counts_new_processes_only_from_their_start():
    from nsml.scheduler.usage import ProcStat
    cpu = GroupCpu(ticks_per_second=100)
    # the first look: 50 ticks over the 10 s (1000 ticks) since the process started
    assert cpu.percent(7, [ProcStat(7, 7, 1000, 50, 1)], at=10.0, boot_ticks=2000) == pytest.approx(5.0)
    assert GroupCpu(ticks_per_second=100).percent(7, [ProcStat(7, 7, 2000, 0, 1)], at=10.0, boot_ticks=2000) is None
    later = [ProcStat(7, 7, 1000, 150, 1),  # +100 ticks = 1 s of CPU
             ProcStat(8, 7, 2100, 40, 1),  # started after the previous look: all 40 count
             ProcStat(9, 7, 500, 999, 1)]  # started long before but unseen (a recycled pid?): not counted
    assert cpu.percent(7, later, at=12.0, boot_ticks=2200) == pytest.approx(100.0 * 1.4 / 2.0)


def gpu(index, util):
    return {"index": index, "util": util, "memory": 1 << 30}


def test_zombie_means_an_allocated_gpu_idle_for_the_whole_last_hour():
    now = 100_000.0
    idle = [UsageSample(now - t, 5.0, 1, [gpu(0, 0.0), gpu(1, 35.0)]) for t in range(3700, -1, -60)]
    assert zombie_gpus(idle, 3600, now=now) == [0]  # GPU 0 idle all along
    assert zombie_gpus(idle, 3600) == [0]
    assert zombie_gpus(idle, 7200, now=now) == []  # not idle that long (a shorter threshold flags sooner)
    busy_once = idle[:-10] + [UsageSample(now - 500, 5.0, 1, [gpu(0, 3.0), gpu(1, 35.0)])] + idle[-9:]
    assert zombie_gpus(busy_once, 3600, now=now) == []
    young = [s for s in idle if s.at > now - 1800]  # idle, but only for half an hour
    assert zombie_gpus(young, 3600, now=now) == []
    missing = [UsageSample(s.at, s.cpu, s.memory, [gpu(1, 35.0)]) if i == 30 else s for i, s in enumerate(idle)]
    assert zombie_gpus(missing, 3600, now=now) == []  # a GPU not reported is not known idle
    assert zombie_gpus([], 3600, now=now) == []


def test_old_samples_are_thinned_to_one_a_minute(store):
    session = running_session(store)
    for t in range(0, 600, 5):
        store.add_usage(session.id, 1000.0 + t, 1.0, 1, [])
    deleted = store.thin_usage(before=1000.0 + 300, spacing=60.0)
    kept = [s.at for s in store.usage(session.id)]
    assert deleted == 60 - 6
    assert kept[:6] == [1000.0, 1020.0, 1080.0, 1140.0, 1200.0, 1260.0]  # first of each minute (1000/60 = 16.7)
    assert kept[6:] == [1000.0 + t for t in range(300, 600, 5)]  # recent ones untouched


def test_end_samples_place_the_early_reading_and_the_final_summary():
    from nsml.scheduler.usage import end_samples

    report = {"cpu_seconds": 0.5, "wall_seconds": 2.0, "peak_memory": 30 << 20, "first": {"ago": 3.0, "cpu": 95.0, "memory": 9 << 20}}
    first, last = end_samples(report, started=100.0, ended=104.5, now=105.0)
    assert (first.at, first.cpu, first.memory, first.final) == (102.0, 95.0, 9 << 20, False)
    assert (last.at, last.cpu, last.memory, last.final) == (104.5, 25.0, 30 << 20, True)  # 0.5 s of CPU in 2 s: 25 %
    # A skewed or absurd `ago` stays inside the attempt; one that lands on the end is dropped.
    assert end_samples({**report, "first": {**report["first"], "ago": 1e6}}, 100.0, 104.5, 105.0)[0].at == 100.0
    assert [s.final for s in end_samples({**report, "first": {**report["first"], "ago": 0.0}}, 100.0, 104.5, 105.0)] == [True]
    assert [s.final for s in end_samples({**report, "first": None}, 100.0, 104.5, 105.0)] == [True]
    assert end_samples({**report, "wall_seconds": 0.0, "first": None}, 100.0, 100.0, 100.0)[0].cpu == 0.0  # no division by 0
    assert end_samples(None, 100.0, 104.5, 105.0) == []  # an older supervisor's report


def test_the_zombie_rule_ignores_end_of_run_summaries():
    now = 100_000.0
    idle = [UsageSample(now - t, 5.0, 1, [gpu(0, 0.0)]) for t in range(3700, -1, -60)]
    summary = UsageSample(now - 1800, 50.0, 1, [], final=True)  # an earlier attempt's end: no GPU figures
    assert zombie_gpus(sorted([*idle, summary], key=lambda s: s.at), 3600, now=now) == [0]


SPIN_THEN_EXIT = """
import os, time
ballast = bytearray(48 << 20)
for i in range(0, len(ballast), 4096):
    ballast[i] = 1
if os.fork() == 0:  # a child the parent waits for: its CPU counts too
    while time.process_time() < 0.3:  # CPU seconds, not wall time: the machine may be busy
        pass
    os._exit(0)
while time.process_time() < 0.3:
    pass
os.wait()
"""


def test_the_user_process_is_reaped_with_its_resource_usage(tmp_path):
    """userproc.Plain as the supervisor drives it: poll until the end, then the run's totals."""
    from nsml.scheduler import userproc

    spec = {"argv": [sys.executable, "-c", SPIN_THEN_EXIT], "workdir": str(tmp_path), "env": dict(os.environ)}
    with open(tmp_path / "log", "ab") as log:
        proc = userproc.Plain(spec, log, None)
    assert proc.usage() is None  # not ended yet
    deadline = time.monotonic() + 60
    while proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert proc.poll() == 0 and proc.proc.returncode == 0  # Popen knows it ended too
    totals = proc.usage()
    assert totals["cpu_seconds"] >= 0.6  # the parent's 0.3 s of CPU and its child's
    assert totals["wall_seconds"] >= 0.3 and totals["cpu_seconds"] <= 2 * totals["wall_seconds"] + 0.5
    assert totals["peak_memory"] > 48 << 20  # the touched ballast, in bytes (ru_maxrss is in KiB)


def test_a_one_second_session_ends_with_a_sample_at_its_start_and_one_at_its_end(server, tmp_path):
    """A real session through the real server (sandboxed where bubblewrap works): the scheduler's
    sampler may or may not see a process this short; the supervisor's exit report always holds
    a reading of its start and the run's summary, which the server stores at the end time."""
    cli = cli_in(server, tmp_path / "work")
    write_project(cli.cwd, "import time\nblob = bytearray(32 << 20)\nfor i in range(0, len(blob), 4096):\n    blob[i] = 1\n"
                           "time.sleep(1)\n")
    name = start_session(cli, "-c", "0.5", "--memory", "512M")
    ended = server.wait(name)
    assert ended["status"] == "exited", ended
    usage = server.api.get(f"/api/web/sessions/{name}/info").json()["usage"]
    assert len(usage["at"]) >= 2, usage
    assert usage["final"][-1] is True and not any(usage["final"][:-1])
    assert usage["at"][-1] == ended["ended"]  # the end sample is dated at the session's end
    assert ended["started"] <= usage["at"][0] < ended["ended"]
    assert usage["memory"][-1] > 32 << 20  # the peak, the touched bytes in it
    assert 0 <= usage["cpu"][-1] < 100  # mostly asleep: an average over the run, far below one core
    assert all(m > 0 for m in usage["memory"])
