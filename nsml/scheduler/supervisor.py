"""The supervisor: parent of one session's user process, and its only link to the server.

Started by the local executor as `python -m nsml.scheduler.supervisor SPEC.json` in a process
group of its own, so it outlives a server restart. It starts the user process at once (before
importing anything slow), then ships the log, the metrics journal and checkpoints by byte
offset (shipper.py), and holds the channel on which `nsml exec` and `nsml sh` requests reach
the session (channel.py). SIGTERM means `nsml stop`: it forwards the signal to the user's
process group, and kills it after a grace period.

It also measures the run for its end-of-run usage sample (nsml.scheduler.usage): one reading of
the user's process group soon after the start, and what the kernel counted for the whole run
(userproc.RunUsage); both go with the exit report, since nothing of the run is left to read
once the server hears of its end.
"""

import json
import os
import signal
import sys
import time
from pathlib import Path

from nsml.core.states import SUBMIT_KINDS
from nsml.scheduler.session_files import read_stage
from nsml.scheduler.shipper import GRACE_SECONDS, Shipper, _note
from nsml.scheduler.usage import FIRST_READING_AFTER, first_reading

POLL_SECONDS = 0.2


def start_user_process(spec: dict):
    """The user process, sandboxed when the spec says so (nsml.scheduler.userproc)."""
    from nsml.scheduler import userproc

    with open(log_path(spec), "ab") as log:  # the child keeps its own copy
        return userproc.start(spec, log, preexec=user_preexec(spec))


def log_path(spec: dict) -> Path:
    """The session's log: beside the spool, not in it (the session could swap a file in its
    spool for a link to one it must not read); older specs kept it in the spool."""
    return Path(spec["log"]) if spec.get("log") else Path(spec["spool"]) / "output.log"


def user_preexec(spec: dict):
    """What the user process (and `nsml sh`) runs under: the dataset view read-only even for
    root, the blob store hidden (see sandbox.py); None where nothing is to be hidden."""
    if not (spec.get("readonly") or spec.get("hidden")):
        return None
    from nsml.scheduler.sandbox import preexec_readonly

    return preexec_readonly(spec.get("readonly", []), spec.get("hidden", []))


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    stop_requested = {"at": None}

    def on_term(_sig, _frame):
        stop_requested["at"] = stop_requested["at"] or time.monotonic()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    gateway = None
    if spec.get("sandbox"):  # the sandboxed library asks its supervisor for what it needs
        from nsml.scheduler.gateway import Gateway

        gateway = Gateway(spec)
        gateway.bind()
    proc = start_user_process(spec)
    Path(spec.get("user_pid") or Path(spec["spool"], "user.pid")).write_text(str(proc.pid))
    shipper = Shipper(spec, stop_requested)
    shipper.guard(proc)  # a stop ends the user process in time, whatever the shipping is doing
    shipper.start_heartbeat()
    if gateway is not None:
        gateway.shipper = shipper
        gateway.start()
    from nsml.scheduler.channel import Channel

    channel = Channel(spec, shipper, preexec=user_preexec(spec))  # nsml exec and nsml sh
    channel.start()
    parent = os.getppid() if spec.get("die_with_parent") else None
    signalled = killed = False
    deadline = time.monotonic() + spec["paused_timeout"] if spec.get("paused_timeout") else None
    timed_out = False
    first = None  # (monotonic time, CPU %, resident bytes) of the user's group soon after its start
    looks = 0  # a few tries only: each is a pass over /proc
    while True:
        code = proc.poll()
        if first is None and looks < 5 and code is None and time.monotonic() - proc.run.started >= FIRST_READING_AFTER:
            looks += 1
            reading = first_reading(proc.pid)
            first = (time.monotonic(), *reading) if reading else None
        if deadline and code is None and time.monotonic() > deadline:
            deadline = None
            if read_stage(spec) is None:  # the script never reached nsml.paused()
                timed_out = True
                _note(shipper.log, f"[nsml] main.py did not call nsml.paused() within {spec['paused_timeout']:.0f} s; "
                      "the session was ended.")
                stop_requested["at"] = time.monotonic() - GRACE_SECONDS  # no grace: it is not saving anything
        if stop_requested["at"] is not None and code is None:
            if not signalled:
                proc.signal(signal.SIGTERM)
                signalled = True
            elif not killed and time.monotonic() - stop_requested["at"] > GRACE_SECONDS:
                proc.kill()
                killed = True
        shipper.ship_log()
        shipper.ship_journal()
        if parent is not None and os.getppid() != parent:
            # The Ray actor that started us is gone (its node was lost, or the server killed
            # it): the session ends here and now, reporting nothing; the server marks it lost.
            channel.close()
            proc.kill()
            proc.close()
            return 0
        if shipper.gone:  # the session was removed on the server: nothing left to serve
            channel.close()
            proc.kill()
            proc.close()
            return 0
        if code is not None:
            break
        time.sleep(POLL_SECONDS)
    channel.close()
    proc.kill()  # children the entry file left behind
    reason = "Out of memory" if proc.out_of_memory() else ""
    proc.close()
    if spec.get("sandbox") and 128 < code < 160:
        code = 128 - code  # bubblewrap reports a signal as 128 + N, as a shell does
    shipper.ship_log()
    shipper.ship_journal(now=True)
    shipper.ship_outputs()
    relaunch = None
    if spec.get("kind", "normal") != "normal":
        relaunch = read_stage(spec) or {"stage": "", "error": ""}
        relaunch["timed_out"] = timed_out
        if spec["kind"] in SUBMIT_KINDS:
            shipper.ship_prediction()
    shipper.ship_log()
    if reason:
        _note(shipper.log, f"[nsml] the session ran out of memory (its limit: {spec['limits']['memory_bytes']} bytes) and was killed.")
        shipper.ship_log()
    shipper.report_exit(code, stopped=stop_requested["at"] is not None and not timed_out, relaunch=relaunch, reason=reason,
                        usage=run_usage(proc, first))
    return 0


def run_usage(proc, first: tuple[float, float, int] | None) -> dict | None:
    """The exit report's `usage`: the run's totals (userproc.RunUsage) and the early reading,
    dated by how long before this report it was taken; None when the totals are unknown."""
    totals = proc.usage()
    if totals is None:
        return None
    if first is not None:
        totals["first"] = {"ago": round(time.monotonic() - first[0], 3), "cpu": first[1], "memory": first[2]}
    return totals


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
