"""The README's first command: the digits demo runs end to end on the embedded server."""

import json
import shutil
import subprocess
import sys

from tests.conftest import EXAMPLES, clean_env, kill_leftover_supervisors


def test_digits_demo_trains_keeps_checkpoints_and_submits(tmp_path):
    example = tmp_path / "digits"
    shutil.copytree(EXAMPLES / "digits", example, ignore=shutil.ignore_patterns("data", "nsml_checkpoints"))
    home = tmp_path / "home"
    env = clean_env(home)
    try:
        proc = subprocess.run(["bash", str(example / "demo.sh")], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Session alice/digits/1 is started" in proc.stdout
        assert "epoch 10/10" in proc.stdout  # followed the logs to the end
        nsml = [sys.executable, "-m", "nsml"]
        sessions = json.loads(subprocess.run(nsml + ["ps", "-a", "-j"], env=env, capture_output=True, text=True, check=True).stdout)
        session = next(s for s in sessions if s["name"] == "alice/digits/1")
        assert session["status"] == "exited" and session["exit_code"] == 0
        assert session["summary"]["val/accuracy"] > 0.8
        # submitted checkpoint 9 and printed the leaderboard
        score = float(next(ln for ln in proc.stdout.splitlines() if ln.startswith("Score: ")).split()[1])
        assert 0.8 < score <= 1.0
        assert "digits · accuracy · Descending" in proc.stdout and "alice/digits/1" in proc.stdout.split("Descending")[-1]
        assert any(s["kind"] == "submit" and s["source"] == "alice/digits/1" for s in sessions)
        ckpts = json.loads(subprocess.run(nsml + ["model", "ls", "-j", "alice/digits/1"], env=env, capture_output=True, text=True, check=True).stdout)
        assert [c["name"] for c in ckpts] == [str(i) for i in range(10)]
        # the code upload honoured the example's .nsmlignore: no dataset copy, no demo script
        files = subprocess.run(nsml + ["pull", "alice/digits/1", tmp_path / "code"], env=env, capture_output=True, text=True, check=True)
        assert sorted(p.name for p in (tmp_path / "code").iterdir()) == [".nsmlignore", "main.py"], files.stdout
    finally:
        subprocess.run([sys.executable, "-m", "nsml", "server", "stop"], env=env, capture_output=True, timeout=60)
        kill_leftover_supervisors(home)


def test_a_digits_study_runs_end_to_end_through_the_cli(tmp_path):
    """examples/digits/automl.yaml, its budget cut to 4 trials of 6 epochs: every trial trains
    the real MLP as a session, and the ranked best model is a good one."""
    import time

    import yaml

    example = tmp_path / "digits"
    shutil.copytree(EXAMPLES / "digits", example, ignore=shutil.ignore_patterns("data", "nsml_checkpoints"))
    config = yaml.safe_load((example / "automl.yaml").read_text())
    config.update(args="--epochs 6", termination={"max_session_number": 4})
    (example / "automl.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    home = tmp_path / "home"
    env = clean_env(home)
    nsml = [sys.executable, "-m", "nsml"]

    def cli(*args):
        return subprocess.run(nsml + list(map(str, args)), env=env, cwd=example, capture_output=True, text=True, check=True, timeout=120).stdout

    try:
        subprocess.run([sys.executable, "make_dataset.py", "data/digits"], cwd=example, check=True, capture_output=True)
        cli("dataset", "push", "digits", "data/digits")
        out = cli("automl", "run", "-c", "automl.yaml", "-m", "digits search")
        assert "AutoML session alice/digits/1 is started: tpe + asha, 2 at a time, up to 4 trials" in out, out
        deadline = time.monotonic() + 240
        while json.loads(cli("automl", "ps", "-a", "-j"))[0]["status"] == "running":
            assert time.monotonic() < deadline, cli("automl", "trials", "alice/digits/1")
            time.sleep(1)
        study = json.loads(cli("automl", "trials", "alice/digits/1", "-j"))
        assert study["status"] == "exited" and len(study["trials"]) == 4
        assert {t["state"] for t in study["trials"]} <= {"complete", "pruned"}
        best = json.loads(cli("automl", "rank", "alice/digits/1", "-j"))
        # (a trial's value is its last save's; its ranked model, its best save)
        assert best[0]["value"] > 0.8 and best[0]["value"] >= max(t["value"] for t in study["trials"] if t["value"] is not None)
        trials = json.loads(cli("ps", "-a", "-q", "dataset:digits and kind:train", "-j"))
        assert sorted(s["name"] for s in trials) == sorted(t["session"] for t in study["trials"])
        assert all(s["args"].startswith("--epochs 6 --lr ") and " --hidden " in s["args"] for s in trials), [s["args"] for s in trials]
    finally:
        subprocess.run(nsml + ["server", "stop"], env=env, capture_output=True, timeout=60)
        kill_leftover_supervisors(home)
