"""Preemption: what the server does with a preemptible session placement chose to make way for
the head of the queue (nsml.scheduler.placement, Plan.preempt).

A session whose script can pause (a bound save) is paused through it and queued again from that
checkpoint as its next attempt (nsml.server.pausing, requeue=True), keeping its name, with the
preemption in its status history. One that cannot pause is stopped, with a line in its log
saying so: its GPUs are wanted, and whatever checkpoints it saved stay for `nsml resume`.
"""

import logging

from nsml.core.entities import Session
from nsml.core.errors import Conflict, NsmlError
from nsml.core.states import Status

from . import pausing
from .state import ServerState

log = logging.getLogger("nsml.preemption")


def preempt(st: ServerState, victim: Session, head: str) -> None:
    reason = f"preempted: {head} needs its resources"
    try:
        pausing.request_pause(st, victim, reason=reason, requeue=True)
        return
    except Conflict:
        if st.store.session_by_id(victim.id).status != Status.RUNNING:
            return  # it ended meanwhile: nothing to take back
    except NsmlError as exc:
        log.info("preempting %s: %s", victim.name, exc)
    st.executor.note(victim, f"[nsml] {reason}; its script cannot pause (no bound save), so it is stopped. "
                             f"Its checkpoints are kept: nsml resume {victim.name} runs it again from the latest.")
    st.executor.stop(victim)


def bring_back_lost(st: ServerState, session: Session) -> None:
    """A preemptible session lost with its node (or its supervisor) comes back on its own, from
    its latest checkpoint, as its next attempt: it agreed to be stopped at any time, so losing
    it is one more such stop. A regular session waits for its owner's `nsml resume`; an AutoML
    trial for its study's driver, which resumes lost trials first (nsml.server.automl)."""
    if not session.preemptible or _is_trial(st, session):
        return
    from .relaunch import resume_session

    try:
        resume_session(st, session, why="lost with its node")
    except NsmlError as exc:  # no checkpoint yet, or resumed by its owner meanwhile
        st.log_note(session.id, f"[nsml] the session was lost and cannot come back on its own: {exc}")


def _is_trial(st: ServerState, session: Session) -> bool:
    """Whether a live study runs this session as one of its trials (rare to ask: on a loss)."""
    return any(t.session_id == session.id for study in st.store.studies() for t in st.store.trials(study.id))
