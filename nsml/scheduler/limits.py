"""Per-session memory, CPU and process-count limits: cgroups where they really work, else rlimits.

Machines differ: a pure cgroup v2 host, a v1 host, or a hybrid one where v2 is mounted but holds
no memory controller (a writable directory is not proof of anything). `detect()` finds out by
creating a probe group and reading back a limit it wrote, per controller. Without a working
memory and pids controller, per-session rlimits stand in (address space and process count; the
process count is per uid, which is per session when the platform runs as root).

A group is made before the user process starts and the process joins it between fork and exec
(`Group.preexec`), so none of its code runs unlimited. The supervisor asks `oom_killed()` when
the process ends, to report `Out of memory` rather than a bare SIGKILL.
"""

import os
import resource
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class Limits:
    memory_bytes: int | None = None
    cpus: float | None = None
    pids: int | None = None


class Group:
    """One session's limits; `backend` says how they are enforced."""

    backend = "none"

    def preexec(self) -> None:
        """Called in the child between fork and exec: join the group (or set rlimits)."""

    def oom_killed(self) -> bool:
        return False

    def remove(self) -> None:
        pass


class RlimitGroup(Group):
    backend = "rlimit"

    def __init__(self, limits: Limits):
        self.limits = limits

    def preexec(self) -> None:
        if self.limits.memory_bytes:
            # Address space, not resident memory: generous (x2) since allocators reserve more
            # than they touch; a runaway allocation still fails instead of taking the machine.
            cap = self.limits.memory_bytes * 2
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        if self.limits.pids:
            resource.setrlimit(resource.RLIMIT_NPROC, (self.limits.pids, self.limits.pids))


class V2Group(Group):
    backend = "cgroup2"

    def __init__(self, path: Path, limits: Limits):
        self.path = path
        path.mkdir(exist_ok=True)
        # A group left by a supervisor killed without cleaning up keeps its counters: count
        # only the OOM kills from now on (names are unique besides: nsml.scheduler.userproc).
        self._oom_before = _counter(path / "memory.events", "oom_kill")
        if limits.memory_bytes:
            _write(path / "memory.max", limits.memory_bytes)
            _write_try(path / "memory.swap.max", 0)
        if limits.pids:
            _write(path / "pids.max", limits.pids)
        if limits.cpus:
            _write_try(path / "cpu.max", f"{int(limits.cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}")

    def preexec(self) -> None:
        _write(self.path / "cgroup.procs", os.getpid())

    def oom_killed(self) -> bool:
        return _counter(self.path / "memory.events", "oom_kill") > self._oom_before

    def remove(self) -> None:
        _rmdir(self.path)


class V1Group(Group):
    backend = "cgroup1"

    def __init__(self, paths: dict[str, Path], limits: Limits):
        self.paths = paths
        for path in paths.values():
            path.mkdir(exist_ok=True)
        memory = paths.get("memory")
        self._oom_before = _counter(memory / "memory.oom_control", "oom_kill") if memory else 0
        if limits.memory_bytes and "memory" in paths:
            _write(paths["memory"] / "memory.limit_in_bytes", limits.memory_bytes)
            _write_try(paths["memory"] / "memory.memsw.limit_in_bytes", limits.memory_bytes)
        if limits.pids and "pids" in paths:
            _write(paths["pids"] / "pids.max", limits.pids)
        if limits.cpus and "cpu" in paths:
            _write(paths["cpu"] / "cpu.cfs_period_us", CPU_PERIOD_US)
            _write(paths["cpu"] / "cpu.cfs_quota_us", int(limits.cpus * CPU_PERIOD_US))

    def preexec(self) -> None:
        pid = os.getpid()
        for path in self.paths.values():
            _write(path / "cgroup.procs", pid)

    def oom_killed(self) -> bool:
        path = self.paths.get("memory")
        return bool(path) and _counter(path / "memory.oom_control", "oom_kill") > self._oom_before

    def remove(self) -> None:
        for path in self.paths.values():
            _rmdir(path)


