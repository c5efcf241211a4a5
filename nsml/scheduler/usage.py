"""Resource usage of running sessions, sampled every few seconds for the web's Info tab.

CPU and memory come from /proc, summed over the session's user process group (the group id
is the user process's pid, found by executor.user_pid): CPU % from the growth of each
process's utime+stime between two samples (100 % = one core), memory from resident pages.
GPU utilisation and memory come from NVML (the nvidia-ml-py package) when it can be imported
and initialised; without it, the GPU list is empty. Everything here is best effort: a sample
that cannot be taken is skipped, never an error for the scheduler.

These samples are readings of a moment (CPU: the average over the few seconds since the
previous one). A run's end cannot be read so: its processes are gone when the scheduler hears
of it. So the supervisor, which reaps the user process, sends with its exit report what the
kernel counted for the whole run (userproc.RunUsage), plus one reading of its own taken about
FIRST_READING_AFTER seconds after the start (`first_reading`), and the server stores both
(`end_samples`): a run of a second still ends with a sample at its start and one at its end.
The end sample is marked `final`; its CPU is the average over the whole run (CPU seconds / wall
seconds, 100 % = one core) and its memory the peak resident memory of the run's largest
process, which the charts say. It holds no GPU figures (NVML has none for a process gone).
"""

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from nsml.core.entities import UsageSample
from nsml.core.states import Status

log = logging.getLogger("nsml.scheduler")

SAMPLE_EVERY = 5.0  # seconds between two samples of a session
LOOK_EVERY = 1.0  # seconds between looks for sessions not sampled yet: a short run gets one early
THIN_EVERY = 600.0  # seconds between thinning passes
THIN_AFTER = 3600.0  # samples older than this keep one per THIN_SPACING
THIN_SPACING = 60.0
FIRST_READING_AFTER = 0.2  # seconds: the supervisor's own reading of a run, soon after its start
_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    pgrp: int
    start: int  # clock ticks after boot: tells a recycled pid from the process seen before
    ticks: int  # utime + stime
    rss: int  # pages


