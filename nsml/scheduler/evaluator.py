"""Scoring a submit's predictions with the labels its session never saw, in a sandbox of its own.

Built-in metrics (nsml.core.scoring) read the prediction and label files here, in the server. A
dataset's own ``evaluation.py`` runs the way NSML ran it::

    python evaluation.py --prediction /app/prediction.txt --test_label_path /data/NAME/test/test_label

inside a bubblewrap sandbox (nsml.scheduler.bwrap) with no network at all, in which it sees:
its working folder ``/app`` (read-write: the dataset's top-level ``.py`` files and a copy of the
predictions), the dataset's top-level files and ``test/`` at ``/data/NAME`` (read-only: the labels
at ``/data/NAME/test/test_label``), the interpreter (read-only) and a private ``/tmp``. Nothing
else of the platform: not the NSML home, the database, the blob store or any session. Where the
platform runs as root it is a uid of its own (bwrap.evaluator_uid, never a session's); as an
ordinary user it runs in an unprivileged user namespace, and ``/data/NAME`` is there all the same.

Its files live in a private folder (0700, made by mkdtemp under NSML_HOME/evaluations) removed
when it ends, however it ends; the sandbox's PID namespace takes every process it started along.
A script that does not accept ``--test_label_path`` is run again with ``--prediction`` only. It
must print the score; the last number printed is taken.

Where ``bwrap.probe()`` finds no working sandbox, the script runs as it did before sandboxes
(UNCONFINED below), as the server's own user, and the submit says so.
"""

import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nsml.core import scoring

from . import bwrap, limits, sandbox

log = logging.getLogger("nsml.evaluator")
OUTPUT_TAIL = 1500     # characters of the script's output quoted in an error
READ_TAIL = 64 * 1024  # bytes of its stdout searched for the score (its output goes to files, not memory)
WORKSPACE = "evaluations"  # under the NSML home: one private folder per running evaluation
PREDICTION = "prediction.txt"
SETUP_TRIES = 3  # starts of the sandbox when bubblewrap itself fails
EVALUATION_PIDS = 256  # processes (threads count) one sandboxed evaluation may have: no fork bomb


class EvaluationFailed(Exception):
    """The evaluation could not produce a score; the message is for the submitter."""


def evaluate(metric: str, dataset: str, files: dict[str, Path], prediction: Path, timeout: float = 600.0,
             plain: bool = False, *, home: Path | None = None, submission_id: int = 0, quote_stdout: bool = True,
             memory_bytes: int | None = 4096 << 20) -> float:
    """The score of `prediction`. `files`: the dataset's relative paths → stored bytes. `plain`:
    the file holds one prediction per line as str() wrote it (NSML's legacy protocol). `home`: the
    NSML home (private folders go under it; it is never shown to the script). `quote_stdout`:
    False leaves the script's stdout, where scores are printed, out of error messages.
    `memory_bytes`: the sandboxed script's memory limit (with EVALUATION_PIDS processes at most)."""
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
    mode = sandbox_mode()
    hidden = [Path(home)] if home else []
    hidden += {Path(src).parent for src in files.values()} | {Path(prediction).parent}  # the blob store, kept predictions
    with private_folder(home) as root:
        if mode.sandboxed:
            uid = bwrap.evaluator_uid(submission_id) if mode.drops_uid else None
            run = _confined(root, dataset, files, prediction, uid, hidden)
            with _limited(run, uid, memory_bytes):
                return _score(run, timeout, quote_stdout)
        else:
            _warn_unconfined(mode)
            run = _unconfined(root, dataset, files, labels, prediction)
        return _score(run, timeout, quote_stdout)


