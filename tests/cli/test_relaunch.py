"""Fork, submit and infer through the real CLI and server, with a script in the NSML style."""

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import Cli, check_failed, clean_env, run_dir, serve_for_module, start_session

PROJECT = Path(__file__).parent / "relaunch_project"
TEST_X = [2, 8, 3, 9, 7, 1]
TEST_Y = [0, 1, 0, 1, 1, 0]
PAUSED_TIMEOUT = 8


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_for_module(tmp_path_factory, "relaunch", env={"NSML_PAUSED_TIMEOUT": str(PAUSED_TIMEOUT)})


@pytest.fixture(scope="module")
def cli(server, tmp_path_factory) -> Cli:
    work = tmp_path_factory.mktemp("relaunch-work")
    shutil.copytree(PROJECT, work, dirs_exist_ok=True)
    cli = Cli(clean_env(server.home), work)
    data = write_board_dataset(work.parent / "board-data")
    cli("dataset", "push", "board", data, "--leaderboard")
    cli("dataset", "push", "plain", data)  # same files, no leaderboard
    return cli


def write_board_dataset(folder: Path, labels=TEST_Y, **extra: str) -> Path:
    (folder / "train").mkdir(parents=True, exist_ok=True)
    (folder / "test").mkdir(exist_ok=True)
    (folder / "train" / "train_data").write_text("\n".join(str(x) for x in range(11)) + "\n")
    (folder / "test" / "test_data").write_text("\n".join(map(str, TEST_X)) + "\n")
    (folder / "test" / "test_label").write_text("\n".join(map(str, labels)) + "\n")
    for name, text in extra.items():
        (folder / name).write_text(text)
    return folder


def trained(server, cli, dataset="board", args="") -> str:
    name = start_session(cli, "-d", dataset, *(["-a", args] if args else []))
    assert server.wait(name)["status"] == "exited", cli("logs", name).stdout
    return name


def submit(cli, *args, check=True):
    return cli("submit", *args, check=check, timeout=180)


def test_fork_continues_from_the_checkpoint(server, cli):
    source = trained(server, cli)
    out = cli("fork", source, "-c", "1").stdout
    owner, dataset, n = source.split("/")
    fork = f"{owner}/{dataset}/{int(n) + 1}"
    assert f"Session {fork} is started" in out and "checkpoint 1" in out
    info = server.wait(fork)
    assert info["status"] == "exited", cli("logs", fork).stdout
    assert (info["kind"], info["source"], info["source_checkpoint"]) == ("fork", source, "1")
    logs = cli("logs", fork).stdout
    assert "model loaded!" in logs and "training from epoch 2 (mode train)" in logs
    assert [c["name"] for c in json.loads(cli("model", "ls", fork, "-j").stdout)] == ["2", "3", "4"]


def test_fork_defaults_to_the_latest_checkpoint_and_takes_new_args(server, cli):
    source = trained(server, cli)
    out = cli("fork", source, "-a", "--epochs 1").stdout
    fork = out.split()[1]
    info = server.wait(fork)
    assert info["source_checkpoint"] == "2" and info["args"] == "--epochs 1"
    assert "training from epoch 3" in cli("logs", fork).stdout
    assert [c["name"] for c in json.loads(cli("model", "ls", fork, "-j").stdout)] == ["3"]


def test_submit_scores_without_training_and_ranks(server, cli):
    source = trained(server, cli, args="--positional_bind")
    proc = submit(cli, source, "2")
    assert "Score: 1.0" in proc.stdout and "Done" in proc.stdout
    runner = next(s for s in json.loads(cli("ps", "-a", "-j").stdout) if s["kind"] == "submit" and s["source"] == source)
    logs = cli("logs", runner["name"]).stdout
    assert "model loaded!" in logs and "training from epoch" not in logs
    board = json.loads(cli("dataset", "board", "board", "-j").stdout)
    assert board["metric"] == "accuracy" and board["order"] == "desc"
    mine = [r for r in board["rows"] if r["session"] == source]
    assert mine and mine[0]["score"] == 1.0 and mine[0]["checkpoint"] == "2"
    table = cli("dataset", "board", "board").stdout
    assert "Rank" in table and source in table


