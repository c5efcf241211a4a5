"""The local executor: runs each session as a supervised subprocess on this machine.

Layout under NSML_HOME/runs/<session id>/: app/ (the working directory, a copy of the uploaded
code), spool/ (log, metrics journal, checkpoints waiting for upload), spec.json (what the
supervisor runs). The dataset is shown through a read-only view without its test/ folder:
hard links to the blobs, mounted read-only for the user process where the kernel allows it
(see sandbox.py), copies when running as root without that (root ignores file modes, and a
write through a hard link would change the stored blob).
"""

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from nsml.core.entities import Dataset, FileEntry, Session
from nsml.core.inventory import Node
from nsml.core.states import RELAUNCH_KINDS, SUBMIT_KINDS, SessionKind
from nsml.store.blobs import BlobStore

from . import bwrap, environments, limits, sandbox
from .executor import Launched


class LocalExecutor:
    def __init__(self, home: Path, blobs: BlobStore, server_url: str, token: str | Callable[[Session], str],
                 server_file: Path | None = None, paused_timeout: float = 300.0, isolation: bwrap.Mode | None = None,
                 network: bool = True, nodes: list[Node] | None = None, heartbeat_every: float = 5.0,
                 die_with_parent: bool = False):
        self.home = Path(home).resolve()  # the supervisor runs in the run dir: paths must be absolute
        self.blobs = blobs
        self.server_url = server_url
        # What a session's supervisor authenticates with: a token scoped to that session
        # (nsml.core.credentials), or, for callers that have none, one token for all.
        self.token_for = token if callable(token) else (lambda _session, t=token: t)
        self.server_file = server_file
        self.paused_timeout = paused_timeout  # how long a relaunched script may take to reach nsml.paused()
        self.isolation = isolation or bwrap.Mode("none", "not sandboxed")
        self.network = network  # training sessions get outbound network (never the host's loopback)
        self.nodes = list(nodes) if nodes else []  # what this machine offers (nsml.scheduler.inventory)
        self.heartbeat_every = heartbeat_every  # how often supervisors report in (the scheduler's liveness)
        # A supervisor normally outlives whoever started it (a server restart must not end the
        # sessions); one started by a Ray actor ends with it instead (nsml.scheduler.ray_host).
        self.die_with_parent = die_with_parent
        self._readonly_mounts: bool | None = None  # probed on first launch
        self._limits: limits.Backend | None = None

    @property
    def readonly_mounts(self) -> bool:
        if self.isolation.sandboxed:
            return True  # bubblewrap's read-only binds: the view cannot be written or remounted
        if self._readonly_mounts is None:
            self._readonly_mounts = sandbox.readonly_mounts_work()
        return self._readonly_mounts

    @property
    def limits(self) -> limits.Backend:
        if self._limits is None:
            self._limits = limits.detect() if os.geteuid() == 0 else limits.Backend("rlimit")
            limits.prune_empty(self._limits)
        return self._limits

    def run_dir(self, session: Session) -> Path:
        return self.home / "runs" / str(session.id)

    def spool(self, session: Session) -> Path:
        return self.run_dir(session) / "spool"

    def launch(self, session: Session, gpu_ids: tuple[int, ...], code: list[FileEntry], dataset: Dataset | None, dataset_files: list[FileEntry],
               outputs: list[FileEntry] = ()) -> Launched:
        """Prepare the session's directories and environment and start its supervisor (its pid is the handle).

        `outputs`: for a resumed session, the files its earlier attempts wrote, put back over the
        code so the new attempt finds its working directory as the last one left it (and ships
        them again with its own at the end: outputs are replaced as a whole)."""
        run_dir = self.run_dir(session)
        workdir, spool = run_dir / "app", run_dir / "spool"
        shutil.rmtree(run_dir, ignore_errors=True)
        workdir.mkdir(parents=True)
        (spool / "checkpoints").mkdir(parents=True)
        for entry in [*code, *outputs]:
            target = workdir / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.blobs.path(entry.sha256), target)
        data_path = self.dataset_view(dataset, dataset_files, submit=session.kind in SUBMIT_KINDS) if dataset else None
        with open(run_dir / "output.log", "ab") as log:
            python = environments.python_for(environments.read_spec(workdir), self.home / "envs", log)
        confined = self.isolation.sandboxed
        spec = {
            "session": session.name,
            "server_url": self.server_url,
            "server_file": str(Path(self.server_file).resolve()) if self.server_file else None,
            "token": self.token_for(session),
            "workdir": str(workdir),
            "spool": str(spool),
            # Out of the spool, which the session can write: it must not swap the log for a link.
            "log": str(run_dir / "output.log"),
            "user_pid": str(run_dir / "user.pid"),
            "argv": [python, session.entry, *shlex.split(session.args), *reserved_args(session)],
            "env": self.session_env(session, gpu_ids, data_path, spool),
            "code_files": {e.path: e.sha256 for e in code},
            "readonly": [str(data_path)] if data_path and self.readonly_mounts and not confined else [],
            # Every dataset's hidden test split is in the blob store: out of the session's sight.
            "hidden": [str(self.blobs.root)] if self.readonly_mounts and not confined else [],
            "sandbox": self.confinement(session, gpu_ids, workdir, spool, dataset, data_path, python) if confined else None,
            "limits": self.session_limits(session),
            "kind": session.kind,
            # Where this attempt's log and journal continue the server's (0 but for a resume).
            "log_base": session.log_offset,
            "journal_base": session.journal_offset,
            "heartbeat_every": self.heartbeat_every,
            "die_with_parent": self.die_with_parent,
            "shm_size": session.shm_size,  # run --shm-size: the size of the sandbox's /dev/shm
            "paused_timeout": self.paused_timeout if session.kind in RELAUNCH_KINDS - {SessionKind.FORK} else None,
        }
        if confined:  # the session's own interpreter first, as an activated venv would have it
            spec["env"]["PATH"] = f"{Path(python).parent}:{DEFAULT_PATH}"
        spec_path = run_dir / "spec.json"
        spec_path.write_text(json.dumps(spec))
        spec_path.chmod(0o600)  # it holds the token
        with open(run_dir / "supervisor.log", "ab") as sup_log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "nsml.scheduler.supervisor", str(spec_path)],
                stdout=sup_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=run_dir,
            )
        # Until the server has recorded the handle, this is how kill() finds the supervisor: a
        # server stopped between launch and record queues the session again at its next start,
        # and must leave nothing of this attempt running.
        (run_dir / "supervisor.pid").write_text(str(proc.pid))
        return Launched(proc.pid)

    def confinement(self, session: Session, gpu_ids: tuple[int, ...], workdir: Path, spool: Path, dataset: Dataset | None,
                    data_path: Path | None, python: str) -> dict:
        """The sandbox of one session (nsml.scheduler.bwrap.Confinement's fields, as JSON for the
        supervisor). Its files become the session uid's: the code it may change, the spool it
        writes; nothing else on the machine is that uid's."""
        uid = bwrap.session_uid(session.id) if self.isolation.drops_uid else None
        if uid is not None:
            for path in (workdir, spool):
                _chown_tree(path, uid)
        # Only the devices that are there: a declared inventory's GPUs (nsml.scheduler.inventory)
        # have no /dev/nvidiaN on a machine without them, and bubblewrap refuses a missing one.
        devices = [d for d in (f"/dev/nvidia{g}" for g in gpu_ids) if os.path.exists(d)]
        if devices:
            devices += [d for d in bwrap.NVIDIA_SHARED if os.path.exists(d)]
        return {
            "workdir": str(workdir), "spool": str(spool), "uid": uid,
            # Never the home (nor a folder holding it): only the session's own environment in it.
            "readonly": bwrap.outside(bwrap.interpreter_paths(), self.home, self.blobs.root) + [
                p for p in (str(Path(python).parent.parent), os.path.dirname(os.path.realpath(python)))
                if bwrap.outside([p], self.home) or p.startswith(str(self.home / "envs") + "/")],
            "dataset": [dataset.name, str(data_path)] if dataset and data_path else None,
            # Submit and infer sessions hold the hidden test data: no network at all for them.
            "network": self.network and session.kind not in RELAUNCH_KINDS - {SessionKind.FORK},
            "devices": devices,
            "shm_bytes": session.shm_size or None,
        }

    def session_limits(self, session: Session) -> dict:
        r = session.resources
        backend = self.limits  # probed once per server, not once per session
        return {"memory_bytes": r.memory or None, "cpus": r.cpus or None, "pids": PIDS_PER_SESSION,
                "backend": {"name": backend.name, "v2_parent": str(backend.v2_parent) if backend.v2_parent else None,
                            "v1_parents": [[c, str(p)] for c, p in backend.v1_parents]}}

    def session_env(self, session: Session, gpu_ids: tuple[int, ...], data_path: Path | None, spool: Path) -> dict[str, str]:
        confined = self.isolation.sandboxed
        if confined:
            # Nothing of the server's own environment (its credentials, its paths) goes in.
            env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
            env.update(HOME="/tmp", PATH=DEFAULT_PATH)
            data_path = Path(bwrap.DATA) / session.dataset if data_path else None
            spool = Path(bwrap.SPOOL)
        else:
            # Never the platform's own credentials: its database's and its bucket's.
            env = {k: v for k, v in os.environ.items() if not k.startswith(SERVER_ONLY_ENV)}
        env.update(
            NSML_IS_ON_NSML="1",
            NSML_SESSION_NAME=session.name,
            NSML_DATASET_NAME=session.dataset if session.has_dataset else "",
            NSML_DATASET_PATH=str(data_path or ""),
            NSML_HAS_DATASET="1" if data_path else "0",
            NSML_GPU_NUM=str(len(gpu_ids)),
            NSML_SPOOL=str(spool),
            CUDA_VISIBLE_DEVICES=",".join(str(g) for g in gpu_ids),
            # The ids are NVML's, which count in PCI bus order; CUDA's own default order may differ.
            CUDA_DEVICE_ORDER="PCI_BUS_ID",
            PYTHONUNBUFFERED="1",
        )
        if not confined:  # unsandboxed: the library reaches the server itself (docs/security.md)
            env.update(NSML_SERVER_URL=self.server_url, NSML_TOKEN=self.token_for(session))
        # What nsml.paused() acts on (nsml.client.protocol). A resumed attempt has none of it:
        # `--pause 1 --iteration C` alone makes paused() load the session's own checkpoint C.
        if session.kind != SessionKind.NORMAL and not session.resumed_from:
            env.update(
                NSML_RELAUNCH=session.kind,
                NSML_SOURCE_SESSION=session.source,
                NSML_SOURCE_CHECKPOINT=session.source_checkpoint,
                NSML_PAUSED_TIMEOUT=str(int(self.paused_timeout)),
            )
        if session.batch_size:  # submit -b N (nsml.client.predict)
            env["NSML_SUBMIT_BATCH_SIZE"] = str(session.batch_size)
        if session.kind == SessionKind.INFER:
            inside = Path(bwrap.SPOOL) / INFER_SOCKET if confined else self.infer_socket(session)
            env["NSML_INFER_SOCKET"] = str(inside)
        return env

    def infer_socket(self, session: Session) -> Path:
        """Where an infer session's model listens. Kept short: Unix socket paths are limited
        to about 100 bytes, and NSML_HOME can be deep. A sandboxed session listens in its
        spool (the only place it shares with the platform)."""
        import hashlib

        if self.isolation.sandboxed:
            return self.spool(session) / INFER_SOCKET
        tag = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
        folder = Path(tempfile.gettempdir()) / f"nsml-{os.getuid()}-{tag}"
        folder.mkdir(mode=0o700, exist_ok=True)
        return folder / f"{session.id}.sock"

    def infer_ready(self, session: Session) -> bool:
        """Whether the infer session's model is loaded and listening. Its stage is read the way
        the supervisor reads it: a small regular file of the session's, never a link or a FIFO
        (which would hang the caller)."""
        from .session_files import read_stage

        stage = read_stage({"spool": str(self.spool(session))}) or {}
        return stage.get("stage") == "serving" and self.infer_socket(session).exists()

    def infer(self, session: Session, data) -> object:
        """One request to the loaded model over its socket (checked to be the session's own)."""
        import json
        import socket

        from nsml.core.errors import Conflict, InvalidInput
        from nsml.core.wire import connect, read_line

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            connect(conn, self.infer_socket(session), self.socket_owner(session))
            conn.sendall(json.dumps({"data": data}).encode() + b"\n")
            reply = read_line(conn)
        try:
            answer = json.loads(reply)
        except ValueError:
            raise Conflict("The infer session closed the connection without an answer; see its logs.") from None
        if "error" in answer:
            raise InvalidInput(f"infer raised an error:\n{answer['error']}")
        return answer["output"]

    def live_outputs(self, session: Session, code: dict[str, str]) -> list[tuple[str, Path, int]]:
        """(relative path, host path, size) of the files a running session wrote so far."""
        from .session_files import written_files

        workdir = self.run_dir(session) / "app"
        if not workdir.is_dir():
            return []
        return [(rel, path, path.stat().st_size) for rel, path in written_files(workdir, code)]

    def note(self, session: Session, line: str) -> None:
        """A `[nsml] …` line in the session's log; its supervisor ships it with the rest."""
        from .shipper import _note

        try:
            _note(self.run_dir(session) / "output.log", line)
        except OSError:
            pass  # the run directory is gone: the session ended meanwhile

    def signal(self, session: Session, signum: int) -> bool:
        """Signal the session's user process (SIGUSR1: the library checkpoints, `nsml pause`).

        Its main process only, not its group: SIGUSR1 ends a process that does not handle it,
        and the group holds whatever the script started (data loader workers, tools it runs),
        which have no reason to handle it; the library's handler is in the main process."""
        pid = self.user_pid(session)
        if not pid:
            return False
        try:
            os.kill(pid, signum)
            return True
        except OSError:
            return False

    def inventory(self) -> list[Node]:
        return list(self.nodes)

    def socket_owner(self, session: Session) -> int | None:
        """The uid a sandboxed session's sockets must belong to (None: not sandboxed)."""
        if not self.isolation.sandboxed:
            return None
        return bwrap.session_uid(session.id) if self.isolation.drops_uid else os.getuid()

    def dataset_view(self, dataset: Dataset, files: list[FileEntry], submit: bool = False) -> Path:
        """A read-only tree of the dataset, shared by every session of that version: without
        test/ for training; for a submit, test/ without its labels, and the top-level code
        (data_loader.py), but no train/ and no evaluation.py.

        Files are hard links to the (read-only) blobs, so a view costs no copy of the data.
        """
        # Root ignores file modes: without a read-only mount, only copies keep the blobs safe.
        link = self.readonly_mounts or os.geteuid() != 0
        suffix = ("" if link else "-copy") + ("-submit" if submit else "")
        view = self.home / "views" / f"{self.view_key(dataset, files)}{suffix}" / dataset.name
        if (view.parent / ".ready").exists():
            return view
        # Unique per build: two launches of one server process may build the same view at once.
        tmp = view.parent.with_name(view.parent.name + f".tmp{os.getpid()}-{os.urandom(4).hex()}")
        shutil.rmtree(tmp, ignore_errors=True)
        for entry in files:
            if not visible_in_view(entry.path, submit):
                continue
            target = tmp / dataset.name / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                if not link:
                    raise OSError("copy wanted")
                os.link(self.blobs.path(entry.sha256), target)
            except OSError:
                shutil.copyfile(self.blobs.path(entry.sha256), target)
                target.chmod(0o444)
        (tmp / dataset.name).mkdir(parents=True, exist_ok=True)
        for folder, dirs, _files in os.walk(tmp / dataset.name):
            os.chmod(folder, 0o555)
        (tmp / ".ready").touch()
        try:
            tmp.rename(view.parent)
        except OSError:  # another session built it meanwhile
            _rmtree_readonly(tmp)
        return view

    def view_key(self, dataset: Dataset, files: list[FileEntry]) -> str:
        """What names a dataset version's view: here its fileset (one server's numbering)."""
        return str(dataset.fileset_id)

    def prune_views(self, current_filesets: set[int], datasets_in_use: set[str]) -> None:
        """Remove views of dataset versions that are gone (removed or replaced), except those of
        datasets an active session may still be reading."""
        root = self.home / "views"
        if not root.is_dir():
            return
        for folder in root.iterdir():
            if ".tmp" in folder.name:  # a view whose build a crash interrupted
                if not (folder / ".ready").exists() and time.time() - folder.stat().st_mtime > 3600:
                    _rmtree_readonly(folder)
                continue
            fileset = folder.name.split("-")[0]
            if not fileset.isdigit() or int(fileset) in current_filesets:
                continue
            if any((folder / name).exists() for name in datasets_in_use):
                continue
            _rmtree_readonly(folder)

    def stop(self, session: Session) -> bool:
        """Ask the supervisor to stop the user process; False if it is already gone."""
        if not self.alive(session):
            return False
        try:
            os.kill(session.supervisor_pid, signal.SIGTERM)
            return True
        except ProcessLookupError:
            return False

    def alive(self, session: Session, pid: int | None = None) -> bool:
        """Whether the session's supervisor (`pid`, default its recorded handle) still runs
        (checked by command line, not just pid)."""
        pid = pid or session.supervisor_pid
        if not pid:
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            return False
        except OSError:
            try:
                os.kill(pid, 0)
                return True
            except OSError:
                return False
        args = cmdline.split(b"\0")
        return b"nsml.scheduler.supervisor" in args and str(self.run_dir(session) / "spec.json").encode() in args

    def kill(self, session: Session) -> None:
        """Kill the session's processes at once: its user process group and its supervisor.

        For sessions that are being removed, or whose supervisor vanished and left the user
        process running unsupervised.
        """
        user_pid = self.user_pid(session)
        if user_pid:
            try:
                os.killpg(user_pid, signal.SIGKILL)
            except OSError:
                pass
        supervisor = session.supervisor_pid or self._supervisor_pid_file(session)
        if self.alive(session, supervisor):
            try:
                os.kill(supervisor, signal.SIGKILL)
            except OSError:
                pass

    def _supervisor_pid_file(self, session: Session) -> int | None:
        try:
            return int((self.run_dir(session) / "supervisor.pid").read_text())
        except (OSError, ValueError):
            return None

    def user_pid(self, session: Session) -> int | None:
        """The process group of the session's user process (its leader's pid), if any may remain."""
        try:  # written by the supervisor, out of the session's reach (older runs: in the spool)
            pid = int(next(p for p in (self.run_dir(session) / "user.pid", self.spool(session) / "user.pid") if p.exists()).read_text())
        except (OSError, ValueError, StopIteration):
            return None
        try:  # a recycled pid would not carry the session's spool in its environment
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except FileNotFoundError:
            # The leader is gone; Linux does not hand out a pid still used as a process group
            # id, so a group with this id can only be what the session's process left behind.
            return pid
        except OSError:
            return pid  # no /proc here: trust the pid file
        names = environ.split(b"\0")
        if f"NSML_SPOOL={self.spool(session)}".encode() in names:
            return pid
        # Sandboxed: the process sees its spool as /run/nsml; its session name tells it apart.
        inside = {f"NSML_SPOOL={bwrap.SPOOL}".encode(), f"NSML_SESSION_NAME={session.name}".encode()}
        return pid if self.isolation.sandboxed and inside <= set(names) else None

    def remove(self, session: Session) -> None:
        shutil.rmtree(self.run_dir(session), ignore_errors=True)
        if session.kind == SessionKind.INFER:
            self.infer_socket(session).unlink(missing_ok=True)

    def release_workdir(self, session: Session) -> None:
        """Drop the working copy of an ended session whose written files the server has stored;
        the small spool (log, journal) stays for inspection until the session is removed."""
        shutil.rmtree(self.run_dir(session) / "app", ignore_errors=True)


