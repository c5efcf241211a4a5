"""PBT's exploit and explore moves (nsml.core.automl_pbt): the bottom quarter copies the top
quarter, and the copy's hyper-parameters move within their bounds."""

import random

from nsml.core.automl_config import parse_config
from nsml.core.automl_pbt import exploit, explore

CONFIG = parse_config({
    "h_params": {"lr": {"parameters": [0.001, 0.1], "distribution": "log_uniform", "type": "float", "p_range": [0.0005, 0.2]},
                 "depth": {"parameters": [2, 4], "distribution": "uniform", "type": "int"},
                 "act": {"parameters": ["relu", "tanh"], "distribution": "categorical", "type": "str"}},
    "measure": "acc", "order": "descending", "scheduler": "pbt", "step": {"epoch": 1}})


def test_the_bottom_quarter_copies_one_of_the_top_quarter():
    values = {n: n / 10 for n in range(8)}  # 7 is best (descending), 0 and 1 worst
    rng = random.Random(0)
    assert {exploit(values, 0, "maximize", rng) for _ in range(50)} == {6, 7}
    assert exploit(values, 1, "maximize", rng) in (6, 7)
    assert exploit(values, 4, "maximize", rng) is None  # the middle goes on
    assert exploit(values, 7, "minimize", rng) in (0, 1)  # ascending: lower is better


def test_nobody_copies_without_a_peer_at_the_step():
    rng = random.Random(0)
    assert exploit({3: 0.5}, 3, "maximize", rng) is None
    assert exploit({3: 0.5, 4: 0.9}, 5, "maximize", rng) is None  # not at this step yet
    assert exploit({3: 0.5, 4: 0.9}, 3, "maximize", rng) == 4


def test_perturbed_values_stay_within_their_bounds_and_whole_numbers_move():
    rng = random.Random(1)
    for _ in range(200):
        new = explore(CONFIG, {"lr": 0.19, "depth": 4, "act": "relu"}, rng)
        assert new["lr"] == 0.2 or abs(new["lr"] - 0.19 * 0.8) < 1e-12  # x 1.2 is clamped to p_range's 0.2
        assert new["depth"] in (3, 4) and isinstance(new["depth"], int)  # 4 * 1.2 is clamped to the range's 4
        assert new["act"] in ("relu", "tanh")
    moved = {explore(CONFIG, {"lr": 0.01, "depth": 3, "act": "relu"}, rng)["depth"] for _ in range(50)}
    assert moved <= {2, 4} and moved  # 3 * 0.8 and 3 * 1.2 round to 3: it moves by one instead


def test_resample_draws_afresh_from_the_distribution():
    config = parse_config({"h_params": {"lr": {"parameters": [0.001, 0.1], "distribution": "log_uniform", "type": "float"}},
                           "measure": "acc", "step": {"epoch": 1}, "tune": {"pbt": {"explore": "resample", "fork": True}}})
    rng = random.Random(2)
    drawn = [explore(config, {"lr": 0.05}, rng)["lr"] for _ in range(200)]
    assert all(0.001 <= v <= 0.1 for v in drawn) and min(drawn) < 0.003 and max(drawn) > 0.05
