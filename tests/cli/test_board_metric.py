"""A board never ranks scores computed another way: after its metric (or evaluator, or test
split) changes, the kept predictions are scored again, and what cannot be is archived apart.
Through the real CLI and server."""

import json
import shutil
import time

import pytest

from tests.cli.test_relaunch import PROJECT, TEST_Y, trained, write_board_dataset
from tests.conftest import Cli, clean_env, serve_for_module

# The threshold model predicts TEST_Y; these labels disagree on one row, so metrics differ.
LABELS = [0, 1, 0, 1, 0, 0]
ACCURACY = 5 / 6
F1 = ((2 * 3 / (2 * 3 + 0 + 1)) + (2 * 2 / (2 * 2 + 1 + 0))) / 2  # macro: class 0, class 1
assert sum(p == t for p, t in zip(TEST_Y, LABELS)) == 5


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_for_module(tmp_path_factory, "boards")


@pytest.fixture(scope="module")
def cli(server, tmp_path_factory) -> Cli:
    work = tmp_path_factory.mktemp("boards-work")
    shutil.copytree(PROJECT, work, dirs_exist_ok=True)
    return Cli(clean_env(server.home), work)


def board(cli, name, *extra) -> dict:
    return json.loads(cli("dataset", "board", "-j", *extra, name).stdout)


def settled(cli, name, seen: list, timeout=60) -> dict:
    """The board once nothing is being re-scored; every score seen meanwhile goes to `seen`."""
    deadline = time.monotonic() + timeout
    while True:
        data = board(cli, name, "--all")
        seen += [(data["metric"], r["score"]) for r in data["rows"]]
        if not data["rescoring"]:
            return data
        assert time.monotonic() < deadline, data
        time.sleep(0.2)


def test_changing_the_metric_rescores_the_kept_predictions(server, cli, tmp_path):
    cli("dataset", "push", "-l", "rescored", write_board_dataset(tmp_path / "data", labels=LABELS))
    source = trained(server, cli, dataset="rescored")
    for checkpoint in ("1", "2"):
        assert f"Score: {ACCURACY}" in cli("submit", source, checkpoint, timeout=180).stdout
    # The submit session of the first is removed: its predictions are kept with the submission.
    runner = next(s for s in json.loads(cli("ps", "-a", "-j").stdout) if s["kind"] == "submit")
    cli("rm", runner["name"])

    out = cli("dataset", "change", "rescored", "--metric", "f1").stdout
    assert "scored again with f1" in out
    seen = []
    data = settled(cli, "rescored", seen)
    assert data["metric"] == "f1" and [r["score"] for r in data["rows"]] == [pytest.approx(F1)] * 2
    assert all(score == pytest.approx(F1) for metric, score in seen), seen  # never an accuracy under f1
    assert data["archived"] == []
    table = cli("dataset", "board", "rescored").stdout
    assert "f1" in table and "0.828571" in table and "0.833333" not in table

    # Back to accuracy by a forced push naming it (same test split): scored again, exactly.
    cli("dataset", "push", "-f", "--metric", "accuracy", "rescored", write_board_dataset(tmp_path / "data", labels=LABELS))
    data = settled(cli, "rescored", seen)
    assert data["metric"] == "accuracy" and [r["score"] for r in data["rows"]] == [pytest.approx(ACCURACY)] * 2
    # The order alone changes no score, only the ranking direction.
    cli("dataset", "change", "rescored", "--order", "asc")
    assert [r["score"] for r in settled(cli, "rescored", seen)["rows"]] == [pytest.approx(ACCURACY)] * 2


def test_scores_that_cannot_be_recomputed_are_archived_not_mixed(server, cli, tmp_path):
    cli("dataset", "push", "-l", "archiving", write_board_dataset(tmp_path / "data", labels=LABELS))
    source = trained(server, cli, dataset="archiving")
    assert f"Score: {ACCURACY}" in cli("submit", source, "2", timeout=180).stdout
    # A new test split and a new metric: the old predictions answer other questions.
    new = write_board_dataset(tmp_path / "new", labels=LABELS)
    (new / "test" / "test_data").write_text("1\n9\n2\n8\n3\n7\n")
    (new / "test" / "test_label").write_text("0\n1\n0\n1\n0\n1\n")
    cli("dataset", "push", "-f", "--metric", "f1", "archiving", new)
    data = settled(cli, "archiving", [])
    assert data["rows"] == [] and data["rescoring"] == 0
    [archived] = data["archived"]
    assert archived["scored_with"] == "accuracy" and archived["score"] == pytest.approx(ACCURACY)
    assert "earlier test split" in archived["reason"] and archived["session"] == source
    out = cli("dataset", "board", "archiving").stdout
    assert "No scored submissions yet" in out and "1 submission scored another way is archived" in out
    out = cli("dataset", "board", "--archived", "archiving").stdout
    assert "accuracy" in out and "earlier test split" in out and source in out
    # New submits rank by themselves under f1.
    assert "Score: 1.0" in cli("submit", source, "2", timeout=180).stdout
    data = board(cli, "archiving")
    assert [r["score"] for r in data["rows"]] == [1.0] and len(data["archived"]) == 1