def _read(path: Path, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise EvaluationFailed(f"The {what} file is not UTF-8 text; built-in metrics read one value per line.") from None


@functools.cache
def sandbox_mode() -> bwrap.Mode:
    """The sandbox evaluators get here, probed once per process."""
    return bwrap.probe()


def sandbox_note() -> str:
    """'' where evaluation.py runs sandboxed, else a line saying it does not, and why."""
    mode = sandbox_mode()
    if mode.sandboxed:
        return ""
    return (f"evaluation.py runs without a sandbox on this server ({mode.detail}): as the server's own OS user, "
            f"with network (docs/security.md).")


@functools.cache
def _warn_unconfined(mode: bwrap.Mode) -> None:
    log.warning("%s", sandbox_note())


@functools.cache
def _limits_backend() -> limits.Backend:
    """How evaluations are limited here (cgroups as root where they work, else rlimits), probed once."""
    return limits.detect() if os.geteuid() == 0 else limits.Backend("rlimit")


@contextmanager
def _limited(run: "Run", uid: int | None, memory_bytes: int | None):
    """The evaluation in a group of its own (memory, processes), removed afterwards; a script
    the limit killed fails with a message that says so. The process count is an rlimit per uid
    without cgroups, so it is only set where the evaluator has a uid of its own."""
    cap = limits.Limits(memory_bytes=memory_bytes, pids=EVALUATION_PIDS if uid is not None else None)
    group = _limits_backend().group(f"eval-{run.root.name}", cap)
    run.preexec = group.preexec
    try:
        yield
    except EvaluationFailed:
        if group.oom_killed():
            raise EvaluationFailed(f"evaluation.py ran out of memory (its limit: {memory_bytes >> 20} MiB; "
                                   "the server's NSML_EVALUATION_MEMORY_MB).") from None
        raise
    finally:
        group.remove()


# -- the private folder ---------------------------------------------------------------------------
def workspace(home: Path | None) -> Path | None:
    """NSML_HOME/evaluations (0700), or None for the system's temporary folder, where mkdtemp
    still makes each folder 0700."""
    if home is None:
        return None
    folder = Path(home) / WORKSPACE
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder


@contextmanager
def private_folder(home: Path | None):
    root = Path(os.path.abspath(tempfile.mkdtemp(prefix="eval-", dir=workspace(home))))  # 0700: the platform's user only
    try:
        yield root
    finally:
        remove(root)


def clear_workspace(home: Path) -> None:
    """Remove what evaluations that a crash cut short left behind (at server start, when none runs)."""
    folder = Path(home) / WORKSPACE
    if folder.is_dir():
        for leftover in folder.iterdir():
            remove(leftover)


def remove(path: Path) -> None:
    """Remove a tree, also one the script made hard to remove (folders chmod 000)."""
    for attempt in range(6):
        try:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            return
        except FileNotFoundError:
            return
        except OSError:
            for folder, dirs, _ in os.walk(path):
                for name in dirs:
                    try:
                        os.chmod(os.path.join(folder, name), 0o700)
                    except OSError:
                        pass
            time.sleep(0.05 * attempt)
    log.error("could not remove the evaluation folder %s", path)


# -- running the script ---------------------------------------------------------------------------
@dataclass
class Run:
    """How to start evaluation.py: `command` plus the script's own arguments, in `cwd`."""

    command: list[str]     # up to and including "evaluation.py"
    prediction: str        # the prediction file, as the script sees it
    label: str             # the labels, as the script sees it
    cwd: Path
    env: dict
    root: Path             # the private folder (its output files go there)
    preexec: object = None
    confined: bool = False


def _confined(root: Path, dataset: str, files: dict[str, Path], prediction: Path, uid: int | None,
              hidden: list[Path]) -> Run:
    app, view, spool = root / "app", root / "view", root / "run"
    for folder in (app, view, spool):
        _folder(folder)
    for rel, src in files.items():
        if "/" not in rel and rel.endswith(".py"):
            shutil.copyfile(src, app / rel)  # importable from the working folder, as in NSML
        if "/" not in rel or rel.startswith("test/"):
            _link(Path(src), view / rel)
    shutil.copyfile(prediction, app / PREDICTION)
    if uid is not None:  # its working folder is its own; the view stays root's, read-only
        for path in [app, *app.iterdir()]:
            os.chown(path, uid, uid)
    label = f"{bwrap.DATA}/{dataset}/test/test_label"
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
           "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "NSML_TEST_LABEL_PATH": label}
    conf = bwrap.Confinement(
        workdir=app, spool=spool, readonly=tuple(_visible(bwrap.interpreter_paths(), hidden)),
        dataset=(dataset, view), uid=uid, network=False, hostname="nsml-evaluator", env=env,
    )
    command = bwrap.argv(conf, [sys.executable, "evaluation.py"], bwrap.find_bwrap() or "bwrap")
    return Run(command, f"{bwrap.APP}/{PREDICTION}", label, app, {}, root, confined=True)


def _link(src: Path, target: Path) -> None:
    """The stored file at `target`: a hard link to the read-only blob (no copy of a large test
    set), or a read-only copy where the blob store is on another filesystem."""
    _folder(target.parent)
    try:
        os.link(src, target)
    except OSError:
        shutil.copyfile(src, target)
        os.chmod(target, 0o444)


def _folder(path: Path) -> None:
    """A folder (and those above it) that the evaluator's uid can walk, whatever the umask."""
    if not path.is_dir():
        _folder(path.parent)
        path.mkdir()
        os.chmod(path, 0o755)


def _visible(paths: list[str], hidden: list[Path]) -> list[str]:
    """`paths` without any that holds, or lies inside, a hidden one (a server started in the
    folder holding its home has that folder on sys.path)."""
    hidden_real = [Path(os.path.realpath(h)) for h in hidden]
    out = []
    for path in paths:
        real = Path(os.path.realpath(path))
        if not any(real.is_relative_to(h) or h.is_relative_to(real) for h in hidden_real):
            out.append(path)
    return out


def _score(run: Run, timeout: float, quote_stdout: bool) -> float:
    base = [*run.command, "--prediction", run.prediction]
    code, out, err = _spawn(run, base + ["--test_label_path", run.label], timeout)
    if code == 2 and "--test_label_path" in err and "unrecognized arguments" in err:
        code, out, err = _spawn(run, base, timeout)
    output = ((out + err) if quote_stdout else err)[-OUTPUT_TAIL:].strip()
    if code != 0:
        raise EvaluationFailed(f"evaluation.py failed (exit code {code})" + (f":\n{output}" if output else "."))
    for line in reversed(out.splitlines()):
        try:
            return float(line.strip().split()[-1])
        except (ValueError, IndexError):
            continue
    raise EvaluationFailed("evaluation.py printed no number; it must print the score on its last line."
                           + (f" Its output:\n{output}" if output else ""))


def _spawn(run: Run, argv: list[str], timeout: float) -> tuple[int, str, str]:
    """_once, again where bubblewrap itself failed to set the sandbox up (it can, rarely and
    briefly, fail to configure the new network namespace's loopback): the script never ran."""
    for attempt in range(SETUP_TRIES):
        code, out, err = _once(run, argv, timeout)
        if not (run.confined and code == 1 and not out and err.startswith("bwrap: ")):
            break
        log.warning("the evaluator's sandbox did not start (%s); trying again", err.strip()[:200])
        time.sleep(0.2 * (attempt + 1))
    return code, out, err


def _once(run: Run, argv: list[str], timeout: float) -> tuple[int, str, str]:
    """Run to the end (or kill at `timeout`); (exit code, stdout's tail, stderr's tail). Output
    goes to files in the private folder, so a chatty script costs the server no memory."""
    out_path, err_path = run.root / "stdout", run.root / "stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(argv, cwd=run.cwd, env=run.env or None, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True, preexec_fn=run.preexec)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            # bwrap --die-with-parent: killing it ends the sandbox's PID namespace, and with it
            # every process the script started.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            raise EvaluationFailed(f"evaluation.py did not finish within {timeout:.0f} s.") from None
    return code, _tail(out_path), _tail(err_path)


def _tail(path: Path) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, os.fstat(f.fileno()).st_size - READ_TAIL))
        return f.read().decode("utf-8", errors="replace")