INFER_SOCKET = "infer.sock"
# A session's processes at most (threads count): far above what training needs, far below what
# would take the machine down (a fork bomb ends its own session only).
PIDS_PER_SESSION = 4096
# What a sandboxed session inherits of the server's environment: locale and time zone, no more.
PASSED_ENV = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
SERVER_ONLY_ENV = ("NSML_", "AWS_", "PGPASSWORD", "PGPASSFILE", "RAY_")  # RAY_: a Ray node's, its cluster token among them


def _chown_tree(root: Path, uid: int) -> None:
    os.chown(root, uid, uid)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            os.chown(os.path.join(folder, name), uid, uid, follow_symlinks=False)


def visible_in_view(path: str, submit: bool) -> bool:
    """Training sees everything but test/; a submit sees test/ without the labels (any file
    named test_label*) and the top-level files but evaluation.py, and never train/."""
    top, _, rest = path.partition("/")
    if not submit:
        return top != "test"
    if not rest:
        return top != "evaluation.py"
    return top == "test" and not path.rsplit("/", 1)[-1].startswith("test_label")


def reserved_args(session: Session) -> list[str]:
    """What NSML appends to the entry's arguments when it relaunches a session."""
    if session.resumed_from:  # nsml resume, of a run or a fork: its own latest checkpoint
        return ["--pause", "1", "--iteration", session.resumed_from]
    if session.kind == SessionKind.FORK:
        return ["--pause", "1", "--iteration", session.source_checkpoint]
    if session.kind in SUBMIT_KINDS:
        return ["--pause", "1", "--mode", "test"]
    if session.kind == SessionKind.INFER:
        return ["--pause", "1"]
    return []


def _rmtree_readonly(path: Path) -> None:
    for folder, _dirs, _files in os.walk(path):
        os.chmod(folder, 0o755)
    shutil.rmtree(path, ignore_errors=True)
