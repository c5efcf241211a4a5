"""Fork, submit and infer: new sessions that relaunch a session's code at one of its checkpoints;
resume: the same session again, as its next attempt, from its latest checkpoint.

The relaunched process gets the original entry and arguments plus the reserved ones (see
nsml.scheduler.local.reserved_args), and ``nsml.paused()`` does the rest inside it
(nsml.client.protocol). This module decides what to start, and finishes a submit once its
process has written its predictions: the evaluator scores them outside the user's process.
"""

import logging
import os
import threading
import time
from pathlib import Path

from nsml.core.entities import Checkpoint, Session, Submission
from nsml.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from nsml.core.resources import Resources
from nsml.core.states import ACTIVE, FINAL, RESUMABLE, SUBMIT_KINDS, SessionKind, Status, SubmissionStatus
from nsml.scheduler import admission, evaluator

from . import rescoring
from .api.sessions import tail_lines
from .state import ServerState

log = logging.getLogger("nsml.relaunch")
LOG_TAIL_LINES = 15


def pick_checkpoint(st: ServerState, session: Session, name: str | None) -> Checkpoint:
    """The named checkpoint, or the latest one; a clear error listing what exists."""
    if name:
        return st.store.get_checkpoint(session, name)
    checkpoints = st.store.list_checkpoints(session.id)
    if not checkpoints:
        still = " It is still running: its first nsml.save() has not reached the server yet." if session.status in ACTIVE else ""
        raise NotFound(f"Session {session.name} has no checkpoint.{still} `nsml model ls {session.name}` lists them once saved.")
    return max(checkpoints, key=lambda c: c.created)


def relaunch(
    st: ServerState, source: Session, kind: str, checkpoint: str, user: str, args: str | None = None,
    resources: Resources | None = None, dataset: str | None = None, batch_size: int = 0,
    trial_id: int | None = None, memo: str = "", preemptible: bool = False,
) -> Session:
    if source.code_fileset_id is None:
        raise Conflict(f"Session {source.name}'s code is still uploading; try again in a moment.")
    resources = resources or admission.like(source.resources, st.nodes)
    admission.admit(resources, st.nodes, source.gpu_model if resources.gpus else "", idle_ok=kind == SessionKind.INFER)
    memo = memo or f"{kind} of {source.name} at checkpoint {checkpoint}"
    session = st.store.create_session(
        user, dataset or source.dataset, source.entry, source.args if args is None else args, resources, memo,
        source.image, source.code_fileset_id, kind=kind, source=source.name, source_checkpoint=checkpoint,
        shm_size=source.shm_size, batch_size=batch_size,
        # A fork, submit or infer session is read by those who read its source.
        team=source.team, visibility=source.visibility,
        # On the GPU model its source asked for, and at its priority (which its owner was allowed).
        gpu_model=source.gpu_model if resources.gpus else "", priority=source.priority,
        trial_id=trial_id, preemptible=preemptible,  # PBT: an AutoML trial's child, linked in the same transaction
    )
    st.scheduler.wake()
    return session


# -- resume ---------------------------------------------------------------------------------------
RESUMABLE_KINDS = (SessionKind.NORMAL, SessionKind.FORK)  # training sessions; a submit or infer is started afresh