def test_board_shows_each_owners_best_or_all(server, cli):
    good = trained(server, cli)
    submit(cli, good, "0")
    # A worse model: same code, a dataset where half the labels disagree is not possible per
    # session, so rank a test run (never ranked) and a second real submit instead.
    submit(cli, good, "1", "-t")
    best = json.loads(cli("dataset", "board", "board", "-j").stdout)["rows"]
    every = json.loads(cli("dataset", "board", "board", "--all", "-j").stdout)["rows"]
    assert len({r["owner"] for r in best}) == len(best)  # one row per owner
    assert len(every) >= 2 and len(every) == best[0]["count"]
    assert all(r["checkpoint"] != "1" or r["session"] != good for r in every)  # -t is not ranked


def test_submit_test_mode_is_not_ranked(server, cli):
    source = trained(server, cli)
    before = json.loads(cli("dataset", "board", "board", "--all", "-j").stdout)["rows"]
    proc = submit(cli, source, "2", "-t")
    assert "Test submit OK: the evaluator returned a score" in proc.stdout and "not ranked" in proc.stdout
    assert "Score" not in proc.stdout and "1.0" not in proc.stdout  # never the number (tests/security/test_evaluator.py)
    after = json.loads(cli("dataset", "board", "board", "--all", "-j").stdout)["rows"]
    assert len(after) == len(before)


def test_infer_serves_the_loaded_model_and_reuses_it(server, cli):
    source = trained(server, cli)
    first = cli("infer", f"{source}/2", input="7\n1\n").stdout.split()
    assert first == ["1", "0"]
    assert cli("infer", source, "2", input="9\n").stdout.split() == ["1"]
    infer_sessions = [s for s in json.loads(cli("ps", "-j").stdout) if s["kind"] == "infer" and s["source"] == source]
    assert len(infer_sessions) == 1
    runner = infer_sessions[0]["name"]
    assert cli("logs", runner).stdout.count("model loaded!") == 1  # loaded once, asked twice
    # The same model over HTTP, as documented in the OpenAPI schema.
    owner, dataset, n = runner.split("/")
    resp = server.api.post(f"/api/sessions/{owner}/{dataset}/{n}/infer", json={"data": ["10", "0"]})
    assert resp.status_code == 200 and resp.json()["output"] == [[0.9, 1], [0.9, 0]]
    assert "/api/sessions/{owner}/{dataset}/{number}/infer" in server.api.get("/openapi.json").json()["paths"]
    assert "is stopped" in cli("infer", f"{source}/2", "--stop").stdout
    ended = server.wait(runner)
    assert ended["status"] in ("stopped", "exited") and ended["error"] == ""


# -- the hidden test set stays hidden ------------------------------------------------------------
PROBE = '''
import argparse, os, sys
import nsml
p = argparse.ArgumentParser()
p.add_argument('--mode', default='train'); p.add_argument('--pause', type=int, default=0)
p.add_argument('--iteration', default='0'); p.add_argument('--home', default='')
config = p.parse_args()

def save(d): open(os.path.join(d, 'm'), 'w').write('m')
def load(d): pass
def infer(data):
    probe('submit')
    return [(1, 0)] * 6
nsml.bind(save=save, load=load, infer=infer)

def probe(where):
    root = nsml.DATASET_PATH
    for rel in ('train/train_data', 'test/test_data', 'test/test_label'):
        print(where, rel, 'readable' if os.path.exists(os.path.join(root, rel)) else 'absent', flush=True)
    found = []
    for folder, _dirs, files in os.walk(os.path.join(config.home, 'blobs')):
        for f in files:
            try:
                if open(os.path.join(folder, f), 'rb').read() == LABEL:
                    found.append(f)
            except OSError:
                pass
    print(where, 'label-in-blobs', 'found' if found else 'hidden', flush=True)

LABEL = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'label.txt'), 'rb').read()
if config.pause:
    nsml.paused(scope=locals())
probe('train')
nsml.save('0')
'''


