"""Stop-and-go: a running session checkpointed, its resources released, and brought back later
from that checkpoint under its name (docs/scheduler.md, "Stop-and-go").

`request_pause` is the one way in, for `nsml pause` and for preemption (requeue=True). The
request is recorded on the session row first (Session.pause_requested: it survives a restart,
and the scheduler sees which running sessions are already on their way out), then SIGUSR1 goes
to the script's process; the library there (nsml.client.stopgo) saves checkpoint
`paused-<time>` through the bound save, reports it in the journal and exits. From then on:

- its exit report (`end_if_paused`, from the exit route): a session that paused at a checkpoint
  the server holds ends `paused`, with "paused at checkpoint C" in its status history;
  `settle` then queues a preempted one again from that checkpoint, as its next attempt (what
  `nsml resume` does), and forgets the request either way;
- the scheduler's reconcile (`watch`, every few seconds on the server that schedules): a save
  that failed leaves a paused session running (the request is dropped with the error in its
  history and log) and stops a preempted one, whose resources are wanted; a session that has
  not ended `pause_grace` seconds after the request (NSML_PAUSE_GRACE) is stopped the normal
  way (SIGTERM, SIGKILL 10 s later); and on taking the lease the signal is sent again for
  requests a restart may have cut off (the library ignores a repeated one).

Only a session whose script said it can pause (Session.pausable: a save is bound and the
library handles SIGUSR1, which would otherwise end the process on the spot) is signalled;
any other running session gets a refusal saying why and what to do. A queued session is paused
at once (it has nothing to save) and `nsml resume` queues it again.
"""

import logging
import signal
import threading
import time

from nsml.core.entities import Session
from nsml.core.errors import Conflict, InvalidInput, NotFound, NsmlError
from nsml.core.states import FINAL, PauseRequest, Status

from .state import ServerState

log = logging.getLogger("nsml.pausing")

NOT_PAUSABLE = ("Session {name} cannot be paused: its script has not bound a save function (nsml.bind(save=...)), "
                "or handles SIGUSR1 itself, so a pause would lose everything since its last checkpoint. Bind a save "
                "(and call nsml.paused(scope=locals()) when --pause is 1, so that nsml resume loads it), "
                "or end the session with nsml stop {name}.")
ENDED = "Session {name} has already {status}; only a running or queued session can be paused."
GRACE_PASSED = "[nsml] the session did not pause within {grace:.0f} s of the request; it is stopped."

_lock = threading.Lock()
_stopping: dict[int, set[tuple[int, int]]] = {}  # per server state: (session id, attempt) stopped by watch


def request_pause(st: ServerState, session: Session, *, reason: str, requeue: bool = False) -> Session:
    """Pause `session` at a checkpoint of its bound save; returns it as it is now.

    `reason`: the note its status history gets for the request ("pause requested by alice",
    "preempted: bob/mnist/4 needs 2 GPUs"). `requeue=True` (preemption): once paused it is
    queued again at once, from that checkpoint, as its next attempt under the same name.

    A running session answers at once with `pause_requested` set; it ends `paused` once its
    script has saved (or is stopped after the grace period). A queued one is paused at once
    (with requeue=True it is left queued: it holds nothing). Conflict (409) for a running
    session that cannot be paused (not `pausable`) and for one that has ended; InvalidInput for
    a submit or infer session. A repeated request changes nothing, except that a pause
    outranks a preemption under way (the session then stays paused)."""
    from .relaunch import RESUMABLE_KINDS  # here: relaunch imports the sessions router, which imports this

    if session.kind not in RESUMABLE_KINDS:
        raise InvalidInput(f"Session {session.name} is a {session.kind} session; only training sessions (run, fork) "
                           "can be paused. End it with nsml stop.")
    if session.status == Status.QUEUED:
        if requeue:
            return session  # it holds nothing for anyone to take
        paused = st.store.pause_queued(session.id, f"{reason} (before it started)")
        if paused is None:
            return request_pause(st, _fresh(st, session), reason=reason)  # it has just started (or ended)
        st.scheduler.wake()
        return paused
    if session.status in FINAL:
        raise Conflict(ENDED.format(name=session.name, status=session.status.value))
    if not session.pausable:
        raise Conflict(NOT_PAUSABLE.format(name=session.name))
    at = time.time()
    kind = PauseRequest.PREEMPT if requeue else PauseRequest.PAUSE
    requested = st.store.request_pause(session.id, kind, at, reason)
    if requested is None:  # it ended meanwhile
        fresh = _fresh(st, session)
        raise Conflict(ENDED.format(name=fresh.name, status=fresh.status.value))
    if requested.pause_requested_at == at:  # a new request, not a repeated one
        st.executor.note(requested, f"[nsml] {reason}: checkpointing through the bound save, then ending the session.")
        if not st.executor.signal(requested, signal.SIGUSR1):
            log.info("%s: nothing to signal for its pause (ending already); its exit settles the request", session.name)
    return requested


