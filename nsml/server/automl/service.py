"""The server's side of AutoML (issue 16): a study's parent session, its trials as ordinary
child sessions, and the driver's pass on the lease holder.

The parent (`OWNER/DATASET/N`, kind automl) runs nothing and holds nothing: it is created
running and ends when its study does (the scheduler leaves it out of placement and of the
heartbeat watch: nsml.scheduler.service.runnable). Each trial is a queued session like any
other, with the study's code, dataset and resources and `--name value` arguments, charged to
the owner and the parent's team, so quotas, credits and fair share treat it as the owner's work.
"""

import logging
import time

from nsml.core import naming
from nsml.core.automl_config import StudyConfig, parse_config, trial_args
from nsml.core.entities import Session, Study, Trial
from nsml.core.errors import Conflict, InvalidInput, NotFound
from nsml.core.resources import Resources
from nsml.core.states import ACTIVE, FINAL, SessionKind, Status
from nsml.scheduler import admission

from ..state import ServerState
from .driver import Driver

log = logging.getLogger("nsml.automl")
MAX_ARGS = 8192  # a trial's whole argument line, as nsml run allows


def resources_of(st: ServerState, config: StudyConfig) -> Resources:
    """Each trial's request: the config's `resources`, else nsml run's defaults."""
    r = config.resources
    return admission.run_defaults(st.nodes, r.get("cpus"), r.get("memory"), r.get("gpus"))


def start_study(st: ServerState, owner: str, team: str, visibility: str, priority: int, raw_config: dict,
                files, image: str, memo: str, seed: int) -> tuple[Session, Study]:
    """Check the config against this server (entry in the code, resources that could start),
    then create the parent session, running, and its study; trials start on the next pass."""
    config = parse_config(raw_config)
    _check_search(config)
    paths = {f.path for f in files}
    if config.entry not in paths:
        raise InvalidInput(f"the AutoML config: entry {config.entry} is not in the uploaded folder; set `entry` to one of its "
                           f"Python files ({', '.join(sorted(p for p in paths if p.endswith('.py') and '/' not in p)[:8]) or 'none'}).")
    request = resources_of(st, config)
    admission.admit(request, st.nodes)
    if len(trial_args(config, {p.name: _widest(p) for p in config.h_params})) > MAX_ARGS:
        raise InvalidInput(f"the AutoML config: a trial's arguments would be longer than {MAX_ARGS} characters.")
    dataset = config.dataset or naming.NO_DATASET
    parent = st.store.create_session(owner, dataset, config.entry, config.args, Resources(0.0, 0, 0), memo, image, files,
                                     kind=SessionKind.AUTOML, team=team, visibility=visibility, priority=priority)
    parent = st.store.move_session(parent.id, Status.RUNNING, started=time.time(), note="the study started")
    study = st.store.create_study(parent.id, raw_config, seed)
    st.scheduler.wake()
    return parent, study


def _check_search(config: StudyConfig) -> None:
    """The sampler and pruner can be made on this server (Optuna installed, and what an
    algorithm needs: cmaes, scipy, torch), refused with one line before anything runs."""
    import importlib.util

    if importlib.util.find_spec("optuna") is None:
        raise InvalidInput("AutoML needs Optuna on the server: install it where the server runs, "
                           "pip install 'nsml[automl]' (Optuna and cmaes).")
    from . import space

    space.new_study(config, seed=0)


def _widest(p):
    """A value of the parameter whose text is longest (for the length check of a trial's arguments)."""
    if p.distribution == "categorical":
        return max(p.parameters, key=lambda v: len(str(v)))
    return -1.2345678901234567e-300 if p.type == "float" else -(10 ** 18)