def test_sessions_cannot_read_what_they_must_not(server, cli, tmp_path):
    from nsml.scheduler.sandbox import readonly_mounts_work

    project = tmp_path / "probe"
    project.mkdir()
    (project / "main.py").write_text(PROBE)
    # The probe recognises the hidden labels by their bytes (its own copy; the label is unique).
    label = "\n".join(map(str, [1, 0, 1, 1, 0, 0, 1])) + "\n"
    (project / "label.txt").write_text(label)
    data = write_board_dataset(tmp_path / "probe-data", labels=[1, 0, 1, 1, 0, 0, 1])
    (data / "test" / "test_data").write_text("\n".join(map(str, [1, 2, 3, 4, 5, 6, 7])) + "\n")
    cli("dataset", "push", "probe", data, "--leaderboard")
    name = start_session(cli, "-d", "probe", "-a", f"--home {server.home}", cwd=project)
    assert server.wait(name)["status"] == "exited"
    logs = cli("logs", name).stdout
    assert "train train/train_data readable" in logs
    assert "train test/test_data absent" in logs and "train test/test_label absent" in logs
    sub = submit(cli, name, "0", check=False)
    runner = next(s for s in json.loads(cli("ps", "-a", "-j").stdout) if s["kind"] == "submit" and s["source"] == name)["name"]
    logs = cli("logs", runner).stdout
    assert "submit test/test_data readable" in logs
    assert "submit train/train_data absent" in logs and "submit test/test_label absent" in logs
    assert "infer returned 6 predictions for 7 test rows" in sub.stderr  # the probe's infer is short on purpose
    if readonly_mounts_work():  # the blob store holds every file: masked in the session's mount namespace
        assert "submit label-in-blobs hidden" in logs
        assert "train label-in-blobs hidden" in cli("logs", name).stdout


def test_evaluation_script_runs_apart_with_the_labels(server, cli, tmp_path):
    evaluation = tmp_path / "my_eval.py"
    evaluation.write_text(
        "import argparse\n"
        "p = argparse.ArgumentParser()\n"
        "p.add_argument('--prediction', default='pred.txt')\n"
        "p.add_argument('--test_label_path', default='/data/custom/test/test_label')\n"
        "a = p.parse_args()\n"
        "import json\n"
        "preds = [json.loads(l)[1] for l in open(a.prediction) if l.strip()]\n"
        "labels = [int(l) for l in open(a.test_label_path) if l.strip()]\n"
        "print('comparing', len(preds))\n"
        "print(sum(p == t for p, t in zip(preds, labels)) * 10)\n"
    )
    data = write_board_dataset(tmp_path / "custom-data")
    out = cli("dataset", "push", "custom", data, "-e", evaluation).stdout
    assert "Leaderboard: custom" in out
    source = trained(server, cli, dataset="custom")
    assert "Score: 60.0" in submit(cli, source, "2").stdout


def test_legacy_evaluation_script_reads_labels_at_data_path(server, cli, tmp_path):
    from nsml.scheduler.sandbox import readonly_mounts_work

    if not readonly_mounts_work():
        pytest.skip("/data/NAME needs a private mount namespace (root)")
    evaluation = tmp_path / "evaluation.py"
    evaluation.write_text(  # NSML's 2018 style: only --prediction, labels at the fixed path
        "import argparse\n"
        "p = argparse.ArgumentParser(); p.add_argument('--prediction')\n"
        "a = p.parse_args()\n"
        "labels = open('/data/legacy/test/test_label').read().split()\n"
        "print(len(labels))\n"
    )
    data = write_board_dataset(tmp_path / "legacy-data")
    cli("dataset", "push", "legacy", data, "-e", evaluation, "--order", "asc")
    source = trained(server, cli, dataset="legacy")
    assert "Score: 6.0" in submit(cli, source, "2").stdout


