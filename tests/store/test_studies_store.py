"""AutoML studies in the store (StudyStore), on SQLite and PostgreSQL: a trial number is taken
once, its compare steps and end are recorded, an ended trial never changes state again."""

import pytest

from nsml.core.errors import Conflict, NotFound
from tests.store.test_sql_store import new_session


def test_a_study_and_its_trials_round_trip(store):
    parent = new_session(store)
    study = store.create_study(parent.id, {"measure": "val/acc", "h_params": {"lr": {"parameters": [0.1, 1]}}}, seed=7)
    assert (study.session_id, study.seed, study.status, study.config["measure"]) == (parent.id, 7, "running", "val/acc")
    first = store.add_trial(study.id, 0, {"lr": 0.3})
    second = store.add_trial(study.id, 1, {"lr": 0.5}, parent=0)
    with pytest.raises(Conflict):
        store.add_trial(study.id, 1, {"lr": 0.9})  # a restarted controller cannot start trial 1 twice
    child = new_session(store)
    store.update_trial(first.id, session_id=child.id, step=(5, 0.61))
    store.update_trial(first.id, step=(10, 0.72))
    done = store.update_trial(first.id, state="complete", value=0.72)
    assert (done.session_id, done.steps, done.state, done.value) == (child.id, {5: 0.61, 10: 0.72}, "complete", 0.72)
    assert store.update_trial(first.id, state="pruned").state == "complete"  # ended once
    store.update_trial(second.id, state="pruned")
    got = store.trials(study.id)
    assert [(t.number, t.params, t.state, t.parent) for t in got] == [(0, {"lr": 0.3}, "complete", None), (1, {"lr": 0.5}, "pruned", 0)]
    assert [s.id for s in store.studies()] == [study.id]
    store.set_study_status(study.id, "stopped")
    assert store.studies() == [] and store.get_study(study.id).status == "stopped"
    with pytest.raises(NotFound):
        store.get_study(study.id + 99)
    with pytest.raises(ValueError):
        store.update_trial(first.id, state="weird")


def test_a_child_session_is_linked_to_its_trial_in_the_same_transaction(store):
    from nsml.core.resources import Resources
    from tests.store.test_sql_store import files

    study = store.create_study(new_session(store).id, {"measure": "m"}, seed=1)
    trial = store.add_trial(study.id, 0, {"lr": 0.1})
    child = store.create_session("alice", "digits", "main.py", "--lr 0.1", Resources(1, 1 << 30, 0), "", "",
                                 files(("main.py", "x")), trial_id=trial.id)
    assert store.trials(study.id)[0].session_id == child.id
    with pytest.raises(Conflict):  # a second child for the same trial: refused, and nothing created
        store.create_session("alice", "digits", "main.py", "", Resources(1, 1 << 30, 0), "", "", files(("main.py", "x")),
                             trial_id=trial.id)
    assert store.trials(study.id)[0].session_id == child.id


def test_a_studys_parent_is_found_by_its_session_and_by_kind(store):
    from nsml.core.resources import Resources
    from nsml.core.states import SessionKind
    from tests.store.test_sql_store import files

    parent = store.create_session("alice", "digits", "main.py", "", Resources(0, 0, 0), "", "", files(("main.py", "x")),
                                  kind=SessionKind.AUTOML)
    new_session(store)
    study = store.create_study(parent.id, {"measure": "m"}, seed=1)
    assert store.study_of_session(parent.id) == study
    with pytest.raises(NotFound):
        store.study_of_session(parent.id + 1)
    assert [s.id for s in store.list_sessions(kinds={SessionKind.AUTOML})] == [parent.id]
    assert len(store.list_sessions(kinds={SessionKind.AUTOML, SessionKind.NORMAL})) == 2