@dataclass(frozen=True)
class Backend:
    """How limits are enforced on this machine, found once by `detect()`."""

    name: str                       # "cgroup2", "cgroup1" or "rlimit"
    v2_parent: Path | None = None
    v1_parents: tuple[tuple[str, Path], ...] = ()

    def group(self, name: str, limits: Limits) -> Group:
        """A group for one session (`name` unique among running sessions), limits applied."""
        try:
            if self.name == "cgroup2":
                return V2Group(self.v2_parent / name, limits)
            if self.name == "cgroup1":
                return V1Group({c: parent / name for c, parent in self.v1_parents}, limits)
        except OSError:
            pass  # a group that cannot be made (full hierarchy, a vanished mount): rlimits
        return RlimitGroup(limits)


def prune_empty(backend: Backend) -> int:
    """Remove the session groups that supervisors killed without cleaning up left behind (the
    kernel refuses to remove one that still holds a process, so live sessions keep theirs)."""
    parents = [backend.v2_parent] if backend.v2_parent else [p for _, p in backend.v1_parents]
    removed = 0
    for parent in parents:
        try:
            groups = [g for g in parent.iterdir() if g.is_dir() and g.name.startswith("session-")]
        except OSError:
            continue
        for group in groups:
            try:
                group.rmdir()
                removed += 1
            except OSError:
                pass
    return removed


def detect(prefix: str = "nsml") -> Backend:
    if os.geteuid() != 0 and not os.access(CGROUP_ROOT, os.W_OK):
        return _v2(prefix) or Backend("rlimit")  # a delegated v2 subtree is the only hope
    return _v2(prefix) or _v1(prefix) or Backend("rlimit")


def _own_path(controller: str) -> str:
    """This process's group for a v1 controller ("" for v2), from /proc/self/cgroup."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, names, path = line.split(":", 2)
            if (controller == "" and names == "") or controller in names.split(","):
                return path.lstrip("/")
    except OSError:
        pass
    return ""


def _v2(prefix: str) -> Backend | None:
    mount = CGROUP_ROOT if (CGROUP_ROOT / "cgroup.controllers").exists() else None
    if mount is None:
        return None
    parent = mount / prefix
    try:
        parent.mkdir(exist_ok=True)
        controllers = (mount / "cgroup.controllers").read_text().split()
        if not {"memory", "pids"} <= set(controllers):
            return None
        enable = " ".join(f"+{c}" for c in ("memory", "pids", "cpu") if c in controllers)
        _write(mount / "cgroup.subtree_control", enable)
        _write(parent / "cgroup.subtree_control", enable)
        probe = parent / f"probe-{os.getpid()}"
        probe.mkdir(exist_ok=True)
        try:
            _write(probe / "memory.max", 64 << 20)
            ok = (probe / "memory.max").read_text().strip() == str(64 << 20)
        finally:
            _rmdir(probe)
        return Backend("cgroup2", v2_parent=parent) if ok else None
    except OSError:
        return None


def _v1(prefix: str) -> Backend | None:
    parents = []
    for controller, probe_file in (("memory", "memory.limit_in_bytes"), ("pids", "pids.max"), ("cpu", "cpu.cfs_quota_us")):
        mount = CGROUP_ROOT / controller
        if not (mount / "cgroup.procs").exists():
            if controller == "cpu":
                continue  # CPU shares are a nicety; memory and pids are what protect the machine
            return None
        parent = mount / _own_path(controller) / prefix
        try:
            parent.mkdir(parents=True, exist_ok=True)
            probe = parent / f"probe-{os.getpid()}"
            probe.mkdir(exist_ok=True)
            try:
                if controller == "memory":
                    _write(probe / probe_file, 64 << 20)
                    ok = int((probe / probe_file).read_text()) <= 64 << 20
                elif controller == "pids":
                    _write(probe / probe_file, 64)
                    ok = (probe / probe_file).read_text().strip() == "64"
                else:
                    _write(probe / probe_file, CPU_PERIOD_US)
                    ok = True
            finally:
                _rmdir(probe)
        except OSError:
            ok = False
        if not ok:
            if controller == "cpu":
                continue
            return None
        parents.append((controller, parent))
    return Backend("cgroup1", v1_parents=tuple(parents))


def _write(path: Path, value) -> None:
    with open(path, "w") as f:
        f.write(f"{value}\n")


def _write_try(path: Path, value) -> None:
    try:
        _write(path, value)
    except OSError:
        pass


def _counter(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _rmdir(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass
