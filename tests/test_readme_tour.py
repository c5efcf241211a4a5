"""The README's "A short tour", executed as written.

The commands are read from the console block under the "A short tour" heading of README.md, so
editing the tour changes what runs here. They run one after another in one bash shell (a `cd`
carries over), from a folder laid out like the repository, against a fresh embedded server.
Each must succeed, and each output line the README shows must be matched by the real output up
to its first digit ("Score: 0.96…" by a line starting "Score: "; a line starting with a digit
by one that does too); column widths do not count.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import EXAMPLES, REPO, clean_env, kill_leftover_supervisors

MARK = "@@nsml-tour@@"


def tour_steps(readme: str) -> list[tuple[str, list[str]]]:
    """[(command, the output lines the README shows after it)] of the tour's console block."""
    section = readme.split("## A short tour", 1)[1]
    block = section.split("```console", 1)[1].split("```", 1)[0]
    steps: list[tuple[str, list[str]]] = []
    for line in block.strip("\n").splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif line.strip():
            steps[-1][1].append(line)
    return steps


def expected_prefix(line: str) -> str:
    """What must start some line of the real output: the README line up to its first digit."""
    return re.split(r"\d", " ".join(line.split()), maxsplit=1)[0]


def test_the_readme_tour_runs_as_written(tmp_path):
    steps = tour_steps((REPO / "README.md").read_text())
    assert any(cmd.startswith("nsml submit") for cmd, _ in steps)
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "digits", root / "examples" / "digits", ignore=shutil.ignore_patterns("data", "nsml_checkpoints"))
    home = tmp_path / "home"
    env = clean_env(home)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]  # `nsml` and `python`
    script = "".join(f"echo {MARK} start {i}\n{cmd}\necho {MARK} rc {i} $?\n" for i, (cmd, _) in enumerate(steps))
    try:
        proc = subprocess.run(["bash", "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=900)
    finally:
        subprocess.run([sys.executable, "-m", "nsml", "server", "stop"], env=env, capture_output=True, timeout=60)
        kill_leftover_supervisors(home)
    outputs = re.split(rf"^{MARK} start \d+\n", proc.stdout, flags=re.M)[1:]
    assert len(outputs) == len(steps), proc.stdout + proc.stderr
    for (cmd, shown), out in zip(steps, outputs):
        text, rc = re.split(rf"^{MARK} rc \d+ ", out, flags=re.M)
        assert rc.strip() == "0", f"$ {cmd}\nexit {rc.strip()}\n{text}\n{proc.stderr}"
        lines = [" ".join(line.split()) for line in text.splitlines()]  # column widths may differ
        for want in shown:
            prefix = expected_prefix(want)
            if prefix:
                assert any(line.startswith(prefix) for line in lines), f"$ {cmd}\nwant a line like {want!r}, got:\n{text}"
            else:
                assert any(re.match(r"-?\d", line) for line in lines), f"$ {cmd}\nwant a line like {want!r}, got:\n{text}"
