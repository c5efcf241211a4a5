"""The measure a trial is compared by: at its saves, every `step` units (nsml.core.automl_measure)."""

import math

import pytest

from nsml.core.automl_measure import check_reported, compare_points, measure_at_saves
from nsml.core.errors import InvalidInput


def saves(*pairs):
    return [{"epoch": e, "val/acc": v, "loss": 1.0} for e, v in pairs]


def test_the_measure_at_each_save_is_what_was_reported_up_to_it():
    got = measure_at_saves([*saves((0, 0.5), (1, 0.6)), {"epoch": 2}, {"epoch": 3, "val/acc": math.nan}, {"val/acc": True}], "val/acc")
    assert got == [0.5, 0.6]


def test_compare_points_fall_on_each_multiple_of_the_step():
    s = saves((0, 0.1), (1, 0.2), (2, 0.3), (3, 0.4), (4, 0.5), (5, 0.6), (9, 0.9))
    # epoch 4 is the fifth epoch: the first compare; epoch 9 the tenth (a save that jumps answers it)
    assert compare_points(s, "val/acc", ("epoch", 5)) == [(1, 0.5), (2, 0.9)]
    assert compare_points(s, "val/acc", None) == []
    coarse = saves((14, 0.7))  # one save past three multiples at once
    assert compare_points(coarse, "val/acc", ("epoch", 5)) == [(1, 0.7), (2, 0.7), (3, 0.7)]


def test_a_measure_nobody_reported_stops_the_study_naming_what_was():
    check_reported("val/acc", ["val/acc", "loss"])
    with pytest.raises(InvalidInput) as err:
        check_reported("test/accuracy", ["test/acc", "loss", "epoch"], "alice/mnist/3")
    assert "alice/mnist/3: the measure test/accuracy was never reported by its trials; they reported: epoch, loss, test/acc" in str(err.value)


def test_a_save_at_a_huge_epoch_answers_a_bounded_number_of_compare_steps():
    from nsml.core.automl_measure import MAX_COMPARE_STEPS

    points = compare_points([{"epoch": 1e18, "val/acc": 0.5}, {"epoch": 1e300, "val/acc": 0.6}], "val/acc", ("epoch", 1))
    assert len(points) == MAX_COMPARE_STEPS and points[-1] == (MAX_COMPARE_STEPS, 0.5)


def test_the_save_that_answered_a_compare_step_is_found():
    from nsml.core.automl_measure import save_at_step

    s = saves((0, 0.1), (1, 0.2), (2, 0.3), (3, 0.4), (9, 0.9))
    assert save_at_step(s, "val/acc", ("epoch", 2), 1) == 1  # epoch 1, the second: step 1
    assert save_at_step(s, "val/acc", ("epoch", 2), 2) == 3
    assert save_at_step(s, "val/acc", ("epoch", 2), 4) == 4  # the jump to epoch 9 answers steps 3 to 5
    assert save_at_step(s, "val/acc", ("epoch", 2), 6) is None and save_at_step(s, "val/acc", None, 1) is None
