"""The user process as the supervisor sees it: started, signalled, killed, waited for.

Two kinds behind one small interface:

- `Plain`: a subprocess in a process group of its own (no sandbox: `--sandbox none`);
- `Sandboxed`: the same inside bubblewrap (nsml.scheduler.bwrap), with its limits (cgroups or
  rlimits, nsml.scheduler.limits). bubblewrap does not pass signals on, so SIGTERM (`nsml stop`:
  the library writes its journal, the script's `finally` blocks run) goes straight to the
  user's process group inside the sandbox, found through bubblewrap's info pipe; SIGKILL ends
  bubblewrap itself, which takes the whole PID namespace with it.
"""

import os
import signal
import subprocess
import time
from pathlib import Path

SETUP_TRIES = 3


class Plain:
    def __init__(self, spec: dict, log, preexec):
        self.proc = subprocess.Popen(
            spec["argv"], cwd=spec["workdir"], env=spec["env"], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=preexec,
        )
        self.pid = self.proc.pid  # the user's process group

    def poll(self) -> int | None:
        return self.proc.poll()

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
            self.box = bwrap.start(conf, spec["argv"], stdout=log, preexec_fn=self.group.preexec,
                                   marker={"NSML_SPOOL": spec["spool"]})
            user = self._user_pid()
            # Under load bubblewrap sometimes fails to set up the loopback device of a new
            # network namespace ("loopback: Failed RTM_NEWADDR"), before the user's code starts:
            # no user process was ever seen and it ended at once with bubblewrap's status 1.
            # Only then is it tried again: the user's code must never run twice.
            if user is None and self.box.proc.poll() == 1 and time.monotonic() - started < 2:
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
            if self.box.proc.poll() is not None:
                return None
            time.sleep(0.005)
        return None

    def poll(self) -> int | None:
        return self.box.poll()

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
        shm_bytes=box.get("shm_bytes"), env=spec["env"],
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