def resume_session(st: ServerState, session: Session, why: str = "") -> Session:
    """Queue a stopped, failed, paused or lost session again, under its name, as its next
    attempt: relaunched with its original arguments plus `--pause 1 --iteration C` (C: its
    latest checkpoint: for a paused session, the one it paused at), so nsml.paused() loads C
    and training goes on. Its log continues after a marker line, its metrics in the same
    series, its status history keeps the earlier attempts.

    The one way an ended session comes back: `nsml resume`, and a preemption once its session
    has paused (nsml.server.pausing; `why`: 'preempted', put before the history's note). A
    session paused before it started is queued again as the same attempt."""
    if session.status in ACTIVE:
        raise Conflict(f"Session {session.name} is {session.status.value}; nsml resume restarts a stopped or failed session "
                       f"(nsml stop {session.name} first to restart it).")
    if session.kind not in RESUMABLE_KINDS:
        again = "nsml submit" if session.kind in SUBMIT_KINDS else "nsml infer"
        raise InvalidInput(f"Session {session.name} is a {session.kind} session; nsml resume restarts training sessions "
                           f"(run or fork). Start it again with {again}.")
    if session.status == Status.PAUSED and session.started is None:  # paused while queued: nothing ran
        queued = st.store.requeue_paused(session.id, f"{why + ': ' if why else ''}queued again (it was paused before it started)")
        if queued is None:
            raise Conflict(f"Session {session.name} was just resumed or removed by another command; see nsml ps -a.")
        st.scheduler.wake()
        return queued
    if session.status not in RESUMABLE:
        raise Conflict(f"Session {session.name} has exited: it finished its work, so there is nothing to resume. "
                       f"Train further with nsml fork {session.name} (from its latest checkpoint).")
    checkpoints = st.store.list_checkpoints(session.id)
    if not checkpoints:
        raise Conflict(f"Session {session.name} has no checkpoint to resume from (its script never called nsml.save()). "
                       f"Start it afresh with nsml run.")
    if session.code_fileset_id is None:
        raise Conflict(f"Session {session.name}'s code was never stored; start it afresh with nsml run.")
    admission.admit(session.resources, st.nodes, session.gpu_model)
    latest = max(checkpoints, key=lambda c: c.created).name
    note = f"{why + ': ' if why else ''}resumed from checkpoint {latest} (attempt {session.attempt + 1})"
    path = st.logs_dir / f"{session.id}.log"
    with st.log_lock:  # the ended attempt shipped all its log already; nothing else writes it
        size = path.stat().st_size if path.exists() else 0
        marker = f"[nsml] {note}\n".encode()
        if size and not _ends_with_newline(path, size):
            marker = b"\n" + marker
        with open(path, "ab") as f:
            f.write(marker)
        resumed = st.store.start_attempt(session.id, latest, size + len(marker), note)
        if resumed is None:  # resumed (or removed) by someone else meanwhile: take the marker back
            os.truncate(path, size)
    if resumed is None:
        raise Conflict(f"Session {session.name} was just resumed or removed by another command; see nsml ps -a.")
    st.scheduler.wake()
    return resumed


def _ends_with_newline(path: Path, size: int) -> bool:
    with open(path, "rb") as f:
        f.seek(size - 1)
        return f.read(1) == b"\n"


# -- submit ---------------------------------------------------------------------------------------
_submit_guard = threading.Lock()
TEST_WINDOW = 3600.0  # seconds: test submits are counted per hour


def start_submit(st: ServerState, source: Session, checkpoint: str, test: bool, user: str, batch_size: int | None = None) -> Submission:
    """`batch_size` (submit -b): passed to the dataset's data loader and the bound infer where
    their signatures take a batch_size (nsml.client.predict)."""
    if batch_size is not None and batch_size < 1:
        raise InvalidInput(f"The batch size must be a positive number of rows (-b 32, say), not {batch_size}.")
    if source.owner != user:
        raise Forbidden(f"Session {source.name} belongs to {source.owner}; you can submit only your own sessions.")
    if not source.has_dataset:
        raise InvalidInput(f"Session {source.name} was run without a dataset (-d), so there is no leaderboard to submit it to.")
    dataset = st.store.get_dataset(source.dataset)
    if not dataset.has_leaderboard:
        raise InvalidInput(
            f"Dataset '{dataset.name}' has no leaderboard, so there is nothing to score a submit against. "
            f"Its owner can add one: nsml dataset push -f --leaderboard [--metric …] {dataset.name} PATH."
        )
    ckpt = pick_checkpoint(st, source, checkpoint)
    with _submit_guard:  # checked and recorded together: parallel requests cannot slip past a limit
        _check_rate(st, dataset, user, test)
        runner = relaunch(st, source, SessionKind.SUBMIT_TEST if test else SessionKind.SUBMIT, ckpt.name, user, batch_size=batch_size or 0)
        return st.store.create_submission(dataset.name, user, source.name, ckpt.name, test, runner.id)



