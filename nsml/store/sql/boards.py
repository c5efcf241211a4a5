"""Submissions and the leaderboards ranked from them."""

import time
from collections.abc import Iterable

from sqlalchemy import func, or_, select

from nsml.core.entities import BoardRow, Submission
from nsml.core.errors import NotFound
from nsml.core.states import SUBMISSION_FINAL, SubmissionStatus, can_move_submission

from .models import SessionRow, SubmissionRow


def _to_submission(row: SubmissionRow, runner: str) -> Submission:
    return Submission(
        id=row.id, dataset=row.dataset, owner=row.owner, session=row.session, checkpoint=row.checkpoint,
        test=row.test, runner=runner, runner_id=row.runner_id, status=SubmissionStatus(row.status), step=row.step, error=row.error, score=row.score,
        created=row.created, finished=row.finished, scoring=row.scoring, prediction_format=row.prediction_format,
        rescore_error=row.rescore_error,
    )


class BoardsMixin:
    def create_submission(self, dataset: str, owner: str, session: str, checkpoint: str, test: bool, runner_id: int) -> Submission:
        with self._write() as orm:
            row = SubmissionRow(
                dataset=dataset, owner=owner, session=session, checkpoint=checkpoint, test=test,
                runner_id=runner_id, status="running", step="", error="", created=time.time(),
            )
            orm.add(row)
            orm.flush()
            return self._submission(orm, row)

    def _submission(self, orm, row: SubmissionRow) -> Submission:
        runner = orm.get(SessionRow, row.runner_id) if row.runner_id else None
        return _to_submission(row, f"{runner.owner}/{runner.dataset}/{runner.number}" if runner else "")

    def get_submission(self, submission_id: int) -> Submission:
        with self._read() as orm:
            row = orm.get(SubmissionRow, submission_id)
            if row is None:
                raise NotFound(f"Submission #{submission_id} does not exist.")
            return self._submission(orm, row)

    def submission_of_runner(self, runner_id: int) -> Submission | None:
        with self._read() as orm:
            row = orm.scalar(select(SubmissionRow).where(SubmissionRow.runner_id == runner_id))
            return self._submission(orm, row) if row else None

    def finish_submission(self, submission_id: int, status: str, **fields) -> Submission | None:
        """Move a running/evaluating submission on; a finished one is never changed again
        (a supervisor that retries its report must not score twice)."""
        with self._write() as orm:
            row = orm.get(SubmissionRow, submission_id, with_for_update=True)
            if row is None or not can_move_submission(row.status, status):
                return None
            row.status = status
            if status in SUBMISSION_FINAL:
                row.finished = time.time()
            for key, value in fields.items():
                setattr(row, key, value)
            return self._submission(orm, row)

    def unfinished_submissions(self) -> list[Submission]:
        with self._read() as orm:
            rows = orm.scalars(select(SubmissionRow).where(SubmissionRow.status.notin_(sorted(SUBMISSION_FINAL))))
            return [self._submission(orm, r) for r in rows]

    def last_ranked_submit(self, dataset: str, owner: str) -> float | None:
        """When the owner last made a submit that counts for the rate limit (test runs do not;
        failed ones do, as they used the evaluator)."""
        with self._read() as orm:
            return orm.scalar(select(func.max(SubmissionRow.created)).where(
                SubmissionRow.dataset == dataset, SubmissionRow.owner == owner, SubmissionRow.test.is_(False)))

    def test_submit_times(self, dataset: str, owner: str, since: float) -> list[float]:
        """When the owner made test submits (-t) to the dataset since `since`, oldest first: their
        own rate limit (failed ones count too)."""
        with self._read() as orm:
            return list(orm.scalars(select(SubmissionRow.created).where(
                SubmissionRow.dataset == dataset, SubmissionRow.owner == owner, SubmissionRow.test.is_(True),
                SubmissionRow.created >= since).order_by(SubmissionRow.created)))

    def scored_otherwise(self, dataset: str, scoring: str) -> list[Submission]:
        """Ranked (not -t) scored submissions whose score was computed another way than `scoring`,
        oldest first: to re-score, or to show as archived."""
        with self._read() as orm:
            rows = orm.scalars(select(SubmissionRow).where(
                SubmissionRow.dataset == dataset, SubmissionRow.test.is_(False), SubmissionRow.status == "scored",
                SubmissionRow.scoring != scoring).order_by(SubmissionRow.id))
            return [self._submission(orm, r) for r in rows]

    def rescore_submission(self, submission_id: int, scoring: str, score: float | None = None, error: str = "") -> None:
        """A scored submission scored again under `scoring`; or, with `error`, why it could not be."""
        with self._write() as orm:
            row = orm.get(SubmissionRow, submission_id, with_for_update=True)
            if row is None or row.status != "scored":
                return
            if error:
                row.rescore_error = f"{scoring}\t{error}"
            else:
                row.score, row.scoring, row.rescore_error = score, scoring, ""

    def list_submissions(self, dataset: str, owner: str | None = None, limit: int = 100) -> list[Submission]:
        query = select(SubmissionRow).where(SubmissionRow.dataset == dataset)
        if owner:
            query = query.where(SubmissionRow.owner == owner)
        with self._read() as orm:
            rows = orm.scalars(query.order_by(SubmissionRow.id.desc()).limit(limit))
            return [self._submission(orm, r) for r in rows]

    def submissions_of(self, sessions: Iterable[str] = (), runner_ids: Iterable[int] = ()) -> list[Submission]:
        """The submissions of these sessions' checkpoints, and those run by these submit
        sessions, oldest first: what a checkpoint list and the runs table's lineage show."""
        names, runners = list(dict.fromkeys(sessions)), list(dict.fromkeys(runner_ids))
        if not names and not runners:
            return []
        with self._read() as orm:
            rows = orm.scalars(select(SubmissionRow).where(or_(SubmissionRow.session.in_(names), SubmissionRow.runner_id.in_(runners)))
                               .order_by(SubmissionRow.id))
            return [self._submission(orm, r) for r in rows]

    def board(self, dataset: str, order: str, every: bool = False, scoring: str | None = None) -> list[BoardRow]:
        """Ranked scored submissions: each owner's best (ties: the earlier one), or every one;
        with `scoring`, only those scored that way (nsml.core.scoring.scoring_key): scores
        computed another way are never ranked together."""
        query = select(SubmissionRow).where(
            SubmissionRow.dataset == dataset, SubmissionRow.test.is_(False),
            SubmissionRow.status == "scored", SubmissionRow.score.is_not(None))
        if scoring is not None:
            query = query.where(SubmissionRow.scoring == scoring)
        with self._read() as orm:
            rows = list(orm.scalars(query))
        sign = -1 if order == "desc" else 1
        rows.sort(key=lambda r: (sign * r.score, r.created, r.id))
        counts: dict[str, int] = {}
        for row in rows:
            counts[row.owner] = counts.get(row.owner, 0) + 1
        if not every:
            seen: set[str] = set()
            rows = [r for r in rows if not (r.owner in seen or seen.add(r.owner))]
        return [
            BoardRow(rank=i, owner=r.owner, score=r.score, session=r.session, checkpoint=r.checkpoint,
                     count=counts[r.owner], created=r.created)
            for i, r in enumerate(rows, 1)
        ]
