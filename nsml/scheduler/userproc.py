"""The user process as the supervisor sees it: started, signalled, killed, waited for.

Two kinds behind one small interface:

- `Plain`: a subprocess in a process group of its own (no sandbox: `--sandbox none`);
- `Sandboxed`: the same inside bubblewrap (nsml.scheduler.bwrap), with its limits (cgroups or
  rlimits, nsml.scheduler.limits). bubblewrap does not pass signals on, so SIGTERM (`nsml stop`:
  the library writes its journal, the script's `finally` blocks run) goes straight to the
  user's process group inside the sandbox, found through bubblewrap's info pipe; SIGKILL ends
  bubblewrap itself, which takes the whole PID namespace with it.

`usage()` is what the run used as a whole, for its end-of-run sample (RunUsage: read from
/proc on each poll, and from os.wait4 rather than Popen.poll, which throws a child's resource
usage away).
"""

import os
import signal
import subprocess
import time
from pathlib import Path

SETUP_TRIES = 3


class RunUsage:
    """What a run used as a whole, for its end-of-run sample: the CPU seconds of the user's
    process and of the processes it waited for, and the peak resident memory of the largest
    of them (a per-process peak, not the group's sum), over the run's wall time.

    Two readings, each a lower bound of the truth, of which the larger is kept:
    - `watch`, on every poll while the user process lives: its /proc stat (utime + stime +
      cutime + cstime, the c- fields its reaped children) and VmHWM (its own peak);
    - `reap`, when the supervisor's child ends: os.wait4's rusage of that child and of what it
      waited for. Without a sandbox the child is the user's process, and this is exact. In a
      sandbox it is bubblewrap, which returns as soon as its init reports the command's status,
      before that init (which reaped the command) is reaped: the kernel's count of the user's
      process is lost with it, so there the last `watch` stands (taken at most a poll, 0.2 s,
      before the end; its children's peaks are not in it).
    A process still running when the run ends (killed with the group, never waited for) is in
    neither."""

    def __init__(self, hz: int | None = None):
        self.started = time.monotonic()
        self.ended: float | None = None
        self.hz = hz or os.sysconf("SC_CLK_TCK")
        self.cpu_seconds = 0.0
        self.peak_memory = 0
        self.seen = False  # a reading (watch or reap) was taken

    def watch(self, pid: int, proc: Path = Path("/proc")) -> None:
        try:
            stat = (proc / str(pid) / "stat").read_bytes()
            status = (proc / str(pid) / "status").read_bytes()
        except OSError:
            return  # ended (or not ours to read): the reap, or the previous look, says the rest
        fields = stat[stat.rfind(b")") + 2:].split()  # field k of proc(5) is fields[k - 3]
        try:
            ticks = sum(int(fields[k]) for k in (11, 12, 13, 14))  # utime stime cutime cstime
            hwm = next((int(line.split()[1]) for line in status.splitlines() if line.startswith(b"VmHWM:")), 0)
        except (IndexError, ValueError):
            return
        self.cpu_seconds = max(self.cpu_seconds, ticks / self.hz)
        self.peak_memory = max(self.peak_memory, hwm * 1024)
        self.seen = True

    def reap(self, popen: subprocess.Popen) -> int | None:
        """Popen.poll through os.wait4, keeping the child's rusage; the exit code or None."""
        if popen.returncode is not None:
            return popen.returncode
        try:
            pid, status, rusage = os.wait4(popen.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere: the code is known, its usage is not
            return popen.poll()
        if pid == 0:
            return None
        self.ended = time.monotonic()
        self.cpu_seconds = max(self.cpu_seconds, rusage.ru_utime + rusage.ru_stime)
        self.peak_memory = max(self.peak_memory, int(rusage.ru_maxrss) * 1024)  # Linux counts it in KiB
        self.seen = True
        popen.returncode = os.waitstatus_to_exitcode(status)  # Popen will not wait for it again
        return popen.returncode

    def report(self) -> dict | None:
        """{cpu_seconds, wall_seconds, peak_memory (bytes)}; None before the end."""
        if self.ended is None or not self.seen:
            return None
        return {"cpu_seconds": round(self.cpu_seconds, 3), "wall_seconds": round(self.ended - self.started, 3),
                "peak_memory": self.peak_memory}


class Plain:
    def __init__(self, spec: dict, log, preexec):
        self.run = RunUsage()
        self.proc = subprocess.Popen(
            spec["argv"], cwd=spec["workdir"], env=spec["env"], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=preexec,
        )
        self.pid = self.proc.pid  # the user's process group

    def poll(self) -> int | None:
        self.run.watch(self.pid)
        return self.run.reap(self.proc)

    def usage(self) -> dict | None:
        return self.run.report()

    def signal(self, sig: int) -> None:
        _killpg(self.pid, sig)

    def kill(self) -> None:
        _killpg(self.pid, signal.SIGKILL)

    def out_of_memory(self) -> bool:
        return False

    def close(self) -> None:
        pass


class Sandboxed:
    def __init__(self, spec: dict, log):
        from nsml.scheduler import bwrap, limits

        conf = confinement(spec)
        lim = dict(spec.get("limits") or {})
        known = lim.pop("backend", None)
        if known:  # what the executor found when the server started
            backend = limits.Backend(known["name"], Path(known["v2_parent"]) if known.get("v2_parent") else None,
                                     tuple((c, Path(p)) for c, p in known.get("v1_parents", ())))
        else:
            backend = limits.detect() if os.geteuid() == 0 else limits.Backend("rlimit")
        # Unique even when the pid is reused: a group left behind by a killed supervisor must not
        # hand its limits or its OOM count to a new session.
        self.group = backend.group(f"session-{os.getpid()}-{os.urandom(4).hex()}", limits.Limits(**lim))
        log.flush()
        before = os.fstat(log.fileno()).st_size  # the environment build's lines stay
        for attempt in range(SETUP_TRIES):
            started = time.monotonic()
            self.run = RunUsage()
            self.box = bwrap.start(conf, spec["argv"], stdout=log, preexec_fn=self.group.preexec,
                                   marker={"NSML_SPOOL": spec["spool"]})
            user = self._user_pid()
            # Under load bubblewrap sometimes fails to set up the loopback device of a new
            # network namespace ("loopback: Failed RTM_NEWADDR"), before the user's code starts:
            # no user process was ever seen and it ended at once with bubblewrap's status 1.
            # Only then is it tried again: the user's code must never run twice.
            if user is None and self.run.reap(self.box.proc) == 1 and time.monotonic() - started < 2:
                # Not the user's business: bubblewrap's complaint leaves the session's log (not
                # shipped yet) for the supervisor's own.
                os.ftruncate(log.fileno(), before)
                print(f"nsml supervisor: the sandbox failed to start (try {attempt + 1}); trying again", flush=True)
                continue
            break
        self.pid = user or self.box.pid

    def _user_pid(self, wait: float = 2.0) -> int | None:
        """The user's process (a process group leader: bubblewrap's --new-session), on the
        host's side of the PID namespace: the child of bubblewrap's init."""
        init = self.box.child_pid
        if not init:
            return None
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                children = Path(f"/proc/{init}/task/{init}/children").read_text().split()
            except OSError:
                return None
            if children:
                return int(children[0])
            if self.run.reap(self.box.proc) is not None:  # keeps a quick run's usage
                return None
            time.sleep(0.005)
        return None

    def poll(self) -> int | None:
        if self.pid != self.box.pid:  # the user's process, seen from this side
            self.run.watch(self.pid)
        code = self.run.reap(self.box.proc)
        if code is not None:
            self.box.poll()  # ends the network helper with it
        return code

    def usage(self) -> dict | None:
        return self.run.report()

    def signal(self, sig: int) -> None:
        if self.pid != self.box.pid:
            _killpg(self.pid, sig)
        else:
            _killpg(self.box.pid, sig)

    def kill(self) -> None:
        _killpg(self.box.pid, signal.SIGKILL)
        self.box.close()

    def out_of_memory(self) -> bool:
        return self.group.oom_killed()

    def close(self) -> None:
        self.box.close()
        self.group.remove()


def confinement(spec: dict, **changes):
    """The session's sandbox from its spec (LocalExecutor.confinement wrote it)."""
    from dataclasses import replace

    from nsml.scheduler import bwrap

    box = spec["sandbox"]
    conf = bwrap.Confinement(
        workdir=Path(box["workdir"]), spool=Path(box["spool"]), readonly=tuple(box.get("readonly", ())),
        dataset=(box["dataset"][0], Path(box["dataset"][1])) if box.get("dataset") else None,
        uid=box.get("uid"), network=bool(box.get("network")), devices=tuple(box.get("devices", ())),
        shm_bytes=box.get("shm_bytes"), env=spec["env"], refused=tuple(box.get("refused", ())),
    )
    return replace(conf, **changes) if changes else conf


def host_path(spec: dict, inside: str) -> str | None:
    """Where a path the session names inside its sandbox (/run/nsml/...) is on this side, as a
    path relative to the supervisor's working directory (its run directory): Unix socket paths
    are limited to about 100 bytes, and NSML_HOME can be deep. None if it is not in the spool."""
    from nsml.scheduler import bwrap

    prefix = bwrap.SPOOL + "/"
    if not inside.startswith(prefix) or "/" in inside[len(prefix):] or inside.endswith("/.."):
        return None
    return os.path.join("spool", inside[len(prefix):])


def start(spec: dict, log, preexec=None):
    if spec.get("sandbox"):
        return Sandboxed(spec, log)
    return Plain(spec, log, preexec)


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
