"""An AutoML config (nsml.core.automl_config): NSML's format read as spec §6 writes it, and one
clear line for every way a config can be wrong, before anything runs."""

import pytest

from nsml.core.automl_config import HParam, parse_config
from nsml.core.errors import InvalidInput

SPEC_EXAMPLE = {
    "h_params": {
        "lr": {"parameters": [0.001, 0.009], "distribution": "log_uniform", "type": "float", "p_range": [0.001, 0.009]},
        "depth": {"parameters": [5, 10], "distribution": "uniform", "type": "int", "p_range": [5, 10]},
        "size": {"parameters": [2, 4, 8, 16, 32, 64, 128], "distribution": "categorical", "type": "int", "p_range": []},
        "activation": {"parameters": ["relu", "sigmoid", "tanh"], "distribution": "categorical", "type": "str", "p_range": []}},
    "args": "", "entry": "main.py", "dataset": "mnist", "population": 5, "step": {"epoch": 5},
    "order": "descending", "measure": "test__accuracy",
    "tune": {"pbt": {"exploit": "truncation", "explore": "perturb", "fork": False}},
    "agent_gpus": 0, "resources": {"gpus": 1, "cpus": 2, "memory": "24G", "shm-size": "1G"},
    "termination": {"max_session_number": 50}}


def test_the_spec_example_reads_as_written():
    c = parse_config(SPEC_EXAMPLE)
    assert c.measure == "test/accuracy" and c.direction == "maximize" and c.population == 5 and c.step == ("epoch", 5)
    assert (c.algorithm, c.scheduler, c.max_trials, c.dataset, c.entry) == ("random", "none", 50, "mnist", "main.py")
    assert c.pbt == {"exploit": "truncation", "explore": "perturb", "fork": False}
    assert c.resources == {"gpus": 1, "cpus": 2.0, "memory": 24 << 30, "shm_size": 1 << 30}
    params = {p.name: p for p in c.h_params}
    assert params["lr"] == HParam("lr", "log_uniform", "float", (0.001, 0.009), (0.001, 0.009))
    assert params["depth"].parameters == (5, 10) and isinstance(params["depth"].parameters[0], int)
    assert params["size"].parameters == (2, 4, 8, 16, 32, 64, 128) and params["activation"].bounds is None


def test_fork_true_means_pbt_and_budgets_read_as_durations():
    c = parse_config({**SPEC_EXAMPLE, "tune": {"pbt": {"fork": True}}, "order": "ascending",
                      "termination": {"max_wall_time": "12h", "max_gpu_hours": 100}, "algorithm": "tpe", "step": -1})
    assert (c.scheduler, c.direction, c.max_wall_time, c.max_gpu_hours, c.algorithm, c.step) == ("pbt", "minimize", 43200.0, 100.0, "tpe", None)


def with_param(**spec):
    return {**SPEC_EXAMPLE, "h_params": {"x": spec}}


@pytest.mark.parametrize("config, words", [
    (with_param(parameters=[0.009, 0.001], distribution="uniform"), "h_params.x: parameters [0.009, 0.001] is reversed or empty"),
    (with_param(parameters=[1, 2], distribution="gaussian"), "unknown distribution 'gaussian'"),
    (with_param(parameters=[1, 2], distribution="uniform", type="str"), "type str fits categorical only"),
    (with_param(parameters=[1.5, 4], distribution="uniform", type="int"), "type int needs whole bounds"),
    (with_param(parameters=["a", 2], distribution="categorical", type="str"), "2 is not of type str"),
    (with_param(parameters=[0, 1], distribution="log_uniform"), "log_uniform range must be above 0"),
    (with_param(parameters=[0, -1], distribution="normal"), "[mean, sd] with sd > 0"),
    (with_param(parameters=[1, 2], distribution="uniform", p_range=[1.5, 3]), "must contain the parameters' range"),
    (with_param(parameters=[1], distribution="uniform"), "parameters are two numbers"),
    (with_param(parameters=["a", "a"], distribution="categorical", type="str"), "listed twice"),
    ({**SPEC_EXAMPLE, "measure": ""}, "`measure` is the reported key"),
    ({**SPEC_EXAMPLE, "order": "up"}, "`order` is descending"),
    ({**SPEC_EXAMPLE, "algorithm": "bayes"}, "algorithm is one of random, grid, tpe, cmaes, gp, qmc"),
    ({**SPEC_EXAMPLE, "algorithm": "grid"}, "algorithm grid needs a finite space, but h_params.lr"),
    ({**SPEC_EXAMPLE, "population": 0}, "population is a whole number from 1"),
    ({**SPEC_EXAMPLE, "step": {"epoch": 0}}, "step.epoch is a whole number from 1"),
    ({**SPEC_EXAMPLE, "tune": {"pbt": {"explore": "jitter"}}}, "tune.pbt.explore is one of perturb, resample"),
    ({**SPEC_EXAMPLE, "termination": {"max_wall_time": "soon"}}, "max_wall_time is a duration"),
    ({**SPEC_EXAMPLE, "termination": {"forever": True}}, "termination has max_session_number"),
    ({**SPEC_EXAMPLE, "resources": {"memory": "lots"}}, "resources.memory is a size"),
    ({**SPEC_EXAMPLE, "h_param": {}}, "unknown key(s) h_param"),
    ({**SPEC_EXAMPLE, "h_params": {}}, "`h_params` maps each hyper-parameter"),
    ({**SPEC_EXAMPLE, "h_params": {"--x": {"parameters": [1, 2]}}}, "letters, digits, _ and - only"),
    ([1, 2], "must be a mapping"),
])
def test_a_bad_config_is_one_clear_line_naming_the_key(config, words):
    with pytest.raises(InvalidInput) as err:
        parse_config(config, "config.yaml")
    message = str(err.value)
    assert words in message and message.startswith("config.yaml") and "\n" not in message


def test_preemptible_trials_are_a_flag():
    assert parse_config({**SPEC_EXAMPLE, "preemptible": True}).preemptible is True
    assert parse_config(SPEC_EXAMPLE).preemptible is False
    with pytest.raises(InvalidInput, match="preemptible is true or false, not 'yes'"):
        parse_config({**SPEC_EXAMPLE, "preemptible": "yes"})
