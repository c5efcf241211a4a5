"""A study's driver (issue 16): one pass over each running study, made about once a second by the
server holding the scheduler's lease (Scheduler.on_tick).

Each pass reads what the store holds, so a restarted server continues where it was:
1. the Optuna study is rebuilt once from the stored trials (space.replay) and kept in memory;
2. every trial whose child reached a new compare step reports the measure at it
   (automl_measure.compare_points) to its Optuna trial; a pruner that says stop stops the child
   and the trial ends `pruned`;
3. a trial whose child ended is told its final measure (the last save's; `fail` without one);
   a child that was paused (nsml pause, or a preemption that has not requeued it yet) or lost
   is set aside and resumed from its checkpoint when a slot is free: stop-and-go;
4. a measure no running trial reported by the first compare step (or by their end) stops
   the study, naming the keys the trials did report;
5. new trials are asked while fewer than `population` are active and the budget (trials, wall
   time, GPU-hours) allows, each numbered once in the store before its child is created;
6. a study with nothing active and nothing more to ask ends, and so does its parent session.

What children are and how they start, stop and resume is the server's (nsml.server.automl
.service passes its own `Children`; tests pass theirs), so this module needs no executor.
"""

import logging
import random
import time
from dataclasses import dataclass, field
from typing import Protocol

from nsml.core.automl_config import StudyConfig, parse_config
from nsml.core.automl_measure import check_reported, compare_points, measure_at_saves, save_at_step
from nsml.core.entities import Session, Study, Trial
from nsml.core.errors import Conflict, InvalidInput, NotFound
from nsml.core.states import ACTIVE, FINAL, Status

from nsml.core import automl_pbt as pbt

from . import space

log = logging.getLogger("nsml.automl")
SET_ASIDE = frozenset({Status.PAUSED, Status.LOST})  # ended for now, to be resumed from a checkpoint
MAX_RESUMES = 3  # a trial lost more often than this is given up (its node keeps failing it)


class Children(Protocol):
    def launch(self, study: Study, trial: Trial) -> int:
        """Create the trial's child session (queued), linked to the trial; its id."""

    def stop(self, session: Session) -> None: ...

    def resume(self, session: Session) -> bool:
        """Queue a set-aside child again from its latest checkpoint; False if it cannot be."""

    def fork(self, study: Study, trial: Trial, source: Session, checkpoint: str) -> int:
        """PBT: the trial's child, a fork of `source` at `checkpoint` with the trial's parameters."""

    def end(self, study: Study, status: Status, note: str) -> None:
        """The study is over: end its parent session with `status` and `note` in its history."""

    def note(self, study: Study, line: str) -> None:
        """A line in the study's log (its parent session's): what it decided, and why."""


@dataclass
class _Live:
    config: StudyConfig
    optuna: object
    asked: dict[int, object] = field(default_factory=dict)  # trial number -> Optuna trial
    reported: dict[int, int] = field(default_factory=dict)  # trial number -> compare steps reported
    resumes: dict[int, int] = field(default_factory=dict)  # trial number -> times resumed by this driver


