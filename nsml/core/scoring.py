"""Built-in leaderboard metrics: predictions against the hidden labels, one row per line.

A prediction line is either a bare value (``cat``, ``3``, ``0.25``) or a JSON pair
``[probability, prediction]``: the built-in writer stores what ``infer`` returned in NSML's
format, ``[(probability, prediction), ...]``. Files written by NSML's legacy protocol (a
``test_data_loader``: one ``str(prediction)`` per line) are read with ``plain=True``: each line
is the prediction as it is, so a prediction that is itself a two-element list stays one.
Accuracy, MSE and F1 score the prediction; ROC-AUC ranks by the probability (or by the
prediction when it is the only value). Pure functions of text: the evaluator process feeds them
file contents.
"""

import hashlib
import json
import math

METRICS = ("accuracy", "mse", "f1", "roc-auc", "custom")
_ASCENDING = {"mse"}  # lower is better


class ScoringError(ValueError):
    """The predictions cannot be scored against the labels (a message for the submitter)."""


def default_order(metric: str) -> str:
    return "asc" if metric in _ASCENDING else "desc"


def check_metric(metric: str, order: str) -> tuple[str, str]:
    """Normalised (metric, order); accepts ascending/descending spelled out."""
    metric = metric.strip().lower().replace("_", "-")
    if metric == "auc":
        metric = "roc-auc"
    if metric not in METRICS:
        raise ValueError(f"Unknown metric '{metric}'; choose one of {', '.join(METRICS)}.")
    order = (order or default_order(metric)).strip().lower()
    order = {"ascending": "asc", "descending": "desc"}.get(order, order)
    if order not in ("asc", "desc"):
        raise ValueError(f"Unknown order '{order}'; use asc (lower is better) or desc (higher is better).")
    return metric, order


def scoring_key(metric: str, files: dict[str, str]) -> str:
    """What a board's scores depend on, as ``METRIC:CODE:TEST``: the metric, the evaluator's code
    (a custom metric's top-level .py files) and the test split, each by a short digest of the
    files' sha256 (`files`: the dataset's paths → sha256). Scores with the same key are
    comparable; a submission scored under another key is re-scored or archived, never mixed."""
    def digest(paths) -> str:
        text = "\n".join(f"{p} {files[p]}" for p in sorted(paths))
        return hashlib.sha256(text.encode()).hexdigest()[:12] if text else "-"

    code = digest(p for p in files if "/" not in p and p.endswith(".py") and p != "data_loader.py") if metric == "custom" else "-"
    return f"{metric}:{code}:{digest(p for p in files if p.startswith('test/'))}"


def key_metric(key: str) -> str:
    """The metric part of a scoring key ('' for scores recorded before keys existed)."""
    return key.split(":", 1)[0]


def same_test_split(key: str, other: str) -> bool:
    return bool(key and other) and key.rsplit(":", 1)[-1] == other.rsplit(":", 1)[-1]


def parse_prediction_line(line: str, plain: bool = False) -> tuple[float | None, str]:
    """(probability or None, prediction as text) for one line of a prediction file."""
    text = line.strip()
    if text.startswith("[") and not plain:
        try:
            pair = json.loads(text)
        except ValueError:
            pair = None
        if isinstance(pair, list) and len(pair) == 2:
            prob, pred = pair
            return (_number(prob), pred if isinstance(pred, str) else json.dumps(pred))
    return None, text


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _lines(text: str) -> list[str]:
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()  # a trailing newline is not a row
    return lines


def score(metric: str, predictions_text: str, labels_text: str, plain: bool = False) -> float:
    """The metric's value; ScoringError when the files do not line up or cannot be read.
    `plain`: the file holds one prediction per line and nothing else (NSML's legacy format)."""
    rows = [parse_prediction_line(line, plain) for line in _lines(predictions_text)]
    labels = [line.strip() for line in _lines(labels_text)]
    if not rows:
        raise ScoringError("The prediction file is empty: infer returned nothing.")
    if len(rows) != len(labels):
        raise ScoringError(f"{len(rows)} predictions for {len(labels)} test rows; infer must return one prediction per row.")
    if metric == "accuracy":
        return sum(_same(pred, label) for (_p, pred), label in zip(rows, labels)) / len(labels)
    if metric == "mse":
        preds = _floats([pred for _p, pred in rows], "prediction")
        truth = _floats(labels, "label")
        return sum((p - t) ** 2 for p, t in zip(preds, truth)) / len(truth)
    if metric == "f1":
        return _macro_f1([_canonical(pred) for _p, pred in rows], [_canonical(label) for label in labels])
    if metric == "roc-auc":
        scores = [prob if prob is not None else _floats([pred], "prediction")[0] for prob, pred in rows]
        return _roc_auc(scores, [_canonical(label) for label in labels])
    raise ScoringError(f"No built-in metric '{metric}'.")


def _canonical(text: str) -> str:
    """'1', '1.0' and ' 1 ' are one class; other text is compared as it is."""
    number = _number(text)
    if number is not None and number == int(number):
        return str(int(number))
    return text.strip()


def _same(pred: str, label: str) -> bool:
    return _canonical(pred) == _canonical(label)


def _floats(values: list[str], what: str) -> list[float]:
    out = []
    for i, value in enumerate(values, 1):
        number = _number(value)
        if number is None:
            raise ScoringError(f"Row {i}: the {what} {value!r} is not a number.")
        out.append(number)
    return out


def _macro_f1(preds: list[str], labels: list[str]) -> float:
    """F1 averaged over the classes that occur in the labels or the predictions."""
    f1s = []
    for cls in sorted(set(labels) | set(preds)):
        tp = sum(p == cls and t == cls for p, t in zip(preds, labels))
        fp = sum(p == cls and t != cls for p, t in zip(preds, labels))
        fn = sum(p != cls and t == cls for p, t in zip(preds, labels))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(f1s) / len(f1s)


def _roc_auc(scores: list[float], labels: list[str]) -> float:
    """Binary ROC-AUC (labels 0/1): the chance a positive outranks a negative, ties half."""
    classes = set(labels)
    if not classes <= {"0", "1"}:
        raise ScoringError(f"roc-auc needs labels 0 and 1; found {', '.join(sorted(classes)[:5])}.")
    if len(classes) < 2:
        raise ScoringError("roc-auc needs both classes in the test labels.")
    ranked = sorted(zip(scores, labels))
    # Mann-Whitney U with average ranks for ties.
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        average = (i + 1 + j) / 2
        rank_sum += average * sum(1 for _s, label in ranked[i:j] if label == "1")
        i = j
    positives = labels.count("1")
    negatives = len(labels) - positives
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