def test_data_loader_feeds_infer(server, cli, tmp_path):
    loader = (
        "import os\n"
        "import nsml\n"
        "def feed_infer(output_file, infer_func):\n"
        "    root = os.path.join(nsml.DATASET_PATH, 'test', 'test_data')\n"
        "    rows = [l.strip() for l in open(root) if l.strip()]\n"
        "    preds = infer_func(rows)\n"
        "    with open(output_file, 'w') as f:\n"
        "        f.write('\\n'.join(str(p[1]) for p in preds))\n"
    )
    data = write_board_dataset(tmp_path / "loader-data", **{"data_loader.py": loader})
    cli("dataset", "push", "loaded", data, "--metric", "f1")
    source = trained(server, cli, dataset="loaded")
    assert "Score: 1.0" in submit(cli, source, "2").stdout


# -- bad input -----------------------------------------------------------------------------------
def test_missing_checkpoint_lists_the_existing_ones(server, cli):
    source = trained(server, cli)
    line = check_failed(cli("submit", source, "7", check=False))
    assert "no checkpoint '7'" in line and "0, 1, 2" in line
    assert "no checkpoint '9'" in check_failed(cli("fork", source, "-c", "9", check=False))
    assert "no checkpoint" in check_failed(cli("infer", f"{source}/x", input="1\n", check=False))


def test_submit_to_a_dataset_without_leaderboard(server, cli):
    source = trained(server, cli, dataset="plain")
    line = check_failed(cli("submit", source, "2", check=False))
    assert "has no leaderboard" in line and "--leaderboard" in line


def test_load_that_raises_is_reported_as_the_load_step(server, cli):
    source = trained(server, cli, args="--load_fails")
    proc = submit(cli, source, "2", check=False)
    assert proc.returncode == 1
    assert "load failed" in proc.stderr and "the weights do not fit this model" in proc.stderr
    assert "Traceback" in proc.stderr


@pytest.mark.parametrize("mode, message", [("none", "infer returned None"), ("short", "infer returned 5 predictions for 6 test rows")])
def test_bad_infer_results(server, cli, mode, message):
    source = trained(server, cli, args=f"--infer_returns {mode}")
    proc = submit(cli, source, "2", check=False)
    assert proc.returncode == 1 and "infer failed" in proc.stderr and message in proc.stderr


def test_script_that_never_calls_paused(server, cli):
    source = trained(server, cli, args="--no_paused --epochs 1")
    proc = submit(cli, source, "0", check=False)
    assert proc.returncode == 1 and "without calling nsml.paused()" in proc.stderr


def test_script_that_hangs_before_paused_hits_the_time_limit(server, cli):
    hanging = trained_hanging(server, cli)
    proc = submit(cli, hanging, "0", check=False)
    assert proc.returncode == 1
    assert f"did not call nsml.paused() within {PAUSED_TIMEOUT} s" in proc.stderr


def trained_hanging(server, cli) -> str:
    """A session with checkpoint 0 whose args make every relaunch hang before paused()."""
    name = start_session(cli, "-d", "board", "-a", "--no_paused --hang --epochs 1")
    owner, dataset, n = name.split("/")
    # It hangs in training too; give it a checkpoint through the runtime API and stop it.
    from tests.conftest import tar_of

    # Only the session's supervisor may upload its checkpoints: post with its scoped token.
    spec = json.loads((run_dir(server, name) / "spec.json").read_text())
    resp = httpx.post(f"{server.url}/api/sessions/{owner}/{dataset}/{n}/checkpoints/0", params={"walltime": 1.0},
                      headers={"Authorization": f"Bearer {spec['token']}"},
                      content=tar_of({"model.json": b'{"threshold": 5, "epochs_done": 1}'}))
    assert resp.status_code == 201, resp.text
    cli("stop", name)
    server.wait(name)
    return name


