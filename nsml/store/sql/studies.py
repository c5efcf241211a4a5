"""AutoML studies and their trials (issue 16). A trial is numbered once: (study, number) is
unique, so a server restarted mid-study cannot start a trial twice, and the sampler's history is
read back from here (nsml.server.automl.space.replay)."""

import json
import time

from sqlalchemy import select

from nsml.core.entities import Study, Trial
from nsml.core.errors import Conflict, NotFound

from .models import StudyRow, StudyTrialRow

TRIAL_STATES = ("running", "complete", "pruned", "fail")
STUDY_STATES = ("running", "stopping", "stopped", "exited")


def _study(row: StudyRow) -> Study:
    return Study(row.id, row.session_id, json.loads(row.config), row.seed, row.status, row.created)


def _trial(row: StudyTrialRow) -> Trial:
    steps = {int(k): float(v) for k, v in json.loads(row.steps or "{}").items()}
    return Trial(row.id, row.study_id, row.number, json.loads(row.params), row.session_id, row.state, row.value,
                 steps, row.parent, row.created)


class StudiesMixin:
    def create_study(self, session_id: int, config: dict, seed: int) -> Study:
        with self._write() as orm:
            row = StudyRow(session_id=session_id, config=json.dumps(config), seed=seed, status="running", created=time.time())
            orm.add(row)
            orm.flush()
            return _study(row)

    def get_study(self, study_id: int) -> Study:
        with self._read() as orm:
            row = orm.get(StudyRow, study_id)
            if row is None:
                raise NotFound(f"Study #{study_id} does not exist.")
            return _study(row)

    def study_of_session(self, session_id: int) -> Study:
        """The study whose parent is this session; NotFound if it is not one's."""
        with self._read() as orm:
            row = orm.scalar(select(StudyRow).where(StudyRow.session_id == session_id))
            if row is None:
                raise NotFound(f"Session #{session_id} is not an AutoML study's.")
            return _study(row)

    def studies(self, statuses: tuple[str, ...] = ("running", "stopping")) -> list[Study]:
        with self._read() as orm:
            return [_study(r) for r in orm.scalars(select(StudyRow).where(StudyRow.status.in_(statuses)).order_by(StudyRow.id))]

    def set_study_status(self, study_id: int, status: str) -> Study:
        if status not in STUDY_STATES:
            raise ValueError(status)
        with self._write() as orm:
            row = orm.get(StudyRow, study_id, with_for_update=True)
            if row is None:
                raise NotFound(f"Study #{study_id} does not exist.")
            row.status = status
            return _study(row)

    def add_trial(self, study_id: int, number: int, params: dict, parent: int | None = None) -> Trial:
        """Trial `number` of the study, running; Conflict if that number exists (a restarted
        controller asking again)."""
        with self._write() as orm:
            taken = orm.scalar(select(StudyTrialRow.id).where(StudyTrialRow.study_id == study_id, StudyTrialRow.number == number))
            if taken is not None:
                raise Conflict(f"Trial {number} of study #{study_id} exists already.")
            row = StudyTrialRow(study_id=study_id, number=number, params=json.dumps(params), state="running",
                                steps="{}", parent=parent, created=time.time())
            orm.add(row)
            orm.flush()
            return _trial(row)

    def update_trial(self, trial_id: int, *, session_id: int | None = None, state: str | None = None,
                     value: float | None = None, step: tuple[int, float] | None = None) -> Trial:
        """Link its child session, record the measure at a compare step, or end it (state and
        final value). A trial that ended never changes state again."""
        if state is not None and state not in TRIAL_STATES:
            raise ValueError(state)
        with self._write() as orm:
            row = orm.get(StudyTrialRow, trial_id, with_for_update=True)
            if row is None:
                raise NotFound(f"Trial #{trial_id} does not exist.")
            if session_id is not None:
                row.session_id = session_id
            if step is not None:
                steps = json.loads(row.steps or "{}")
                steps[str(int(step[0]))] = float(step[1])
                row.steps = json.dumps(steps)
            if state is not None and row.state == "running":
                row.state = state
                if value is not None:
                    row.value = float(value)
            return _trial(row)

    def trials(self, study_id: int) -> list[Trial]:
        with self._read() as orm:
            rows = orm.scalars(select(StudyTrialRow).where(StudyTrialRow.study_id == study_id).order_by(StudyTrialRow.number))
            return [_trial(r) for r in rows]
