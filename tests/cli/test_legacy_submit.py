"""NSML programs and leaderboard datasets of 2017-2021, unmodified, through the real CLI and server:
the legacy test_data_loader protocol, evaluation.py shipped at the dataset's root, save without
bind, the labels at /data/NAME for 2018 evaluation scripts, and submit -b."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.test_relaunch import PROJECT, TEST_X, TEST_Y, trained, write_board_dataset
from tests.conftest import Cli, Server, check_failed, clean_env, kill_leftover_supervisors, serve_for_module, start_session


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_for_module(tmp_path_factory, "legacy")


@pytest.fixture(scope="module")
def cli(server, tmp_path_factory) -> Cli:
    work = tmp_path_factory.mktemp("legacy-work")
    shutil.copytree(PROJECT, work, dirs_exist_ok=True)
    return Cli(clean_env(server.home), work)


def submit(cli, *args, check=True):
    return cli("submit", *args, check=check, timeout=180)


def runner_of(proc) -> str:
    """The submit session's name, from `Submit of S checkpoint C runs as RUNNER`."""
    return re.search(r"runs as (\S+)", proc.stderr).group(1)


# The 2018 hackathon layout: data_loader.py with only test_data_loader (it appends
# test/test_data to the root it is given), and an evaluation.py that parses one str(prediction)
# per line and, like the baselines, prints 0 when it cannot.
LEGACY_LOADER = """\
import os

def test_data_loader(root_path):
    with open(os.path.join(root_path, 'test', 'test_data')) as f:
        return [float(line) for line in f if line.strip()]
"""
LEGACY_EVALUATION = """\
import argparse

def read_prediction(prediction_file):
    with open(prediction_file) as f:
        return [int(line) for line in f if line.strip()]

def evaluation_metrics(prediction_file, testset_path):
    predictions = read_prediction(prediction_file)
    with open(testset_path) as f:
        labels = [int(line) for line in f if line.strip()]
    return sum(p == t for p, t in zip(predictions, labels)) / len(labels)

if __name__ == '__main__':
    args = argparse.ArgumentParser()
    args.add_argument('--prediction', type=str, default='pred.txt')
    args.add_argument('--test_label_path', type=str)
    config = args.parse_args()
    try:
        print(evaluation_metrics(config.prediction, config.test_label_path))
    except Exception:
        print('0')
"""


def test_legacy_test_data_loader_gets_the_root_and_its_evaluation_reads_str_predictions(server, cli, tmp_path):
    data = write_board_dataset(tmp_path / "kin-data", **{"data_loader.py": LEGACY_LOADER})
    evaluation = tmp_path / "evaluation.py"
    evaluation.write_text(LEGACY_EVALUATION)
    cli("dataset", "push", "kin", data, "-e", evaluation)
    source = trained(server, cli, dataset="kin")
    proc = submit(cli, source, "2")
    assert "Score: 1.0" in proc.stdout, proc.stdout + proc.stderr
    # The file is NSML's: one str(prediction) per line, the probability dropped.
    runner = server.session(runner_of(proc))
    kept = server.home / "predictions" / f"submission-{_submission_id(server, runner['name'])}.txt"
    assert kept.read_text() == "".join(f"{y}\n" for y in TEST_Y)


def _submission_id(server, runner: str) -> int:
    subs = server.api.get(f"/api/datasets/{runner.split('/')[1]}/submissions").json()
    return next(s["id"] for s in subs if s["runner"] == runner)


def test_built_in_metrics_read_the_legacy_format(server, cli, tmp_path):
    data = write_board_dataset(tmp_path / "kin-f1-data", **{"data_loader.py": LEGACY_LOADER})
    cli("dataset", "push", "kin_f1", data, "--metric", "f1")
    source = trained(server, cli, dataset="kin_f1")
    assert "Score: 1.0" in submit(cli, source, "2").stdout


# -- nsml.save() with nothing bound (NSML's tutorials) ---------------------------------------------
TUTORIAL = """\
import nsml
for epoch in range(3):
    nsml.report(step=epoch, loss=1.0 / (epoch + 1))
    nsml.save(epoch * 5)
print('trained')
"""