def test_evaluation_that_crashes_or_prints_no_number(server, cli, tmp_path):
    for name, script, expected in [
        ("crashy", "raise SystemExit('labels unreadable')", "evaluation.py failed"),
        ("mute", "print('all good')", "printed no number"),
    ]:
        path = tmp_path / f"{name}.py"
        path.write_text("import argparse\np = argparse.ArgumentParser(); p.add_argument('--prediction'); p.add_argument('--test_label_path')\np.parse_args()\n" + script + "\n")
        cli("dataset", "push", name, write_board_dataset(tmp_path / f"{name}-data"), "-e", path)
        source = trained(server, cli, dataset=name)
        proc = submit(cli, source, "2", check=False)
        assert proc.returncode == 1 and "evaluate failed" in proc.stderr and expected in proc.stderr


def test_fork_of_a_session_without_checkpoints(server, cli):
    name = start_session(cli, "-d", "board", "-a", "--no_paused --hang --epochs 1")
    line = check_failed(cli("fork", name, check=False))
    assert "has no checkpoint" in line and "still running" in line
    cli("stop", name)


def test_submit_rate_limit(server, cli, tmp_path):
    cli("dataset", "push", "limited", write_board_dataset(tmp_path / "limited-data"), "-l", "--submit-interval", "1h")
    source = trained(server, cli, dataset="limited")
    assert "Score: 1.0" in submit(cli, source, "2").stdout
    line = check_failed(cli("submit", source, "1", check=False))
    assert "one ranked submit per 60 min" in line and "-t" in line
    assert "Test submit OK" in submit(cli, source, "1", "-t").stdout  # test runs have a limit of their own


def test_leaderboard_needs_hidden_labels(cli, tmp_path):
    folder = tmp_path / "nolabels"
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "x").write_text("1")
    line = check_failed(cli("dataset", "push", "nolabels", folder, "--leaderboard", check=False))
    assert "no test/test_label" in line
    line = check_failed(cli("dataset", "push", "badmetric", write_board_dataset(tmp_path / "bm"), "--metric", "bleu", check=False))
    assert "Unknown metric 'bleu'" in line


def test_others_cannot_pull_the_hidden_split_nor_submit_your_session(server, cli, tmp_path):
    import io
    import tarfile

    from tests.cli.test_datasets import add_user

    bob = add_user(server, "bob", "bobs-token")
    resp = bob.get("/api/datasets/board/archive")
    names = tarfile.open(fileobj=io.BytesIO(resp.content)).getnames()
    assert "train/train_data" in names and not any(n.startswith("test/") for n in names)
    cli("dataset", "pull", "board", tmp_path / "mine")
    assert (tmp_path / "mine" / "test" / "test_label").read_text() == "\n".join(map(str, TEST_Y)) + "\n"
    source = trained(server, cli)
    resp = bob.post(f"/api/sessions/{source}/submit", params={"checkpoint": "2"})  # not bob's to read, nor submit
    assert resp.status_code == 404 and resp.json()["detail"].startswith(f"Session '{source}' does not exist.")


def test_infer_can_feed_another_dataset(server, cli):
    source = trained(server, cli)
    assert cli("infer", f"{source}/1", "--dataset", "plain", input="6\n").stdout.split() == ["1"]
    runner = next(s for s in json.loads(cli("ps", "-j").stdout) if s["kind"] == "infer" and s["source"] == source)
    assert runner["dataset"] == "plain" and runner["name"].startswith("alice/plain/")
    cli("rm", "-f", runner["name"])
    assert "No infer session" in check_failed(cli("infer", f"{source}/1", "--stop", check=False))