class ServerChildren:
    """What the driver's children are on this server: sessions created, stopped, resumed through
    the same store and executor as everyone's."""

    def __init__(self, st: ServerState):
        self.st = st

    def launch(self, study: Study, trial: Trial) -> int:
        st = self.st
        parent = st.store.session_by_id(study.session_id)
        config = parse_config(study.config)
        request = resources_of(st, config)
        shm = config.resources.get("shm_size") or min(1 << 30, request.memory)
        try:
            child = st.store.create_session(
                parent.owner, parent.dataset, config.entry, trial_args(config, trial.params), request,
                f"trial {trial.number} of {parent.name}", parent.image, parent.code_fileset_id, shm_size=min(shm, request.memory),
                team=parent.team, visibility=parent.visibility, priority=parent.priority, trial_id=trial.id,
                preemptible=config.preemptible)
        except Conflict:  # linked meanwhile by another pass (a restart): that child is the trial's
            return next(t.session_id for t in st.store.trials(study.id) if t.id == trial.id)
        shown = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in trial.params.items())
        self.note(study, f"trial {trial.number}: {child.name} queued ({shown})")
        st.scheduler.wake()
        return child.id

    def fork(self, study: Study, trial: Trial, source: Session, checkpoint: str) -> int:
        from ..relaunch import relaunch

        st = self.st
        parent = st.store.session_by_id(study.session_id)
        config = parse_config(study.config)
        child = relaunch(st, source, SessionKind.FORK, checkpoint, parent.owner, args=trial_args(config, trial.params),
                         resources=resources_of(st, config), trial_id=trial.id, preemptible=config.preemptible,
                         memo=f"trial {trial.number} of {parent.name} (PBT: trial {trial.parent} at checkpoint {checkpoint})")
        return child.id

    def note(self, study: Study, line: str) -> None:
        self.st.log_note(study.session_id, line)

    def stop(self, session: Session) -> None:
        st = self.st
        fresh = st.store.session_by_id(session.id)
        if fresh.status not in ACTIVE:
            return
        if fresh.pause_requested:
            st.store.clear_pause_request(fresh.id, "stopped by its AutoML study")
        if fresh.status == Status.QUEUED or not st.executor.stop(fresh):
            st.store.move_session(fresh.id, Status.STOPPED, ended=time.time(), note="stopped by its AutoML study")
        st.scheduler.wake()

    def resume(self, session: Session) -> bool:
        from ..relaunch import resume_session

        try:
            resume_session(self.st, session, why="its AutoML study resumed it")
            return True
        except (Conflict, InvalidInput) as err:  # no checkpoint (lost before its first save): it ends there
            log.info("not resuming trial session %s: %s", session.name, err)
            return False

    def end(self, study: Study, status: Status, note: str) -> None:
        parent = self.st.store.session_by_id(study.session_id)
        if parent.status not in FINAL:
            error = note if status == Status.FAILED else ""
            self.st.store.move_session(parent.id, status, ended=time.time(), note=note, error=error)


def stop_study(st: ServerState, study: Study, force: bool, actor: str) -> Study:
    """`nsml automl stop`: no new trials; the running ones finish (`force`: stopped now too)."""
    if study.status not in ("running", "stopping"):
        raise Conflict(f"the study has {study.status} already.")
    study = st.store.set_study_status(study.id, "stopping")
    if force:
        children = ServerChildren(st)
        for trial in st.store.trials(study.id):
            if trial.state == "running" and trial.session_id is not None:
                children.stop(st.store.session_by_id(trial.session_id))
    st.scheduler.wake()
    return study


def trial_sessions(st: ServerState, parent: Session) -> list[Session]:
    """The sessions of a study's trials, in trial order (none for a session that is no study's).
    The study is marked stopped first, so the driver starts nothing while they go."""
    try:
        study = st.store.study_of_session(parent.id)
    except NotFound:
        return []
    if study.status in ("running", "stopping"):
        st.store.set_study_status(study.id, "stopped")
    out = []
    for trial in st.store.trials(study.id):
        if trial.session_id is not None:
            try:
                out.append(st.store.session_by_id(trial.session_id))
            except NotFound:  # removed on its own before
                continue
    return out


def attach(st: ServerState) -> Driver:
    """The driver, run by the scheduler about once a second while this server holds its lease."""
    driver = Driver(st.store, ServerChildren(st))
    st.scheduler.on_tick = driver.tick
    return driver