def read_stat(pid: int, proc: Path = _PROC) -> ProcStat | None:
    """The few /proc/PID/stat fields we need; None when the process is gone."""
    try:
        raw = (proc / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and ')': split after its last ')'.
    rest = raw[raw.rfind(b")") + 2:].split()
    try:  # field k of proc(5) is rest[k - 3]
        return ProcStat(pid, int(rest[2]), int(rest[19]), int(rest[11]) + int(rest[12]), int(rest[21]))
    except (IndexError, ValueError):
        return None


def processes_by_group(proc: Path = _PROC) -> dict[int, list[ProcStat]]:
    """Every live user-space process on the machine, grouped by process group id (one pass
    over /proc). Exited processes not yet reaped (zombies) hold no memory and are left out, so
    a session whose processes all ended is not sampled at 0 bytes."""
    groups: dict[int, list[ProcStat]] = {}
    try:
        names = os.listdir(proc)
    except OSError:
        return groups
    for name in names:
        if name.isdigit():
            stat = read_stat(int(name), proc)
            if stat is not None and stat.rss > 0:  # 0: a zombie, or a kernel thread
                groups.setdefault(stat.pgrp, []).append(stat)
    return groups


class GroupCpu:
    """CPU % of process groups between successive calls, from per-process tick counters.

    A process first seen in this call counts all of its ticks when it started after the
    previous call (it ran only since); one seen before counts its growth. Ticks of processes
    that ended between two calls are lost: a short helper process may be missed, a long
    training process never is.
    """

    def __init__(self, ticks_per_second: int | None = None):
        self.hz = ticks_per_second or os.sysconf("SC_CLK_TCK")
        self._seen: dict[int, tuple[float, float, dict[tuple[int, int], int]]] = {}  # pgrp -> (at, boot ticks, {(pid, start): ticks})

    def percent(self, pgrp: int, stats: list[ProcStat], at: float, boot_ticks: float) -> float | None:
        """CPU % of the group since the previous call for it; on the first call, its average
        since its oldest process started (so a run of a few seconds has a figure at once);
        None when that cannot be told (no time has passed)."""
        now = {(s.pid, s.start): s.ticks for s in stats}
        previous = self._seen.get(pgrp)
        self._seen[pgrp] = (at, boot_ticks, now)
        if previous is None:
            lived = (boot_ticks - min(s.start for s in stats)) / self.hz if stats else 0.0
            return 100.0 * sum(now.values()) / self.hz / lived if lived > 0.05 else None
        if at <= previous[0]:
            return None
        then_at, then_boot, then = previous
        used = 0
        for key, ticks in now.items():
            if key in then:
                used += max(0, ticks - then[key])
            elif key[1] >= then_boot:  # started after the previous call
                used += ticks
        return 100.0 * used / self.hz / (at - then_at)

    def forget(self, keep: set[int]) -> None:
        for pgrp in list(self._seen):
            if pgrp not in keep:
                del self._seen[pgrp]


class NvmlReader:
    """Per-GPU utilisation and memory through pynvml, initialised on first use; [] without it."""

    def __init__(self):
        self._nvml = None
        self._tried = False

    def read(self, indices: list[int], node: str = "") -> list[dict]:
        if not indices:
            return []
        if not self._tried:
            self._tried = True
            try:
                import pynvml  # optional: the nvidia-ml-py package

                pynvml.nvmlInit()
                self._nvml = pynvml
            except Exception:  # not installed, no driver, no GPU
                self._nvml = None
        if self._nvml is None:
            return []
        out = []
        for index in indices:
            try:
                handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
                util = self._nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
                out.append({"index": index, "util": float(util.gpu), "memory": int(memory.used)})
            except Exception:  # a GPU that fell off the bus must not stop the others
                continue
        return out


def first_reading(pgrp: int, proc: Path = _PROC) -> tuple[float, int] | None:
    """(CPU %, resident bytes) of a process group now, its CPU the average since its oldest
    process started, as the sampler's first sample of a session has it; None when the group
    is gone or too young to tell (under 0.05 s). Taken by the supervisor (one /proc pass)."""
    cpu = GroupCpu()
    stats = processes_by_group(proc).get(pgrp, [])
    if not stats:
        return None
    percent = cpu.percent(pgrp, stats, time.time(), boot_ticks_now(cpu.hz, proc))
    return None if percent is None else (round(percent, 1), sum(s.rss for s in stats) * _PAGE)


def end_samples(report: dict | None, started: float, ended: float, now: float) -> list[UsageSample]:
    """The samples a supervisor's exit report stands for (pure): its early reading, placed
    `ago` seconds before `now` (the supervisor's clock is not the server's), and the run's
    final summary at `ended`; [] for a report without usage (an older supervisor). Times are
    kept inside [started, ended] so that a skewed figure cannot land in another attempt."""
    if not report:
        return []
    out = []
    first = report.get("first")
    if first and started <= ended:
        at = min(max(now - first["ago"], started), ended)
        if at < ended:
            out.append(UsageSample(at, round(first["cpu"], 1), int(first["memory"]), []))
    wall = report["wall_seconds"]
    cpu = 100.0 * report["cpu_seconds"] / wall if wall > 0 else 0.0
    out.append(UsageSample(ended, round(cpu, 1), int(report["peak_memory"]), [], final=True))
    return out


def boot_ticks_now(hz: int, proc: Path = _PROC) -> float:
    """Clock ticks since boot, on the scale of /proc/PID/stat's starttime."""
    try:
        return float((proc / "uptime").read_text().split()[0]) * hz
    except (OSError, ValueError, IndexError):
        return 0.0


class UsageSampler:
    """Called from the scheduler's tick; every `every` seconds writes one sample per running
    session with a live user process group (store.add_usage), and now and then thins old ones."""

    def __init__(self, store, executor, every: float = SAMPLE_EVERY, gpus: NvmlReader | None = None,
                 proc: Path = _PROC):
        self.store = store
        self.executor = executor
        self.every = every
        self.gpus = gpus or NvmlReader()
        self.proc = proc
        self.cpu = GroupCpu()
        self._last = -float("inf")
        self._last_look = -float("inf")
        self._sampled: set[int] = set()  # sessions with a sample already
        self._last_thin = time.monotonic()

    def maybe_sample(self) -> None:
        """Sample when due, and sessions never sampled yet about every LOOK_EVERY seconds (a
        run of a few seconds gets its sample at its start); cheap when neither, and never
        raises (the scheduler must go on)."""
        clock = time.monotonic()
        due = clock - self._last >= self.every
        if not due and clock - self._last_look < min(LOOK_EVERY, self.every):
            return
        self._last_look = clock
        if due:
            self._last = clock
        try:
            self.sample(only_new=not due)
            if time.monotonic() - self._last_thin > THIN_EVERY:
                self._last_thin = time.monotonic()
                self.store.thin_usage(time.time() - THIN_AFTER, THIN_SPACING)
        except Exception:
            log.exception("sampling resource usage failed")

    def sample(self, only_new: bool = False) -> int:
        """One sample of every running session (`only_new`: of those without one yet);
        returns how many were written."""
        sessions = self.store.list_sessions({Status.RUNNING})
        self._sampled &= {s.id for s in sessions}
        groups = {}
        for session in sessions:
            if only_new and session.id in self._sampled:
                continue
            pgrp = self.executor.user_pid(session)
            if pgrp:
                groups[pgrp] = session
        if not only_new:
            self.cpu.forget(set(groups))
        if not groups:
            return 0
        at, boot = time.time(), boot_ticks_now(self.cpu.hz, self.proc)
        by_group = processes_by_group(self.proc)
        written = 0
        for pgrp, session in groups.items():
            stats = by_group.get(pgrp, [])
            if not stats:
                continue  # the user process has not started yet, or has ended
            cpu = self.cpu.percent(pgrp, stats, at, boot)
            if cpu is None:
                continue  # the first look only sets the baseline
            memory = sum(s.rss for s in stats) * _PAGE
            indices = [int(i) for i in session.gpu_ids.split(",") if i.strip().isdigit()]
            try:
                self.store.add_usage(session.id, at, round(cpu, 1), memory, self.gpus.read(indices, session.node))
                self._sampled.add(session.id)
                written += 1
            except Exception:  # removed meanwhile, database busy: the next sample will do
                log.debug("could not store usage of %s", session.name, exc_info=True)
        return written


_PAGE = os.sysconf("SC_PAGE_SIZE")


def zombie_gpus(samples: list[UsageSample], after: float, now: float | None = None) -> list[int]:
    """The spec's zombie flag: the GPUs of a session that showed 0 % utilisation in every sample
    of the last `after` seconds (an hour by default, NSML_ZOMBIE_AFTER). The samples must reach
    back over the whole window (a session an hour old can be a zombie, a minute-old one cannot),
    and a GPU missing from a sample counts as not idle. `now`: the latest sample's time unless given."""
    samples = [s for s in samples if not s.final]  # a run's summary reads no GPU: it says nothing of idleness
    if not samples:
        return []
    now = samples[-1].at if now is None else now
    if not any(s.at <= now - after + SAMPLE_EVERY * 2 for s in samples if s.at <= now):
        return []
    recent = [s for s in samples if now - after <= s.at <= now]
    indices = {g.get("index") for s in recent for g in s.gpus} - {None}
    idle = []
    for index in indices:
        readings = [next((g for g in s.gpus if g.get("index") == index), None) for s in recent]
        if all(g is not None and not g.get("util") for g in readings):
            idle.append(index)
    return sorted(idle)
