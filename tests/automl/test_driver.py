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
    children = Children(store)
    return study, Driver(store, children), children.launched, children.stopped


class Children:
    """The server's session machinery, played by the test over the real store: a child is a
    session row moved to running at once; stop, resume and end are recorded."""

    def __init__(self, store):
        self.store = store
        self.launched, self.stopped, self.resumed, self.ended, self.notes = [], [], [], [], []

    def launch(self, study, trial):
        child = new_session(self.store, "alice", "mnist")
        self.store.move_session(child.id, Status.RUNNING, started=time.time())
        self.launched.append((trial.number, child.id))
        return child.id

    def stop(self, session):
        self.stopped.append(session.id)

    def resume(self, session):
        self.resumed.append(session.id)
        return self.store.start_attempt(session.id, "0", 0, "resumed") is not None

    def end(self, study, status, note):
        self.ended.append((status, note))
        parent = self.store.session_by_id(study.session_id)
        self.store.move_session(parent.id, status, ended=time.time(), note=note, error=note if status == Status.FAILED else "")

    def note(self, study, line):
        self.notes.append(line)


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
    again = Driver(world, driver.children)  # a new server process: nothing in memory
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


def running_parent(store, study):
    store.move_session(study.session_id, Status.RUNNING, started=time.time())


def test_the_study_ends_with_its_parent_once_the_budget_is_spent_and_its_trials_ended(world):
    study, driver, launched, _ = start(world, {**CONFIG, "termination": {"max_session_number": 2}})
    running_parent(world, study)
    driver.step(study)
    for _, child in launched:
        train(world, child, 3, lambda e: 0.5)
        world.move_session(child, Status.EXITED, ended=time.time(), exit_code=0)
    driver.step(study)
    assert world.get_study(study.id).status == "exited"
    assert world.session_by_id(study.session_id).status == Status.EXITED
    assert "2 trials, its budget" in driver.children.ended[0][1]


def test_a_measure_no_trial_reports_stops_the_study_at_the_first_compare_step_naming_the_keys(world):
    study, driver, launched, stopped = start(world, {**CONFIG, "measure": "test/accuracy"})
    running_parent(world, study)
    driver.step(study)
    first, second = (c for _, c in launched)
    train(world, first, 1, lambda e: 0.5)  # epoch 0: before the first compare step (epoch 1)
    driver.step(study)
    assert world.get_study(study.id).status == "running"
    train(world, first, 2, lambda e: 0.5)
    driver.step(study)
    assert world.get_study(study.id).status == "running"  # the other trial may yet report it
    train(world, second, 2, lambda e: 0.5)
    driver.step(study)
    parent = world.session_by_id(study.session_id)
    assert parent.status == Status.FAILED
    assert "the measure test/accuracy was never reported by its trials; they reported: epoch, step, val/acc" in parent.error
    assert sorted(stopped) == sorted(c for _, c in launched)  # every trial stopped
    assert {t.state for t in world.trials(study.id)} == {"fail"}
    assert len(launched) == 2  # nothing more was started


def test_a_paused_trial_is_set_aside_and_resumed_once_no_new_trial_may_start(world):
    study, driver, launched, _ = start(world, {**CONFIG, "population": 1, "termination": {"max_session_number": 2}})
    running_parent(world, study)
    driver.step(study)
    first = launched[0][1]
    train(world, first, 1, lambda e: 0.5)
    world.move_session(first, Status.PAUSED, ended=time.time())  # nsml pause: set aside, its slot freed
    driver.step(study)
    assert driver.children.resumed == [] and len(launched) == 2  # the slot goes to a new trial
    second = launched[1][1]
    train(world, second, 3, lambda e: 0.6)
    world.move_session(second, Status.EXITED, ended=time.time(), exit_code=0)
    driver.step(study)
    assert driver.children.resumed == [first]  # the budget is spent: the paused one comes back
    assert world.session_by_id(first).status == Status.QUEUED and world.trials(study.id)[0].state == "running"
    assert world.get_study(study.id).status == "running"


def test_a_lost_trial_comes_back_before_any_new_one(world):
    study, driver, launched, _ = start(world, {**CONFIG, "population": 1})
    running_parent(world, study)
    driver.step(study)
    first = launched[0][1]
    train(world, first, 1, lambda e: 0.5)
    world.move_session(first, Status.LOST, ended=time.time())  # its node went away
    driver.step(study)
    assert driver.children.resumed == [first] and len(launched) == 1


def test_a_stopped_study_starts_nothing_more_and_ends_when_its_trials_have(world):
    study, driver, launched, _ = start(world, CONFIG)
    running_parent(world, study)
    driver.step(study)
    study = world.set_study_status(study.id, "stopping")
    first, second = (c for _, c in launched)
    train(world, first, 3, lambda e: 0.5)
    world.move_session(first, Status.EXITED, ended=time.time(), exit_code=0)
    driver.step(study)
    assert len(launched) == 2 and world.get_study(study.id).status == "stopping"
    world.move_session(second, Status.STOPPED, ended=time.time())
    driver.step(world.get_study(study.id))
    assert world.get_study(study.id).status == "stopped"
    assert world.session_by_id(study.session_id).status == Status.STOPPED
    assert [t.state for t in world.trials(study.id)] == ["complete", "fail"]


def test_a_server_without_optuna_refuses_a_study_with_one_line(monkeypatch):
    """A mock, as a last resort: the test venv has Optuna, so its absence is faked for the
    check alone (a server venv without the automl extra answers the same; see docs/automl.md)."""
    import importlib.util

    from nsml.core.automl_config import parse_config
    from nsml.core.errors import InvalidInput
    from nsml.server.automl import service

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    with pytest.raises(InvalidInput, match=r"AutoML needs Optuna on the server: .*pip install 'nsml\[automl\]'"):
        service._check_search(parse_config(CONFIG))