def test_save_with_nothing_bound_keeps_empty_checkpoints(server, cli, tmp_path):
    project = tmp_path / "tutorial"
    project.mkdir()
    (project / "main.py").write_text(TUTORIAL)
    cli("dataset", "push", "tutorial", write_board_dataset(tmp_path / "tutorial-data"))
    name = start_session(cli, "-d", "tutorial", cwd=project)
    info = server.wait(name)
    logs = cli("logs", name).stdout
    assert info["status"] == "exited", logs
    assert "trained" in logs
    assert logs.count("nsml.save: nothing is bound, so checkpoints are kept empty") == 1
    listed = json.loads(cli("model", "ls", "-j", name).stdout)
    assert [c["name"] for c in listed] == ["0", "5", "10"] and all(c["size"] == 0 for c in listed)
    assert "10" in cli("model", "ls", name).stdout


# -- evaluation.py at the dataset's root -----------------------------------------------------------
BINARY_LOADER = """\
import os, pickle
import nsml

def feed_infer(output_file, infer_func):
    rows = [line.strip() for line in open(os.path.join(nsml.DATASET_PATH, 'test', 'test_data')) if line.strip()]
    with open(output_file, 'wb') as f:
        pickle.dump([label for _prob, label in infer_func(rows)], f)  # binary, as image tasks wrote them
"""
BINARY_EVALUATION = """\
import argparse, pickle
p = argparse.ArgumentParser()
p.add_argument('--prediction'); p.add_argument('--test_label_path')
a = p.parse_args()
predictions = pickle.load(open(a.prediction, 'rb'))
labels = [int(line) for line in open(a.test_label_path) if line.strip()]
print(sum(x == y for x, y in zip(predictions, labels)) * 100 / len(labels))
"""


def test_push_l_uses_the_evaluation_py_it_ships_even_for_binary_predictions(server, cli, tmp_path):
    data = write_board_dataset(tmp_path / "food-data", **{"data_loader.py": BINARY_LOADER, "evaluation.py": BINARY_EVALUATION})
    out = cli("dataset", "push", "-l", "food", data).stdout
    assert "Leaderboard: custom, scored by the dataset's evaluation.py" in out
    assert json.loads(cli("dataset", "board", "-j", "food").stdout)["metric"] == "custom"
    source = trained(server, cli, dataset="food")
    proc = submit(cli, source, "2")
    assert "Score: 100.0" in proc.stdout, proc.stderr


def test_a_named_built_in_metric_wins_and_says_the_evaluator_is_unused(server, cli, tmp_path):
    data = write_board_dataset(tmp_path / "named-data", **{"evaluation.py": BINARY_EVALUATION})
    out = cli("dataset", "push", "-l", "--metric", "accuracy", "named", data).stdout
    assert "Leaderboard: accuracy" in out and "evaluation.py is not used" in out
    source = trained(server, cli, dataset="named")
    assert "Score: 1.0" in submit(cli, source, "2").stdout
    # A dataset without evaluation.py: -l means accuracy, as before.
    assert "Leaderboard: accuracy, higher is better" in cli("dataset", "push", "-l", "plainl", write_board_dataset(tmp_path / "p")).stdout


# -- submit -b N -----------------------------------------------------------------------------------
BATCH_PROJECT = """\
import argparse, json, os
import nsml

def save(d): open(os.path.join(d, 'm'), 'w').write('5')
def load(d): pass
def infer(data, batch_size=None):
    print('infer got batch_size', batch_size, flush=True)
    return [(0.5, int(x > 5)) for x in data]
nsml.bind(save=save, load=load, infer=infer)
p = argparse.ArgumentParser()
p.add_argument('--mode', default='train'); p.add_argument('--pause', type=int, default=0)
p.add_argument('--iteration', default='0')
if p.parse_args().pause:
    nsml.paused(scope=locals())
nsml.save('0')
"""
BATCH_LOADER = """\
import os

def test_data_loader(root_path, batch_size=100):
    print('loader got batch_size', batch_size, flush=True)
    return [float(line) for line in open(os.path.join(root_path, 'test', 'test_data')) if line.strip()]
"""


