"""Built-in leaderboard metrics, on prediction files as the built-in writer produces them."""

import pytest

from nsml.client.predict import format_row
from nsml.core.scoring import ScoringError, check_metric, default_order, parse_prediction_line, score


def written(rows) -> str:
    return "".join(format_row(r) + "\n" for r in rows)


def test_pairs_round_trip_through_the_prediction_file():
    rows = [(0.9, 1), (0.2, "cat"), ("x", [1, 2]), "plain", 3]
    parsed = [parse_prediction_line(line) for line in written(rows).splitlines()]
    assert parsed == [(0.9, "1"), (0.2, "cat"), (None, "[1, 2]"), (None, "plain"), (None, "3")]


def test_accuracy_scores_the_prediction_and_ignores_the_probability():
    preds = written([(0.1, 1), (0.99, 0), (0.5, 2), (0.5, 3)])
    assert score("accuracy", preds, "1\n0\n2\n0\n") == 0.75
    assert score("accuracy", "1.0\n2\n", "1\n2.0\n") == 1.0  # 1 and 1.0 are one class


def test_mse():
    assert score("mse", written([(0, 1.5), (0, 2.0)]), "1\n3\n") == pytest.approx((0.25 + 1) / 2)
    with pytest.raises(ScoringError, match="Row 2: the prediction 'abc' is not a number"):
        score("mse", "1\nabc\n", "1\n2\n")


def test_macro_f1():
    # class 1: tp=1 fp=1 fn=0 -> 2/3; class 0: tp=1 fp=0 fn=1 -> 2/3
    assert score("f1", "1\n1\n0\n", "1\n0\n0\n") == pytest.approx(2 / 3)


def test_roc_auc_uses_the_probability():
    preds = written([(0.9, 1), (0.8, 1), (0.3, 0), (0.35, 0)])
    assert score("roc-auc", preds, "1\n0\n1\n0\n") == pytest.approx(0.5)
    assert score("roc-auc", preds, "1\n1\n0\n0\n") == 1.0
    with pytest.raises(ScoringError, match="both classes"):
        score("roc-auc", preds, "1\n1\n1\n1\n")


def test_files_that_do_not_line_up():
    with pytest.raises(ScoringError, match="empty"):
        score("accuracy", "\n", "1\n")
    with pytest.raises(ScoringError, match="2 predictions for 3 test rows"):
        score("accuracy", "1\n2\n", "1\n2\n3\n")


def test_metric_names_and_orders():
    assert check_metric("ROC_AUC", "") == ("roc-auc", "desc")
    assert check_metric("mse", "") == ("mse", "asc") and default_order("mse") == "asc"
    assert check_metric("accuracy", "ascending") == ("accuracy", "asc")
    with pytest.raises(ValueError, match="Unknown metric 'bleu'"):
        check_metric("bleu", "")
    with pytest.raises(ValueError, match="Unknown order"):
        check_metric("f1", "up")


def test_nan_is_not_a_probability():
    assert parse_prediction_line('[NaN, 1]') == (None, "1")


def test_the_legacy_plain_format_is_read_verbatim():
    """NSML's test_data_loader protocol writes str(prediction) per line (nsml.client.predict)."""
    from nsml.client.predict import plain_row

    rows = [(0.9, 1), (0.2, [1, 2]), 3, (0.5, "cat"), (0.1, 2.0)]
    text = "".join(plain_row(r) + "\n" for r in rows)
    assert text == "1\n[1, 2]\n3\ncat\n2.0\n"
    assert score("accuracy", text, "1\n[1, 2]\n3\ncat\n2\n", plain=True) == 1.0
    assert score("accuracy", text, "1\n[1, 2]\n3\ncat\n2\n") == 0.8  # read as pairs, [1, 2] is a pair


def test_scoring_key_names_what_a_score_depends_on():
    from nsml.core.scoring import key_metric, same_test_split, scoring_key

    files = {"train/x": "a", "test/test_data": "b", "test/test_label": "c", "evaluation.py": "d", "data_loader.py": "e"}
    accuracy = scoring_key("accuracy", files)
    assert key_metric(accuracy) == "accuracy" and accuracy != scoring_key("f1", files)
    assert scoring_key("accuracy", {**files, "evaluation.py": "z", "train/x": "y"}) == accuracy  # not used by accuracy
    custom = scoring_key("custom", files)
    assert custom != scoring_key("custom", {**files, "evaluation.py": "z"})  # another evaluator
    assert custom == scoring_key("custom", {**files, "data_loader.py": "z"})  # predicts, does not score
    relabelled = scoring_key("accuracy", {**files, "test/test_label": "x"})
    assert relabelled != accuracy and not same_test_split(relabelled, accuracy) and same_test_split(custom, accuracy)
    assert not same_test_split("", accuracy)