def _check_rate(st: ServerState, dataset, user: str, test: bool) -> None:
    """Ranked submits: one per the dataset's submit interval. Test submits (-t): a count per hour
    (settings.test_submits_per_hour), since each says whether the evaluator returned a number."""
    if test:
        allowed = st.settings.test_submits_per_hour
        if allowed <= 0:
            raise Forbidden("Test submits (nsml submit -t) are turned off on this server (NSML_TEST_SUBMITS_PER_HOUR=0).")
        recent = st.store.test_submit_times(dataset.name, user, time.time() - TEST_WINDOW)
        if len(recent) >= allowed:
            wait = recent[len(recent) - allowed] + TEST_WINDOW - time.time()
            raise Conflict(
                f"Dataset '{dataset.name}' takes {allowed} test submits (-t) per hour from each user; "
                f"you can test-submit again in {_duration(wait)}."
            )
        return
    if dataset.submit_interval > 0:
        last = st.store.last_ranked_submit(dataset.name, user)
        wait = (last or 0) + dataset.submit_interval - time.time()
        if last is not None and wait > 0:
            raise Conflict(
                f"Dataset '{dataset.name}' takes one ranked submit per {_duration(dataset.submit_interval)} from each user; "
                f"you can submit again in {_duration(wait)}. `nsml submit -t` (not ranked) has a limit of its own."
            )