@contextmanager
def own_server(tmp_path, *extra):
    """A server of the test's own (to kill, or to size), with the project and the board dataset."""
    from tests.conftest import Server, kill_leftover_supervisors

    srv = Server(tmp_path / "home", extra=list(extra)).start()
    try:
        work = tmp_path / "work"
        shutil.copytree(PROJECT, work)
        cli = Cli(clean_env(srv.home), work)
        cli("dataset", "push", "board", write_board_dataset(tmp_path / "data"), "-l")
        yield srv, cli
    finally:
        srv.stop()
        kill_leftover_supervisors(srv.home)


def test_a_submit_survives_a_server_restart(tmp_path):
    import signal
    import time

    with own_server(tmp_path) as (srv, cli):
        source = trained(srv, cli, args="--slow_infer 4")
        owner, dataset, n = source.split("/")
        sub = srv.api.post(f"/api/sessions/{owner}/{dataset}/{n}/submit", params={"checkpoint": "2"}).json()
        runner = sub["runner"]
        deadline = time.monotonic() + 60
        while "model loaded!" not in srv.api.get(f"/api/sessions/{runner}/logs", params={"offset": 0}).json()["text"]:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        srv.stop(signal.SIGKILL)  # mid-infer: the session's supervisor outlives the server
        srv.start()
        deadline = time.monotonic() + 90
        while (sub := srv.api.get(f"/api/submissions/{sub['id']}").json())["status"] in ("running", "evaluating"):
            assert time.monotonic() < deadline, sub
            time.sleep(0.3)
        assert (sub["status"], sub["score"]) == ("scored", 1.0), sub
        assert json.loads(cli("dataset", "board", "board", "-j").stdout)["rows"][0]["session"] == source


def test_an_idle_infer_session_does_not_block_a_small_machine(tmp_path):
    """On a 2-CPU server a run takes both CPUs; the infer session reserves none, so a submit
    still starts while the model is being served."""
    with own_server(tmp_path, "--cpus", "2", "--memory", "4G") as (srv, cli):
        source = trained(srv, cli)
        assert cli("infer", f"{source}/2", input="9\n").stdout.split() == ["1"]
        assert "Score: 1.0" in submit(cli, source, "2").stdout
        held = [s for s in json.loads(cli("ps", "-j").stdout) if s["kind"] == "infer"]
        assert len(held) == 1 and held[0]["cpus"] == 0 and held[0]["memory"] == 0


def test_dataset_change_edits_the_leaderboard(cli, tmp_path):
    cli("dataset", "push", "changing", write_board_dataset(tmp_path / "changing-data"))
    assert "has no leaderboard" in check_failed(cli("dataset", "board", "changing", check=False))
    assert "leaderboard mse (asc)" in cli("dataset", "change", "changing", "--metric", "mse").stdout
    out = cli("dataset", "change", "changing", "--order", "desc", "--submit-interval", "30m").stdout
    assert "leaderboard mse (desc)" in out
    info = json.loads(cli("dataset", "ls", "-j").stdout)
    changed = next(d for d in info if d["name"] == "changing")
    assert (changed["metric"], changed["order"], changed["submit_interval"]) == ("mse", "desc", 1800.0)
    assert "Unknown metric" in check_failed(cli("dataset", "change", "changing", "--metric", "bleu", check=False))
    assert "no leaderboard" in cli("dataset", "change", "changing", "--metric", "none").stdout


def test_infer_json_passes_one_value_and_prints_json(server, cli):
    source = trained(server, cli)
    out = cli("infer", f"{source}/2", "--json", input='["9", "1"]').stdout
    assert json.loads(out) == [[0.9, 1], [0.9, 0]]
    assert "not JSON" in check_failed(cli("infer", f"{source}/2", "--json", input="9 1", check=False))
    cli("infer", f"{source}/2", "--stop")
