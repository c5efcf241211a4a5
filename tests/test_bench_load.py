"""bench/load.py, tiny (2 sessions at 50 Hz for 3 s, SQLite, the local executor): it runs to the
end through a real `nsml server` and its own accounting is consistent: every value the
reporters sent is stored once, none lost, none duplicated, none wrong. Timings are the
benchmark's to report, never asserted here."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_tiny_load_benchmark_stores_every_value_once(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NSML_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, str(REPO / "bench" / "load.py"), "--sessions", "2", "--rate", "50", "--seconds", "3",
           "--db", "sqlite", "--executor", "local", "--sandbox", "none", "--json",
           "--start-delay", "2", "--place-timeout", "60", "--end-grace", "60", "--drain-timeout", "60"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    figures = json.loads(proc.stdout)
    assert figures["failed"] == {} and figures["no_count"] == [], figures
    assert figures["expected"] == 2 * 50 * 3 * 3
    assert figures["sent"] > 0
    assert figures["stored"] == figures["sent"] == figures["distinct"], figures
    assert figures["lost"] == 0 and figures["duplicated"] == 0 and figures["wrong"] == 0, figures
    assert figures["regressions"] == 0 and figures["phantom"] == 0 and figures["uncounted_stored"] == 0
    assert figures["lag_value"]["values"] == figures["sent"] // 3  # one lag per report (its sent_at)
    assert figures["cpu_s"]["server"] > 0 and figures["server_peak_rss"] > 0
    assert figures["leftover_processes"] == 0  # the cleanup ended everything it started
