"""Scoring a submit's predictions with the labels its session never saw, in a process of its own.

Built-in metrics (nsml.core.scoring) read the prediction and label files here. A dataset's own
``evaluation.py`` runs the way NSML ran it::

    python evaluation.py --prediction PRED --test_label_path /data/NAME/test/test_label

in a scratch folder holding the script (and the dataset's other top-level .py files it may
import). The labels are always at the path given by ``--test_label_path`` (and
``NSML_TEST_LABEL_PATH``); scripts of 2018 also open ``/data/NAME/test/test_label`` by that
name. Where the kernel gives the evaluator a mount namespace of its own (the platform runs as
root), ``/data`` shows the scratch copy of the labels there. Elsewhere ``/data`` cannot be made
without privileges, so the script runs under a small path shim (REDIRECT below): its Python
file calls (``open``, ``os.stat``, ``os.listdir``, ...) on ``/data/NAME/…`` go to the scratch
copy. That is a convenience for the dataset owner's own script, not a boundary: a program it
spawns, or C code opening files itself, sees no ``/data``. A script that does not accept
``--test_label_path`` is run again with ``--prediction`` only. It must print the score; the
last number printed is taken.
"""

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from nsml.core import scoring

from . import sandbox

OUTPUT_TAIL = 1500  # characters of the script's output quoted in an error


class EvaluationFailed(Exception):
    """The evaluation could not produce a score; the message is for the submitter."""


def evaluate(metric: str, dataset: str, files: dict[str, Path], prediction: Path, timeout: float = 600.0,
             plain: bool = False) -> float:
    """The score of `prediction`. `files`: the dataset's relative paths → stored bytes. `plain`:
    the file holds one prediction per line as str() wrote it (NSML's legacy protocol)."""
    labels = {p: src for p, src in files.items() if p.startswith("test/") and p.rsplit("/", 1)[-1].startswith("test_label")}
    if not labels:
        raise EvaluationFailed(f"Dataset '{dataset}' has no test/test_label file to score against.")
    if metric != "custom":
        label_file = files.get("test/test_label") or next(iter(labels.values()))
        try:
            return scoring.score(metric, _read(prediction, "prediction"), _read(label_file, "test label"), plain)
        except scoring.ScoringError as exc:
            raise EvaluationFailed(str(exc)) from None
    if "evaluation.py" not in files:
        raise EvaluationFailed(f"Dataset '{dataset}' uses a custom metric but has no evaluation.py.")
    with tempfile.TemporaryDirectory(prefix="nsml-eval-") as scratch:
        return _run_script(Path(scratch), dataset, files, labels, prediction, timeout)


def _read(path: Path, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise EvaluationFailed(f"The {what} file is not UTF-8 text; built-in metrics read one value per line.") from None


def _run_script(scratch: Path, dataset: str, files: dict[str, Path], labels: dict[str, Path], prediction: Path, timeout: float) -> float:
    for rel, src in files.items():
        if "/" not in rel and rel.endswith(".py"):
            shutil.copyfile(src, scratch / rel)
    data_root = scratch / "data"
    for rel, src in labels.items():
        target = data_root / dataset / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    pred = scratch / "prediction.txt"
    shutil.copyfile(prediction, pred)
    real_label = data_root / dataset / "test" / "test_label"
    binds = _data_mount(data_root)
    label_arg = f"/data/{dataset}/test/test_label" if binds else str(real_label)
    env = {**os.environ, "NSML_TEST_LABEL_PATH": label_arg, "PYTHONUNBUFFERED": "1"}
    if binds:
        base = [sys.executable, "evaluation.py", "--prediction", str(pred)]
    else:  # no /data to mount: the shim sends the script's /data/NAME paths to the scratch copy
        base = [sys.executable, "-c", REDIRECT, f"/data/{dataset}", str(data_root / dataset),
                "evaluation.py", "--prediction", str(pred)]
    proc = _run(base + ["--test_label_path", label_arg], scratch, env, binds, timeout)
    if proc.returncode == 2 and "--test_label_path" in proc.stderr and "unrecognized arguments" in proc.stderr:
        proc = _run(base, scratch, env, binds, timeout)
    output = (proc.stdout + proc.stderr)[-OUTPUT_TAIL:].strip()
    if proc.returncode != 0:
        raise EvaluationFailed(f"evaluation.py failed (exit code {proc.returncode}):\n{output}")
    for line in reversed(proc.stdout.splitlines()):
        try:
            return float(line.strip().split()[-1])
        except (ValueError, IndexError):
            continue
    raise EvaluationFailed("evaluation.py printed no number; it must print the score on its last line."
                           + (f" Its output:\n{output}" if output else " It printed nothing."))


# Run as `python -c REDIRECT PREFIX REAL SCRIPT ARGS...`: SCRIPT runs as __main__ (sys.argv[0]
# is SCRIPT, its folder comes first on sys.path) with paths under PREFIX sent to REAL.
REDIRECT = r"""
import builtins, io, os, runpy, sys
_prefix, _real = sys.argv[1], sys.argv[2]

def _moved(path):
    text = os.fspath(path) if isinstance(path, os.PathLike) else path
    if isinstance(text, bytes):
        moved = _moved(os.fsdecode(text))
        return os.fsencode(moved) if isinstance(moved, str) else path
    if isinstance(text, str) and (text == _prefix or text.startswith(_prefix + "/")):
        return _real + text[len(_prefix):]
    return path

def _wrap(fn):
    def call(*args, **kwargs):  # os.listdir() and os.scandir() take no path at all
        if args:
            args = (_moved(args[0]),) + args[1:]
        return fn(*args, **kwargs)
    call.__name__, call.__doc__, call.__wrapped__ = fn.__name__, fn.__doc__, fn
    return call

builtins.open = io.open = _wrap(io.open)
for _name in ("open", "stat", "lstat", "listdir", "scandir", "access", "readlink"):
    setattr(os, _name, _wrap(getattr(os, _name)))
sys.argv = sys.argv[3:]
sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _run(argv, cwd, env, binds, timeout) -> subprocess.CompletedProcess:
    preexec = sandbox.preexec_readonly([], [], binds) if binds else None
    try:
        return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, errors="replace",
                              timeout=timeout, stdin=subprocess.DEVNULL, preexec_fn=preexec)
    except subprocess.TimeoutExpired:
        raise EvaluationFailed(f"evaluation.py did not finish within {timeout:.0f} s.") from None


@functools.cache
def _mounts_work() -> bool:
    return sandbox.readonly_mounts_work()


def _data_mount(data_root: Path) -> dict[str, str] | None:
    """Show data_root at /data in the evaluator's mount namespace, where the kernel lets us.

    /data must exist as a mount point; as root (the only case where the mount works) an empty
    one is created once.
    """
    if not _mounts_work():
        return None
    try:
        os.makedirs("/data", exist_ok=True)
    except OSError:
        return None
    return {"/data": str(data_root)}
