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