class Driver:
    def __init__(self, store, children: Children, clock=time.time):
        self.store = store
        self.children = children
        self.clock = clock
        self._live: dict[int, _Live] = {}

    def tick(self) -> None:
        studies = self.store.studies(("running", "stopping"))
        self._live = {k: v for k, v in self._live.items() if k in {s.id for s in studies}}
        for study in studies:
            try:
                self.step(study)
            except InvalidInput as err:  # its search cannot go on here (a package gone since it started)
                log.warning("study #%s cannot go on: %s", study.id, err)
                self._end(study, "stopped", Status.FAILED, str(err))
            except Exception:  # one study's trouble must not hold up the others
                log.exception("a pass over study #%s failed", study.id)

    def forget(self, study_id: int) -> None:
        self._live.pop(study_id, None)

    def step(self, study: Study) -> None:
        try:
            parent = self.store.session_by_id(study.session_id)
        except NotFound:  # removed with its trials (nsml automl rm)
            self.store.set_study_status(study.id, "stopped")
            return
        if parent.status in FINAL and study.status == "running":  # `nsml stop` on the parent itself
            study = self.store.set_study_status(study.id, "stopping")
        live = self._live.get(study.id) or self._rebuild(study)
        trials = self.store.trials(study.id)
        active, forked, aside, seen = 0, 0, [], []
        for trial in trials:
            if trial.state != "running":
                continue
            if trial.session_id is None:  # numbered, but its child never created (a restart between)
                if study.status != "running":
                    self.store.update_trial(trial.id, state="fail")
                    continue
                trial = self.store.update_trial(trial.id, session_id=self.children.launch(study, trial))
            try:
                session = self.store.session_by_id(trial.session_id)
            except NotFound:  # its child was removed: the trial can say nothing more
                self._finish(study, live, trial, Status.FAILED, [])
                continue
            summaries = [c.summary for c in sorted(self.store.list_checkpoints(session.id), key=lambda c: c.created)]
            seen.append((trial, session, summaries))
            reached = self._report(live, trial, summaries)
            if session.status in SET_ASIDE and study.status == "running" and live.resumes.get(trial.number, 0) < MAX_RESUMES:
                aside.append(session)
                continue
            if session.status in FINAL:
                self._finish(study, live, trial, session.status, summaries)
                continue
            if reached and live.config.scheduler == "pbt" and study.status == "running" and self._exploit(study, live, trial, session):
                forked += 1  # stopped; its copy, a new trial, takes the slot
                active += 1
                continue
            pruned_at = self._prune(live, trial, summaries) if reached else None
            if pruned_at is not None:
                self.children.note(study, f"trial {trial.number} ({session.name}) pruned by {live.config.scheduler} at compare step "
                                          f"{live.reported[trial.number]}: {live.config.measure} {pruned_at:.6g}")
                self.children.stop(session)
                continue
            active += 1
        if self._measure_missing(study, live, seen, trials):
            return
        if study.status == "running":
            started = len(trials) + forked
            exhausted = self._exhausted(study, live, started)
            # A lost trial did not choose to stop: it comes back first. A paused one was set
            # aside (nsml pause, the web's Pause): it comes back once no new trial may start.
            lost = [s for s in aside if s.status == Status.LOST]
            active = self._resume(study, live, lost, seen, active)
            while not exhausted and active < live.config.population:
                self._ask(study, live, started)
                started += 1
                active += 1
                exhausted = self._exhausted(study, live, started)
            if exhausted:
                active = self._resume(study, live, [s for s in aside if s.status == Status.PAUSED], seen, active)
            if active == 0 and exhausted and not any(live.resumes.get(t.number, 0) < MAX_RESUMES for t, s, _ in seen if s in aside):
                self._end(study, "exited", Status.EXITED, f"the study ended: {exhausted}")
        elif active == 0:
            self._end(study, "stopped", Status.STOPPED, "the study was stopped; its running trials have ended")

    def _resume(self, study: Study, live: _Live, sessions: list[Session], seen: list, active: int) -> int:
        """Resume set-aside trials from their checkpoints while the population has room; the
        number active after."""
        for session in sessions:
            if active >= live.config.population:
                break
            number = next(t.number for t, s, _ in seen if s.id == session.id)
            live.resumes[number] = live.resumes.get(number, 0) + 1
            if self.children.resume(session):
                self.children.note(study, f"trial {number} ({session.name}) was {session.status.value}: resumed from its checkpoint")
                active += 1
        return active

    def _exhausted(self, study: Study, live: _Live, started: int) -> str:
        """Why no more trials may be asked ('' while they may)."""
        config = live.config
        budget = config.max_trials if config.max_trials is not None else space.grid_size(config)
        if budget is not None and started >= budget:
            return f"{started} trials, its budget" if config.max_trials is not None else f"every point of the grid ({budget}) tried"
        if config.max_wall_time is not None and self.clock() - study.created >= config.max_wall_time:
            return "its wall-time budget was spent"
        if config.max_gpu_hours is not None and self.gpu_hours(study) >= config.max_gpu_hours:
            return f"its GPU-hour budget ({config.max_gpu_hours:g}) was spent"
        return ""

    def gpu_hours(self, study: Study) -> float:
        """GPU-hours its trials' sessions have held so far (each attempt's, from the ledger the
        scheduler keeps for credits, plus the running ones')."""
        ids = {t.session_id for t in self.store.trials(study.id) if t.session_id is not None}
        now = self.clock()
        return sum(sp.gpu_seconds(study.created, now) for sp in self.store.usage_spans(study.created)
                   if sp.session_id in ids) / 3600.0

    def _measure_missing(self, study: Study, live: _Live, seen: list, trials: list[Trial]) -> bool:
        """Once every running trial has passed the first compare step (or, without a step, has
        ended with saves), a measure none of them reported stops the study and its trials,
        naming the keys they did report. Every one, not the first: one trial whose values were
        refused (NaN, text) must not end a study whose others report the measure."""
        config = live.config
        passed, reported = 0, set()
        for _, session, summaries in seen:
            due = False
            for summary in summaries:
                reported.update(summary)
                if config.step is None:
                    due = session.status in FINAL
                else:
                    unit, every = config.step
                    at = summary.get(unit)
                    due = due or (isinstance(at, (int, float)) and at + 1 >= every)
            passed += due
        due = bool(seen) and passed == len(seen)
        for trial in trials:  # as read at the start of this pass (a step recorded since came from a summary holding it)
            if trial.state == "complete" or trial.steps:
                return False  # some trial did report it
        if not due or config.measure in reported:
            return False
        try:
            check_reported(config.measure, reported, where=self._name(study))
        except InvalidInput as err:
            for trial, session, _ in seen:
                if session.status in ACTIVE:
                    self.children.stop(session)
                self.store.update_trial(trial.id, state="fail")
            self.children.note(study, f"[nsml] {err}")
            self._end(study, "stopped", Status.FAILED, str(err))
            return True
        return False

    def _name(self, study: Study) -> str:
        try:
            return self.store.session_by_id(study.session_id).name
        except NotFound:
            return f"study #{study.id}"

    def _end(self, study: Study, status: str, parent: Status, note: str) -> None:
        self.store.set_study_status(study.id, status)
        self.forget(study.id)
        self.children.note(study, f"[nsml] {note}")
        self.children.end(study, parent, note)

    def _rebuild(self, study: Study) -> _Live:
        config = parse_config(study.config)
        optuna_study = space.new_study(config, seed=study.seed)
        trials = self.store.trials(study.id)
        ended = [(t.params, t.value, t.steps, t.state) for t in trials if t.state != "running"]
        space.replay(optuna_study, config, ended)
        live = self._live[study.id] = _Live(config, optuna_study)
        for t in trials:  # running ones are asked again with their stored parameters
            if t.state == "running":
                optuna_study.enqueue_trial(t.params, skip_if_exists=False)
                live.asked[t.number] = optuna_study.ask(space.space(config))
                for k, value in sorted(t.steps.items()):
                    live.asked[t.number].report(value, k)
                live.reported[t.number] = len(t.steps)
        return live

    def _ask(self, study: Study, live: _Live, number: int) -> None:
        rng = random.Random(study.seed * 1_000_003 + number)
        optuna_trial, params = space.ask(live.optuna, live.config, rng)
        try:
            trial = self.store.add_trial(study.id, number, params)
        except Conflict:  # another pass numbered it meanwhile
            live.optuna.tell(optuna_trial, state=_state("FAIL"))
            return
        live.asked[number] = optuna_trial
        self.store.update_trial(trial.id, session_id=self.children.launch(study, trial))  # (the server's links it already)

    def _report(self, live: _Live, trial: Trial, summaries: list[dict]) -> bool:
        """Record and report the compare steps the trial reached since the last pass; whether it
        reached any."""
        points = compare_points(summaries, live.config.measure, live.config.step)
        optuna_trial = live.asked.get(trial.number)
        done = live.reported.get(trial.number, 0)
        for k, value in points[done:]:
            self.store.update_trial(trial.id, step=(k, value))
            if optuna_trial is not None:
                optuna_trial.report(value, k)
        # A PBT copy starts with its donor's steps counted (done > 0) before it has saved anything.
        live.reported[trial.number] = max(done, len(points))
        return len(points) > done

    def _exploit(self, study: Study, live: _Live, trial: Trial, session: Session) -> bool:
        """PBT at a compare step just reached: a trial in the bottom quarter of those that reached
        it is stopped, and a new trial forks a top one's latest checkpoint with explored
        hyper-parameters (nsml.core.automl_pbt); whether that happened."""
        step = live.reported[trial.number]
        trials = self.store.trials(study.id)
        at_step = {t.number: t.steps[step] for t in trials if step in t.steps}
        rng = random.Random(hash((study.seed, trial.number, step)) & 0xFFFFFFFF)
        donor_number = pbt.exploit(at_step, trial.number, live.config.direction, rng)
        if donor_number is None or self._exhausted(study, live, len(trials)):
            return False
        donor = next(t for t in trials if t.number == donor_number)
        try:
            source = self.store.session_by_id(donor.session_id)
        except NotFound:
            return False
        saved = sorted(self.store.list_checkpoints(source.id), key=lambda c: c.created)
        at = save_at_step([c.summary for c in saved], live.config.measure, live.config.step, step)
        if at is None:
            return False
        checkpoint = saved[at].name  # where it stood when compared (it may have trained on since, even to its end)
        params = pbt.explore(live.config, donor.params, rng)
        try:
            child = self.store.add_trial(study.id, len(trials), params, parent=donor.number)
        except Conflict:
            return False
        self.children.stop(session)
        self.store.update_trial(trial.id, state="pruned", value=at_step[trial.number])
        optuna_trial = live.asked.pop(trial.number, None)
        if optuna_trial is not None:
            live.optuna.tell(optuna_trial, state=_state("PRUNED"))
        for k in sorted(donor.steps):  # the copy's history up to here is its donor's
            if k <= step:
                self.store.update_trial(child.id, step=(k, donor.steps[k]))
        live.reported[child.number] = step
        self.store.update_trial(child.id, session_id=self.children.fork(study, child, source, checkpoint))
        self.children.note(study, f"trial {trial.number} ({session.name}) exploited at compare step {step} "
                                  f"({live.config.measure} {at_step[trial.number]:.6g} vs {at_step[donor.number]:.6g}): "
                                  f"trial {child.number} forks trial {donor.number}'s checkpoint {checkpoint} with "
                                  + ", ".join(f"{k}={_shown(v)}" for k, v in params.items()))
        return True

    def _prune(self, live: _Live, trial: Trial, summaries: list[dict]) -> float | None:
        """At a new compare step: does the study's pruner stop this trial? Its measure there if
        so. (Optuna's pruners compare with the other trials' measures at the same step.)"""
        optuna_trial = live.asked.get(trial.number)
        if optuna_trial is None or isinstance(live.optuna.pruner, _nop()) or not optuna_trial.should_prune():
            return None
        live.optuna.tell(optuna_trial, state=_state("PRUNED"))
        live.asked.pop(trial.number, None)
        last = compare_points(summaries, live.config.measure, live.config.step)[-1][1]
        self.store.update_trial(trial.id, state="pruned", value=last)
        return last

    def _finish(self, study: Study, live: _Live, trial: Trial, status: Status, summaries: list[dict]) -> None:
        """Its child ended: complete with the last save's measure when it exited cleanly, or
        was stopped or set aside for good after saving; fail otherwise."""
        values = measure_at_saves(summaries, live.config.measure)
        optuna_trial = live.asked.pop(trial.number, None)
        if values and status != Status.FAILED:
            if optuna_trial is not None:
                live.optuna.tell(optuna_trial, values[-1])
            self.store.update_trial(trial.id, state="complete", value=values[-1])
            self.children.note(study, f"trial {trial.number} complete ({status.value}): "
                                                                    f"{live.config.measure} {values[-1]:.6g}")
        else:
            if optuna_trial is not None:
                live.optuna.tell(optuna_trial, state=_state("FAIL"))
            self.store.update_trial(trial.id, state="fail")
            why = "no save reported the measure" if status != Status.FAILED else "its session failed"
            self.children.note(study, f"trial {trial.number} failed ({status.value}): {why}")


def _shown(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _state(name: str):
    from optuna.trial import TrialState

    return TrialState[name]


def _nop():
    from optuna.pruners import NopPruner

    return NopPruner