# -- without a sandbox (bwrap.probe() found none) -------------------------------------------------
def _unconfined(root: Path, dataset: str, files: dict[str, Path], labels: dict[str, Path], prediction: Path) -> Run:
    """As before sandboxes: the script runs as the server's user, in the private folder, with
    copies of the labels. Where the kernel gives it a mount namespace of its own (root with
    CAP_SYS_ADMIN), ``/data`` there shows the copies; elsewhere it runs under a path shim
    (REDIRECT) sending its Python file calls on ``/data/NAME/…`` to them: a convenience for the
    dataset owner's script, not a boundary (a program it spawns sees no ``/data``)."""
    box = root / "box"  # its working folder; its output files stay beside it
    box.mkdir()
    for rel, src in files.items():
        if "/" not in rel and rel.endswith(".py"):
            shutil.copyfile(src, box / rel)
    data_root = box / "data"
    for rel, src in labels.items():
        target = data_root / dataset / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    pred = box / PREDICTION
    shutil.copyfile(prediction, pred)
    binds = _data_mount(data_root)
    label = f"/data/{dataset}/test/test_label" if binds else str(data_root / dataset / "test" / "test_label")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NSML_")}
    env.update(NSML_TEST_LABEL_PATH=label, PYTHONUNBUFFERED="1")
    if binds:
        command = [sys.executable, "evaluation.py"]
    else:
        command = [sys.executable, "-c", REDIRECT, f"/data/{dataset}", str(data_root / dataset), "evaluation.py"]
    preexec = sandbox.preexec_readonly([], [], binds) if binds else None
    return Run(command, str(pred), label, box, env, root, preexec)


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


@functools.cache
def _mounts_work() -> bool:
    return sandbox.readonly_mounts_work()


def _data_mount(data_root: Path) -> dict[str, str] | None:
    """Show data_root at /data in the script's mount namespace, where the kernel lets us.

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