def _duration(seconds: float) -> str:
    seconds = max(1, round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def prediction_path(st: ServerState, session: Session) -> Path:
    """Where the predictions of submit session `session` are kept: by submission, so they outlive
    the submit session (`nsml rm`) and the board can be re-scored when its metric changes."""
    submission = st.store.submission_of_runner(session.id)
    return rescoring.prediction_file(st, submission) if submission else rescoring.predictions_dir(st) / f"{session.id}.txt"


def on_exit(st: ServerState, session: Session, exit_code: int, stopped: bool, relaunch_state: dict | None) -> None:
    """A relaunched session ended: record why a relaunch failed; score a submit that finished."""
    if session.resumed_from:
        return  # a resumed fork is trained on its own checkpoint; its exit is an ordinary one
    stage = relaunch_state or {}
    problem = _failure(st, session, exit_code, stopped, stage)
    if problem and session.kind in (SessionKind.FORK, SessionKind.INFER):
        st.store.set_error(session.id, f"{problem[0]} failed: {_last_line(problem[1])}" if problem[0] else problem[1])
    if session.kind not in SUBMIT_KINDS:
        return
    submission = st.store.submission_of_runner(session.id)
    if submission is None or submission.status != SubmissionStatus.RUNNING:
        return  # a retried exit report: handled the first time
    if problem:
        step, error = problem
        st.store.finish_submission(submission.id, SubmissionStatus.FAILED, step=step, error=error)
        return
    written = str(stage.get("predictions", ""))[:8]  # the format nsml.client.predict wrote
    if st.store.finish_submission(submission.id, SubmissionStatus.EVALUATING, prediction_format=written) is not None:
        threading.Thread(target=_evaluate, args=(st, submission, session), name=f"nsml-eval-{submission.id}", daemon=True).start()


def _failure(st: ServerState, session: Session, exit_code: int, stopped: bool, stage: dict) -> tuple[str, str] | None:
    """(step, message) when a relaunch did not do its job, else None."""
    reached, error = stage.get("stage", ""), stage.get("error", "")
    if session.kind == SessionKind.FORK and reached == "loaded":
        return None  # training after the load is the script's own business
    if session.kind in SUBMIT_KINDS and reached == "done" and exit_code == 0:
        return None
    if error:
        return reached, error
    if stage.get("timed_out"):
        return "load", (f"{session.entry} did not call nsml.paused() within {st.executor.paused_timeout:.0f} s. "
                        f"NSML relaunches it with --pause 1{' --mode test' if session.kind in SUBMIT_KINDS else ''}; "
                        "it must call nsml.paused(scope=locals()) after nsml.bind(...) when --pause is 1, before training.")
    if stopped:  # `nsml stop`: ending an infer or fork session that way is no failure
        return (reached, "The session was stopped.") if session.kind in SUBMIT_KINDS else None
    tail = _log_tail(st, session)
    if not reached:
        if session.kind == SessionKind.FORK and exit_code == 0:
            return None  # a fork that never asked for its checkpoint: it trained from scratch
        return "load", (f"{session.entry} exited ({_code(exit_code)}) without calling nsml.paused(). NSML relaunches it with "
                        f"--pause 1; it must call nsml.paused(scope=locals()) after nsml.bind(...) when --pause is 1.{tail}")
    if session.kind == SessionKind.INFER and reached == "serving" and exit_code == 0:
        return None
    return reached, f"The process ended ({_code(exit_code)}) during {reached}.{tail}"


def _code(exit_code: int) -> str:
    return f"killed by signal {-exit_code}" if exit_code < 0 else f"exit code {exit_code}"


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _log_tail(st: ServerState, session: Session) -> str:
    path = st.logs_dir / f"{session.id}.log"
    text = tail_lines(path, LOG_TAIL_LINES).strip() if path.exists() else ""
    return f"\nThe end of its log:\n{text}" if text else ""


def _evaluate(st: ServerState, submission: Submission, session: Session) -> None:
    try:
        dataset = st.store.get_dataset(submission.dataset)
        prediction = prediction_path(st, session)
        if not prediction.is_file():
            raise evaluator.EvaluationFailed("The submit session wrote no predictions.")
        key, score = rescoring.score_now(st, dataset, st.store.get_submission(submission.id), prediction)
        if submission.test:  # submit -t says that the evaluator returned a number, never which
            st.store.finish_submission(submission.id, SubmissionStatus.SCORED, score=None, scoring=key)
            return
        st.store.finish_submission(submission.id, SubmissionStatus.SCORED, score=score, scoring=key)
        rescoring.rescore_later(st, dataset.name)  # the board may have changed while it was evaluated
    except evaluator.EvaluationFailed as exc:
        st.store.finish_submission(submission.id, SubmissionStatus.FAILED, step="evaluate", error=str(exc))
    except Exception as exc:  # an internal error must still end the submission
        log.exception("evaluating submission %s failed", submission.id)
        st.store.finish_submission(submission.id, SubmissionStatus.FAILED, step="evaluate", error=f"{type(exc).__name__}: {exc}")


def fail_unfinished_submissions(st: ServerState) -> None:
    """At start-up: evaluations interrupted by a restart are run again (in fresh private
    folders: the ones a crash left are removed first); submits whose session is gone are failed."""
    evaluator.clear_workspace(Path(st.settings.home))
    for submission in st.store.unfinished_submissions():
        runner = None
        try:
            runner = st.store.session_by_id(submission.runner_id) if submission.runner_id else None
        except NotFound:
            pass
        if submission.status == SubmissionStatus.EVALUATING and runner is not None:
            threading.Thread(target=_evaluate, args=(st, submission, runner), daemon=True).start()
        elif runner is None or runner.status in FINAL:
            st.store.finish_submission(submission.id, SubmissionStatus.FAILED, step="", error="The submit session ended without reporting back (server restart?).")


# -- infer ----------------------------------------------------------------------------------------
def find_or_start_infer(st: ServerState, source: Session, checkpoint: str | None, user: str, dataset: str | None, resources: Resources | None) -> Session:
    """The user's running infer session for this model (so the model stays loaded), or a new one."""
    ckpt = pick_checkpoint(st, source, checkpoint)
    target = dataset or source.dataset
    for s in st.store.list_sessions(set(ACTIVE), owner=user):
        if s.kind == SessionKind.INFER and s.source == source.name and s.source_checkpoint == ckpt.name and s.dataset == target:
            return s
    if resources is None:
        # It waits for requests most of its life: reserving the source's CPUs and memory would
        # keep a small machine's submits and runs queued behind an idle model. GPUs it keeps:
        # the model lives on them.
        resources = Resources(0.0, 0, min(source.resources.gpus, admission.largest(st.nodes).gpus))
    return relaunch(st, source, SessionKind.INFER, ckpt.name, user, resources=resources, dataset=target)


def infer_request(st: ServerState, session: Session, data, wait: float) -> object:
    """Send one request to the infer session's loaded model; waits up to `wait` s for it to load."""
    if session.kind != SessionKind.INFER:
        raise InvalidInput(f"Session {session.name} is a {session.kind} session, not an infer session; start one with nsml infer.")
    deadline = time.monotonic() + wait
    while True:
        session = st.store.session_by_id(session.id)
        if session.status in FINAL:
            raise Conflict(f"Infer session {session.name} has ended ({session.status.value}): {session.error or 'see nsml logs ' + session.name}")
        if st.executor.infer_ready(session):
            break
        if time.monotonic() > deadline:
            raise Conflict(f"Infer session {session.name} is still loading its model; try again, or see nsml logs {session.name}.")
        time.sleep(0.1)
    return st.executor.infer(session, data)
