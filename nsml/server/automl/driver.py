"""A study's driver (issue 16, work in progress): one pass over a running study, as the server
holding the scheduler's lease would make every second or so.

Each pass, from what the store holds (so a restarted server continues where it was):
1. the Optuna study is rebuilt once from the stored trials (space.replay) and kept in memory;
2. every running trial whose child session reached a new compare step reports the measure at it
   (automl_measure.compare_points) to its Optuna trial; a pruner that says stop stops the child
   and the trial ends `pruned`;
3. a trial whose child ended is told its final measure (the last save's; `fail` without one);
4. new trials are asked while fewer than `population` run and the budget allows, each numbered
   once in the store before its child is created.

Launching and stopping children go through two callables (the server passes its session
creation and stop; tests pass their own), so this module needs no executor.
"""

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from nsml.core.automl_config import StudyConfig, parse_config
from nsml.core.automl_measure import compare_points, measure_at_saves
from nsml.core.entities import Study, Trial
from nsml.core.errors import Conflict
from nsml.core.states import FINAL, Status

from . import space


@dataclass
class _Live:
    config: StudyConfig
    optuna: object
    asked: dict[int, object] = field(default_factory=dict)  # trial number -> Optuna trial
    reported: dict[int, int] = field(default_factory=dict)  # trial number -> compare steps reported


class Driver:
    def __init__(self, store, launch: Callable[[Study, Trial], int], stop: Callable[[int], None]):
        self.store = store
        self.launch = launch  # (study, trial) -> the child session's id
        self.stop = stop  # child session id -> None
        self._live: dict[int, _Live] = {}

    def tick(self) -> None:
        for study in self.store.studies(("running",)):
            self.step(study)

    def step(self, study: Study) -> None:
        live = self._live.get(study.id) or self._rebuild(study)
        trials = self.store.trials(study.id)
        running = 0
        for trial in trials:
            if trial.state != "running":
                continue
            if trial.session_id is None:  # numbered, but its child never created (a restart between)
                trial = self.store.update_trial(trial.id, session_id=self.launch(study, trial))
            session = self.store.session_by_id(trial.session_id)
            summaries = [c.summary for c in sorted(self.store.list_checkpoints(session.id), key=lambda c: c.created)]
            reached = self._report(live, trial, summaries)
            if session.status in FINAL:
                self._finish(live, trial, session.status, summaries)
                continue
            if reached and self._prune(live, trial, summaries):
                self.stop(session.id)
                continue
            running += 1
        started = len(trials)
        budget = live.config.max_trials if live.config.max_trials is not None else space.grid_size(live.config)
        while running < live.config.population and (budget is None or started < budget):
            self._ask(study, live, started)
            started += 1
            running += 1

    def _rebuild(self, study: Study) -> _Live:
        config = parse_config(study.config)
        optuna_study = space.new_study(config, seed=study.seed)
        ended = [(t.params, t.value, t.steps, t.state) for t in self.store.trials(study.id) if t.state != "running"]
        space.replay(optuna_study, config, ended)
        live = self._live[study.id] = _Live(config, optuna_study)
        for t in self.store.trials(study.id):  # running ones are asked again with their stored parameters
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
            live.optuna.tell(optuna_trial, state=_fail())
            return
        live.asked[number] = optuna_trial
        self.store.update_trial(trial.id, session_id=self.launch(study, trial))

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
        live.reported[trial.number] = len(points)
        return len(points) > done

    def _prune(self, live: _Live, trial: Trial, summaries: list[dict]) -> bool:
        """At a new compare step: does the study's pruner stop this trial? (Optuna's pruners
        compare with the finished trials' measures at the same step.)"""
        optuna_trial = live.asked.get(trial.number)
        if optuna_trial is None or isinstance(live.optuna.pruner, _nop()) or not optuna_trial.should_prune():
            return False
        live.optuna.tell(optuna_trial, state=_pruned())
        live.asked.pop(trial.number, None)
        last = compare_points(summaries, live.config.measure, live.config.step)[-1][1]
        self.store.update_trial(trial.id, state="pruned", value=last)
        return True

    def _finish(self, live: _Live, trial: Trial, status: Status, summaries: list[dict]) -> None:
        values = measure_at_saves(summaries, live.config.measure)
        optuna_trial = live.asked.pop(trial.number, None)
        if values and status == Status.EXITED:
            if optuna_trial is not None:
                live.optuna.tell(optuna_trial, values[-1])
            self.store.update_trial(trial.id, state="complete", value=values[-1])
        else:
            if optuna_trial is not None:
                live.optuna.tell(optuna_trial, state=_fail())
            self.store.update_trial(trial.id, state="fail")


def _fail():
    from optuna.trial import TrialState

    return TrialState.FAIL


def _nop():
    from optuna.pruners import NopPruner

    return NopPruner


def _pruned():
    from optuna.trial import TrialState

    return TrialState.PRUNED
