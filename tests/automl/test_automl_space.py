"""The study's space, samplers and schedulers as Optuna's (nsml.server.automl.space): every
algorithm of the config asks trials inside the space with the right types, grid covers its
space, a study replayed from its trials continues where it was."""

import random

import pytest

from nsml.core.automl_config import parse_config
from nsml.core.errors import InvalidInput
from nsml.server.automl import space

optuna = pytest.importorskip("optuna")

CONFIG = {"h_params": {
    "lr": {"parameters": [0.001, 0.1], "distribution": "log_uniform", "type": "float"},
    "depth": {"parameters": [2, 6], "distribution": "uniform", "type": "int"},
    "act": {"parameters": ["relu", "tanh"], "distribution": "categorical", "type": "str"}},
    "measure": "val/acc", "order": "descending"}


def objective(params) -> float:
    return -abs(params["lr"] - 0.01) - 0.1 * abs(params["depth"] - 4) + (0.05 if params["act"] == "tanh" else 0)


@pytest.mark.parametrize("algorithm", ["random", "tpe", "cmaes", "gp", "qmc"])
def test_every_algorithm_asks_inside_the_space_and_learns_from_tell(algorithm):
    config = parse_config({**CONFIG, "algorithm": algorithm})
    study = space.new_study(config, seed=1)
    rng = random.Random(1)
    for _ in range(12):
        trial, params = space.ask(study, config, rng)
        assert 0.001 <= params["lr"] <= 0.1 and isinstance(params["depth"], int) and 2 <= params["depth"] <= 6
        assert params["act"] in ("relu", "tanh")
        study.tell(trial, objective(params))
    assert len(study.trials) == 12 and study.best_value == max(t.value for t in study.trials)


def test_grid_covers_its_space_once():
    config = parse_config({**CONFIG, "algorithm": "grid", "h_params": {
        "depth": {"parameters": [2, 4], "distribution": "uniform", "type": "int"},
        "act": {"parameters": ["relu", "tanh"], "distribution": "categorical", "type": "str"}}})
    study = space.new_study(config, seed=0)
    seen = set()
    for _ in range(6):
        trial, params = space.ask(study, config, random.Random(0))
        seen.add((params["depth"], params["act"]))
        study.tell(trial, 0.0)
    assert seen == {(d, a) for d in (2, 3, 4) for a in ("relu", "tanh")}


def test_a_normal_prior_is_drawn_by_random_search_within_its_bounds():
    config = parse_config({**CONFIG, "h_params": {"wd": {"parameters": [0.5, 0.1], "distribution": "normal", "type": "float",
                                                         "p_range": [0.2, 0.8]}}})
    study = space.new_study(config, seed=3)
    rng = random.Random(3)
    values = []
    for _ in range(40):
        trial, params = space.ask(study, config, rng)
        values.append(params["wd"])
        study.tell(trial, 0.0)
    assert all(0.2 <= v <= 0.8 for v in values) and abs(sum(values) / len(values) - 0.5) < 0.06


def test_schedulers_are_optunas_pruners():
    assert isinstance(space.pruner(parse_config({**CONFIG, "scheduler": "median"})), optuna.pruners.MedianPruner)
    assert isinstance(space.pruner(parse_config({**CONFIG, "scheduler": "asha"})), optuna.pruners.SuccessiveHalvingPruner)
    assert isinstance(space.pruner(parse_config({**CONFIG, "scheduler": "hyperband"})), optuna.pruners.HyperbandPruner)
    assert isinstance(space.pruner(parse_config(CONFIG)), optuna.pruners.NopPruner)  # never create_study's default


def test_a_replayed_study_has_the_same_history():
    config = parse_config({**CONFIG, "algorithm": "tpe"})
    study = space.new_study(config, seed=5)
    kept = []
    for i in range(6):
        trial, params = space.ask(study, config, random.Random(i))
        value = objective(params)
        study.tell(trial, value)
        kept.append((params, value, {0: value / 2}, "complete"))
    again = space.new_study(config, seed=5)
    space.replay(again, config, kept + [({"lr": 0.5, "depth": 9, "act": "relu"}, None, {}, "fail")])  # out of space: left out
    assert [t.params for t in again.trials] == [t.params for t in study.trials]
    assert again.best_value == study.best_value and again.trials[0].intermediate_values == {0: kept[0][1] / 2}


def test_a_grid_too_large_is_refused():
    config = parse_config({**CONFIG, "algorithm": "grid", "h_params": {
        f"p{i}": {"parameters": list(range(10)), "distribution": "categorical", "type": "int"} for i in range(6)}})
    with pytest.raises(InvalidInput, match="more than 100,000"):
        space.new_study(config)


def test_a_grid_study_knows_its_size():
    config = parse_config({**CONFIG, "algorithm": "grid", "h_params": {
        "depth": {"parameters": [2, 4], "distribution": "uniform", "type": "int"},
        "act": {"parameters": ["relu", "tanh"], "distribution": "categorical", "type": "str"}}})
    assert space.grid_size(config) == 6 and space.grid_size(parse_config(CONFIG)) is None
