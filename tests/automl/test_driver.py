"""The study driver against the real store (SQLite): children are session rows it asks the
launch callable for; a test moves them along (ingesting their journal, saving checkpoints, ending
them) as sessions would. Trials complete with the measure at their last save, at most
`population` run at once, the budget holds, a pruner stops a hopeless trial, and a new driver
(a restarted server) goes on without starting a trial twice."""

import time

import pytest

from nsml.core.states import Status
from nsml.server.automl.driver import Driver
from tests.store.test_sql_store import files, line, new_session

pytest.importorskip("optuna")

CONFIG = {"h_params": {"lr": {"parameters": [0.001, 0.1], "distribution": "log_uniform", "type": "float"}},
          "measure": "val/acc", "order": "descending", "population": 2, "step": {"epoch": 2},
          "termination": {"max_session_number": 4}}


@pytest.fixture
def world(tmp_path):
    from nsml.store.sql import open_store

    store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield store
    store.close()


def start(store, config):
    parent = new_session(store, "alice", "mnist")
    study = store.create_study(parent.id, config, seed=3)
    launched, stopped = [], []

    def launch(study, trial):
        child = new_session(store, "alice", "mnist")
        store.move_session(child.id, Status.RUNNING, started=time.time())
        launched.append((trial.number, child.id))
        return child.id

    return study, Driver(store, launch, stopped.append), launched, stopped


def train(store, session_id, epochs, value_of, offset=0, exit_code=0):
    """The child reports val/acc each epoch and saves after each; then ends."""
    for epoch in range(epochs):
        data = line(step=epoch, epoch=epoch, **{"val/acc": value_of(epoch)})
        store.ingest_journal(session_id, offset, data)
        offset += len(data)
        store.put_checkpoint(session_id, str(epoch), time.time() + epoch * 1e-3, files(("m", f"{epoch}")))
    return offset


def test_trials_run_population_at_a_time_complete_and_stop_at_the_budget(world):
    study, driver, launched, _ = start(world, CONFIG)
    driver.step(study)
    assert [n for n, _ in launched] == [0, 1]  # population 2
    for number, child in launched[:2]:
        train(world, child, 3, lambda e: 0.5 + 0.1 * e)
        world.move_session(child, Status.EXITED, ended=time.time(), exit_code=0)
    driver.step(study)
    trials = world.trials(study.id)
    assert [(t.number, t.state, t.value) for t in trials[:2]] == [(0, "complete", pytest.approx(0.7)), (1, "complete", pytest.approx(0.7))]
    assert trials[0].steps == {1: pytest.approx(0.6)}  # epoch 1 (the second): the first compare step
    assert [n for n, _ in launched] == [0, 1, 2, 3]
    for _, child in launched[2:]:
        world.move_session(child, Status.FAILED, ended=time.time(), exit_code=1)  # no save: fail
    driver.step(study)
    assert [t.state for t in world.trials(study.id)] == ["complete", "complete", "fail", "fail"]
    assert len(launched) == 4  # max_session_number


def test_a_restarted_driver_goes_on_without_a_second_start(world):
    study, driver, launched, _ = start(world, CONFIG)
    driver.step(study)
    again = Driver(world, driver.launch, driver.stop)  # a new server process: nothing in memory
    again.step(study)
    assert [n for n, _ in launched] == [0, 1]
    numbers = [t.number for t in world.trials(study.id)]
    assert numbers == [0, 1]


def test_a_median_pruner_stops_the_trial_far_below_the_others(world):
    config = {**CONFIG, "scheduler": "median", "population": 3, "termination": {"max_session_number": 3}}
    study, driver, launched, stopped = start(world, config)
    driver.step(study)
    good = [c for _, c in launched[:2]]
    for child in good:  # two trials finish first: the pruner compares with finished ones
        train(world, child, 2, lambda e: 0.9)
        world.move_session(child, Status.EXITED, ended=time.time(), exit_code=0)
    driver.step(study)
    bad = launched[2][1]
    train(world, bad, 2, lambda e: 0.1)
    driver.step(study)
    assert stopped == [bad] and world.trials(study.id)[2].state == "pruned"


def test_without_a_scheduler_nothing_is_pruned(world):
    config = {**CONFIG, "population": 3, "termination": {"max_session_number": 3}}
    study, driver, launched, stopped = start(world, config)
    driver.step(study)
    for child in [c for _, c in launched[:2]]:
        train(world, child, 2, lambda e: 0.9)
        world.move_session(child, Status.EXITED, ended=time.time(), exit_code=0)
    driver.step(study)
    train(world, launched[2][1], 2, lambda e: 0.1)
    driver.step(study)
    assert stopped == [] and world.trials(study.id)[2].state == "running"
