"""Session kinds, session states and submission states, with the transitions allowed between them.

Each is a StrEnum: it is stored and sent as its value, and compares equal to it, so records
read back from the store or the API need no conversion. Transitions live in tables here and
nowhere else; the store refuses a move the table does not hold.
"""

from enum import StrEnum


class SessionKind(StrEnum):
    NORMAL = "normal"  # nsml run
    FORK = "fork"  # nsml fork: the source's code relaunched from one of its checkpoints
    SUBMIT = "submit"  # nsml submit: scored on the hidden test set, ranked on the board
    SUBMIT_TEST = "submit_test"  # nsml submit -t: scored, never ranked
    INFER = "infer"  # nsml infer: the model served until stopped
    AUTOML = "automl"  # nsml automl run: a study's parent; it runs nothing itself, its trials are its children


SUBMIT_KINDS = frozenset({SessionKind.SUBMIT, SessionKind.SUBMIT_TEST})
# Kinds that hold the hidden test data (submit) or serve one model (infer): no network, and a
# time limit to reach nsml.paused().
RELAUNCH_KINDS = frozenset({SessionKind.FORK, *SUBMIT_KINDS, SessionKind.INFER})


class PauseRequest(StrEnum):
    """A running session's pending stop-and-go request (Session.pause_requested; nsml.server.pausing)."""

    NONE = ""
    PAUSE = "pause"  # nsml pause: checkpoint, end as paused, wait for nsml resume
    PREEMPT = "preempt"  # preemption: the same, then queued again from that checkpoint at once


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    EXITED = "exited"  # the entry file ended with exit code 0
    FAILED = "failed"  # non-zero exit code, or the session could not be started
    STOPPED = "stopped"  # ended by `nsml stop`, or by the platform (its time limit)
    PAUSED = "paused"  # set aside with its resources released, to be resumed (stop-and-go)
    LOST = "lost"  # its supervisor (or node) stopped answering: the platform lost track of it


ACTIVE = frozenset({Status.QUEUED, Status.RUNNING})
# Not active: runs nothing and holds nothing. PAUSED and LOST may come back through resume.
FINAL = frozenset({Status.EXITED, Status.FAILED, Status.STOPPED, Status.PAUSED, Status.LOST})
# `nsml resume` queues an ended session again, as its next attempt under the same name. That is
# its own transition (SessionsMixin.start_attempt), not one of can_move's: nothing else may bring
# an ended session back. An exited session finished its work; fork it to train further.
RESUMABLE = frozenset({Status.STOPPED, Status.FAILED, Status.PAUSED, Status.LOST})

TRANSITIONS: dict[Status, frozenset[Status]] = {
    # QUEUED -> PAUSED: `nsml pause` of a session that has not started (nothing to checkpoint).
    Status.QUEUED: frozenset({Status.RUNNING, Status.FAILED, Status.STOPPED, Status.PAUSED}),
    Status.RUNNING: frozenset({Status.EXITED, Status.FAILED, Status.STOPPED, Status.PAUSED, Status.LOST}),
}


def can_move(current: Status, new: Status) -> bool:
    return new in TRANSITIONS.get(current, frozenset())


def final_status(exit_code: int, stopped: bool) -> Status:
    """What a session became once its process ended."""
    if stopped:
        return Status.STOPPED
    return Status.EXITED if exit_code == 0 else Status.FAILED


class SubmissionStatus(StrEnum):
    RUNNING = "running"  # its submit session runs the model over the test data
    EVALUATING = "evaluating"  # the server's evaluator scores the predictions
    SCORED = "scored"
    FAILED = "failed"


SUBMISSION_TRANSITIONS: dict[SubmissionStatus, frozenset[SubmissionStatus]] = {
    SubmissionStatus.RUNNING: frozenset({SubmissionStatus.EVALUATING, SubmissionStatus.FAILED}),
    SubmissionStatus.EVALUATING: frozenset({SubmissionStatus.SCORED, SubmissionStatus.FAILED}),
}  # scored and failed are final: a supervisor that retries its report must not score twice
# (rescoring after an evaluator change updates the score, not the state)


SUBMISSION_FINAL = frozenset({SubmissionStatus.SCORED, SubmissionStatus.FAILED})


def can_move_submission(current: str, new: str) -> bool:
    return SubmissionStatus(new) in SUBMISSION_TRANSITIONS.get(SubmissionStatus(current), frozenset())
