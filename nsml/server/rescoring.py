"""Keeping a leaderboard's scores comparable when its metric, evaluator or test split changes.

Every score is stored with the key of how it was computed (nsml.core.scoring.scoring_key: the
metric, a custom metric's evaluator code, the test split). A board ranks only the scores whose
key is the dataset's current one. When the key changes (`dataset change --metric f1`, a
`push -f` with another metric or evaluation.py) the kept predictions of the earlier submissions
are scored again the new way, in the background; until one is, it is counted as being
re-scored, never shown with its old score. Submissions that cannot be scored again (their
predictions are gone, they predicted an earlier test split, or the new metric cannot read them)
are archived: listed apart with the metric they were scored with and why, never ranked.
"""

import logging
import threading
from pathlib import Path

from nsml.core import scoring
from nsml.core.entities import Dataset, Submission
from nsml.core.errors import NotFound
from nsml.scheduler import evaluator

from .state import ServerState

log = logging.getLogger("nsml.rescoring")
PENDING = "pending"
_running: set[str] = set()  # datasets being re-scored now (one pass at a time per dataset)
_guard = threading.Lock()


def predictions_dir(st: ServerState) -> Path:
    folder = Path(st.settings.home) / "predictions"
    folder.mkdir(exist_ok=True)
    return folder


def prediction_file(st: ServerState, submission: Submission) -> Path:
    """Where a submission's predictions are kept (the submit session's id named them before
    they were kept by submission)."""
    path = predictions_dir(st) / f"submission-{submission.id}.txt"
    if not path.exists() and submission.runner_id is not None:
        older = predictions_dir(st) / f"{submission.runner_id}.txt"
        if older.exists():
            return older
    return path


def current_key(st: ServerState, dataset: Dataset) -> str:
    """The dataset's scoring key. A dataset version's files never change, so the key is kept per
    version (name, fileset, push time: SQLite may reuse the id of a removed fileset) and metric:
    a board view of a large dataset does not list its files each time."""
    cache_key = (id(st), dataset.name, dataset.fileset_id, dataset.updated, dataset.metric)
    if (key := _keys.get(cache_key)) is None:
        key = scoring.scoring_key(dataset.metric, {f.path: f.sha256 for f in st.store.files(dataset.fileset_id)})
        if len(_keys) > 256:
            _keys.clear()
        _keys[cache_key] = key
    return key


_keys: dict[tuple, str] = {}


def score_now(st: ServerState, dataset: Dataset, submission: Submission, prediction: Path) -> tuple[str, float]:
    """(key, score) of `prediction` with the dataset's current evaluation; EvaluationFailed."""
    from nsml.client.predict import PLAIN_FORMAT

    entries = st.store.files(dataset.fileset_id)
    key = current_key(st, dataset)
    files = {f.path: st.blobs.path(f.sha256) for f in entries}
    # A test submit's error never quotes the script's stdout: that is where the score is printed.
    score = evaluator.evaluate(dataset.metric, dataset.name, files, prediction, st.settings.evaluation_timeout,
                               plain=submission.prediction_format == PLAIN_FORMAT, home=Path(st.settings.home),
                               submission_id=submission.id, quote_stdout=not submission.test,
                               memory_bytes=st.settings.evaluation_memory_mb << 20)
    if score != score:  # NaN ranks nowhere
        raise evaluator.EvaluationFailed("The evaluation produced NaN.")
    return key, score


def standing(st: ServerState, submission: Submission, key: str) -> str:
    """PENDING for a submission scored otherwise that will be scored again under `key`, else
    why it is archived."""
    metric = scoring.key_metric(submission.scoring) or "an earlier metric"
    if submission.scoring and not scoring.same_test_split(submission.scoring, key):
        return f"scored with {metric} on an earlier test split"
    if not prediction_file(st, submission).is_file():
        return f"scored with {metric}; its predictions are no longer kept"
    failed_key, _, error = submission.rescore_error.partition("\t")
    if failed_key == key:
        return f"scored with {metric}; scoring it with {scoring.key_metric(key)} failed: {error}"
    return PENDING


def rescore_later(st: ServerState, dataset: str) -> None:
    """Score the dataset's submissions that were scored otherwise again, in a thread; a no-op
    while a pass for that dataset runs (it loops until nothing is left)."""
    with _guard:
        if dataset in _running:
            return
        _running.add(dataset)
    threading.Thread(target=_pass, args=(st, dataset), name=f"nsml-rescore-{dataset}", daemon=True).start()


def _pass(st: ServerState, name: str) -> None:
    try:
        while _rescore_some(st, name):
            pass
    except Exception:  # a thread must not die silently; the next board view tries again
        log.exception("re-scoring the board of %s failed", name)
    finally:
        with _guard:
            _running.discard(name)


def _rescore_some(st: ServerState, name: str) -> bool:
    """Re-score what is pending under the current key; True if the key changed meanwhile (or
    something was done) and another look is needed."""
    try:
        dataset = st.store.get_dataset(name)
    except NotFound:
        return False
    if not dataset.has_leaderboard:
        return False
    key = current_key(st, dataset)
    todo = [s for s in st.store.scored_otherwise(name, key) if standing(st, s, key) == PENDING]
    for submission in todo:
        try:
            new_key, score = score_now(st, dataset, submission, prediction_file(st, submission))
        except evaluator.EvaluationFailed as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            st.store.rescore_submission(submission.id, key, error=" ".join(lines)[:300])
            continue
        if new_key != key:  # the dataset changed during this pass: start over with the new key
            return True
        st.store.rescore_submission(submission.id, key, score=score)
    return bool(todo)
