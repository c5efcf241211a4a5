"""Session states and the transitions allowed between them."""

from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    EXITED = "exited"  # the entry file ended with exit code 0
    FAILED = "failed"  # non-zero exit code, or the session could not be started
    STOPPED = "stopped"  # ended by `nsml stop`


FINAL = frozenset({Status.EXITED, Status.FAILED, Status.STOPPED})
ACTIVE = frozenset({Status.QUEUED, Status.RUNNING})
# `nsml resume` queues an ended session again, as its next attempt under the same name. That is
# its own transition (SessionsMixin.start_attempt), not one of can_move's: nothing else may bring
# an ended session back. An exited session finished its work; fork it to train further.
RESUMABLE = frozenset({Status.STOPPED, Status.FAILED})

_ALLOWED = {
    Status.QUEUED: {Status.RUNNING, Status.FAILED, Status.STOPPED},
    Status.RUNNING: {Status.EXITED, Status.FAILED, Status.STOPPED},
}


def can_move(current: Status, new: Status) -> bool:
    return new in _ALLOWED.get(current, set())


def final_status(exit_code: int, stopped: bool) -> Status:
    """What a session became once its process ended."""
    if stopped:
        return Status.STOPPED
    return Status.EXITED if exit_code == 0 else Status.FAILED
