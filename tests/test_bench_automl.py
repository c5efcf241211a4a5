"""bench/automl_compare.py in its smoke mode (one task, one seed, 3 trials' worth of epochs, ours
through a real server and Optuna in-process, no Ray): it runs to the end and prints a well-formed
markdown table. Scores and times are the benchmark's to report, never asserted here."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("optuna")
pytest.importorskip("sklearn")

REPO = Path(__file__).resolve().parents[1]
NUMBER = r"\d+(\.\d+)?"


def test_the_smoke_benchmark_prints_a_well_formed_table(tmp_path):
    out = tmp_path / "out.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NSML_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "automl_compare.py"), "--smoke", "--json", str(out), "--timeout", "240"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("| strategy |"))
    columns = [c.strip() for c in lines[head].strip("|").split("|")]
    assert columns[:5] == ["strategy", "seeds", "best (median)", "IQR", "time to target (median)"], columns
    assert set(lines[head + 1].replace("|", "").replace("-", "")) <= {" ", ""}, lines[head + 1]
    rows = {}
    for ln in lines[head + 2:]:
        if not ln.startswith("|"):
            break
        cells = [c.strip() for c in ln.strip("|").split("|")]
        assert len(cells) == len(columns), ln
        rows[cells[0]] = dict(zip(columns, cells))
    assert set(rows) == {"ours-random", "optuna-tpe-hyperband"}, rows
    for row in rows.values():
        assert row["seeds"] == "1"
        assert re.fullmatch(NUMBER, row["best (median)"]), row
        assert re.fullmatch(rf"{NUMBER}-{NUMBER}", row["IQR"]), row
        assert re.fullmatch(rf"{NUMBER} s|not reached", row["time to target (median)"]), row
        assert re.fullmatch(r"[01]/1", row["reached"]), row
    assert "### The platform's own time per trial" in proc.stdout
    assert re.search(r"^\| ask_to_created \| ", proc.stdout, re.M)
    assert "### Goals" in proc.stdout and "Ray" not in proc.stdout  # no Ray in the smoke mode: not even a notice
    data = json.loads(out.read_text())
    assert set(data["tasks"]) == {"mlp"} and set(data["tasks"]["mlp"]["summary"]) == set(rows)
    assert data["seeds_run"] == [1]