def _fresh(st: ServerState, session: Session) -> Session:
    try:
        return st.store.session_by_id(session.id)
    except NotFound:
        raise NotFound(f"Session {session.name} does not exist.") from None


def end_if_paused(st: ServerState, session: Session, exit_code: int) -> Session | None:
    """At the exit report of a running session: `paused` if its script saved the checkpoint of
    a pause and the server holds it (whatever ended the process then: the library's exit, or a
    stop after the grace period); None to end it the ordinary way. A session may have paused
    without a request (a SIGUSR1 from inside it, `nsml sh`): it is paused all the same."""
    name = session.pause_checkpoint
    if session.status != Status.RUNNING or not name:
        return None
    if all(c.name != name for c in st.store.list_checkpoints(session.id)):
        # Its supervisor shipped its last log before this exit report: the server writes the line.
        st.log_note(session.id, f"[nsml] the pause checkpoint {name} did not reach the server; the session ends as it would have.")
        return None
    return st.store.move_session(session.id, Status.PAUSED, note=f"paused at checkpoint {name}", exit_code=exit_code,
                                 ended=time.time(), error="")


def settle(st: ServerState, session: Session) -> Session:
    """After an exit is recorded: a preempted session that paused (or was stopped) is queued
    again from its latest checkpoint; the request is forgotten either way."""
    if not session.pause_requested:
        return session
    if session.pause_requested == PauseRequest.PREEMPT and session.status in (Status.PAUSED, Status.STOPPED):
        from .relaunch import resume_session

        try:
            return resume_session(st, session, why="preempted")
        except NsmlError as exc:
            st.store.set_error(session.id, f"Preempted, but it could not be queued again: {exc}")
    note = "" if session.status == Status.PAUSED else \
        f"the pause did not happen: the session ended ({session.status.value}) before saving its pause checkpoint"
    return st.store.clear_pause_request(session.id, note)


def watch(st: ServerState, running: list[Session], at_startup: bool) -> None:
    """The scheduler's reconcile over running sessions with a request pending (see the module
    docstring). Each is stopped at most once per attempt by this server."""
    now, grace = time.time(), st.settings.pause_grace
    with _lock:
        stopping = _stopping.setdefault(id(st), set())
        stopping &= {(s.id, s.attempt) for s in running}
    for s in running:
        if not s.pause_requested or (s.id, s.attempt) in stopping:
            continue
        if s.pause_error and not s.pause_checkpoint:
            if s.pause_requested == PauseRequest.PAUSE:
                st.store.clear_pause_request(s.id, f"pause failed: {s.pause_error}; the session keeps running")
                st.executor.note(s, f"[nsml] the pause failed ({s.pause_error}); the session keeps running: fix its save "
                                    f"function, or end it with nsml stop {s.name}.")
                continue
            _stop(st, s, stopping, f"[nsml] the pause failed ({s.pause_error}); the session is stopped, "
                                   "its resources being needed, and queued again from its latest checkpoint.")
            continue
        if now - (s.pause_requested_at or now) > grace:
            _stop(st, s, stopping, GRACE_PASSED.format(grace=grace))
        elif at_startup and not s.pause_checkpoint:
            st.executor.signal(s, signal.SIGUSR1)  # the request may have been made just before a restart


def _stop(st: ServerState, session: Session, stopping: set, line: str) -> None:
    with _lock:
        stopping.add((session.id, session.attempt))
    st.executor.note(session, line)
    st.executor.stop(session)