def test_submit_b_passes_the_batch_size_where_it_is_taken(server, cli, tmp_path):
    assert re.search(r"--batch-size\s+-b\s+N\s+Batch size", cli("submit", "--help").stdout)
    project = tmp_path / "batch"
    project.mkdir()
    (project / "main.py").write_text(BATCH_PROJECT)
    cli("dataset", "push", "batched", write_board_dataset(tmp_path / "batch-data", **{"data_loader.py": BATCH_LOADER}), "-l")
    name = start_session(cli, "-d", "batched", cwd=project)
    assert server.wait(name)["status"] == "exited"
    proc = submit(cli, name, "0", "-b", "2")
    assert "Score: 1.0" in proc.stdout, proc.stderr
    logs = cli("logs", runner_of(proc)).stdout
    assert "loader got batch_size 2" in logs and "infer got batch_size 2" in logs
    # Without -b, each function keeps its own default.
    logs = cli("logs", runner_of(submit(cli, name, "0", "-t"))).stdout
    assert "loader got batch_size 100" in logs and "infer got batch_size None" in logs
    assert "positive number" in check_failed(cli("submit", name, "0", "-b", "0", check=False))


def test_submit_b_says_when_nothing_takes_a_batch_size(server, cli, tmp_path):
    cli("dataset", "push", "nobatch", write_board_dataset(tmp_path / "nobatch-data", **{"data_loader.py": LEGACY_LOADER}), "--metric", "accuracy")
    source = trained(server, cli, dataset="nobatch")  # its infer(data, **kwargs) has no batch_size
    proc = submit(cli, source, "2", "-b", "4")
    assert "Score: 1.0" in proc.stdout
    assert "submit -b 4: neither the data loader nor the bound infer has a batch_size parameter" in cli("logs", runner_of(proc)).stdout


# -- the labels at /data/NAME without mount namespaces ---------------------------------------------
HARD_CODED = """\
import argparse
p = argparse.ArgumentParser(); p.add_argument('--prediction')
a = p.parse_args()
import os, json
labels = open('/data/hardcoded/test/test_label').read().split()
assert os.path.exists('/data/hardcoded/test/test_label') and 'test_label' in os.listdir('/data/hardcoded/test')
predictions = [json.loads(line)[1] for line in open(a.prediction) if line.strip()]
print(sum(str(p) == t for p, t in zip(predictions, labels)) / len(labels))
"""


def no_mount_namespaces_server(home: Path) -> Server:
    """The platform as it runs where the kernel gives it no mount namespaces: as root without
    CAP_SYS_ADMIN (a default container) or as an ordinary user."""
    from nsml.scheduler.sandbox import readonly_mounts_work

    if not readonly_mounts_work():
        return Server(home)  # already so here
    if not shutil.which("setpriv"):
        pytest.skip("needs setpriv to run the server without CAP_SYS_ADMIN")
    wrapper = home.parent / "python-without-sys-admin"
    wrapper.write_text(f'#!/bin/sh\nexec setpriv --bounding-set -sys_admin -- {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    probe = subprocess.run([str(wrapper), "-c", "from nsml.scheduler.sandbox import readonly_mounts_work as r; print(r())"],
                           capture_output=True, text=True, env=clean_env(home))
    assert probe.stdout.strip() == "False", probe.stdout + probe.stderr
    return Server(home, python=str(wrapper))


def test_evaluation_reads_the_labels_at_data_path_without_mount_namespaces(tmp_path):
    srv = no_mount_namespaces_server(tmp_path / "home").start()
    try:
        work = tmp_path / "work"
        shutil.copytree(PROJECT, work)
        cli = Cli(clean_env(srv.home), work)
        evaluation = tmp_path / "evaluation.py"
        evaluation.write_text(HARD_CODED)  # 2018 style: only --prediction, labels at the fixed path
        cli("dataset", "push", "hardcoded", write_board_dataset(tmp_path / "hard-data"), "-e", evaluation)
        source = trained(srv, cli, dataset="hardcoded")
        proc = submit(cli, source, "2")
        assert "Score: 1.0" in proc.stdout, proc.stderr
        # --test_label_path still names a file that exists, for the scripts that take it.
        evaluation.write_text(LEGACY_EVALUATION.replace("int(line) for line in f if", "json.loads(line)[1] for line in f if", 1)
                              .replace("import argparse", "import argparse, json"))
        cli("dataset", "push", "-f", "hardcoded", write_board_dataset(tmp_path / "hard-data"), "-e", evaluation)
        assert "Score: 1.0" in submit(cli, source, "1").stdout
    finally:
        srv.stop()
        kill_leftover_supervisors(srv.home)
