"""Read-only paths for a session's user process, without bubblewrap: a private mount namespace.

The dataset view is made of hard links to the blob store, so a write through it would change
the stored dataset (and every other file with the same bytes). File modes (0444) stop ordinary
users, but not root, which ignores them. Where the kernel lets us (root with CAP_SYS_ADMIN), the
user process gets a mount namespace of its own in which the view is bind-mounted read-only:
writes fail with EROFS whoever runs them. Where it does not, `readonly_mounts_work()` says so,
and the executor builds views from copies when running as root, so the blob store stays safe.

Only the standard library is used (ctypes for unshare/mount), and the preexec function runs in
the forked child before exec, so the supervisor and the server keep their own namespace.
"""

import ctypes
import os
import subprocess
import sys
import tempfile

CLONE_NEWNS = 0x00020000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
_KEPT_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC  # same bits as os.ST_NOSUID/NODEV/NOEXEC


def make_readonly(paths: list[str], hidden: list[str] = (), binds: dict[str, str] | None = None) -> bool:
    """In the calling process: a private mount namespace where each path is read-only, each
    hidden path is an empty read-only folder (the blob store holds every dataset's hidden test
    split), and each `binds` target shows its source folder, read-only (the evaluator's
    /data/NAME).

    Returns False (having changed nothing visible outside) when the kernel refuses; callers then
    rely on file modes. Meant for a child between fork and exec (single-threaded there).
    """
    if not (paths or hidden or binds) or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return False
    if libc.unshare(CLONE_NEWNS) != 0:
        return False
    # Private first: otherwise the bind mounts below would propagate back to the host.
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return False
    ok = True
    for path in paths:
        raw = os.fsencode(path)
        try:
            kept = os.statvfs(path).f_flag & _KEPT_FLAGS
        except OSError:
            ok = False
            continue
        if libc.mount(raw, raw, None, MS_BIND | MS_REC, None) != 0:
            ok = False
            continue
        if libc.mount(raw, raw, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept, None) != 0:
            ok = False
    for path in hidden:
        if os.path.isdir(path) and libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", MS_RDONLY | _KEPT_FLAGS, b"size=4k") != 0:
            ok = False
    for target, source in (binds or {}).items():
        raw_t, raw_s = os.fsencode(target), os.fsencode(source)
        if libc.mount(raw_s, raw_t, None, MS_BIND | MS_REC, None) != 0 or \
                libc.mount(raw_s, raw_t, None, MS_REMOUNT | MS_BIND | MS_RDONLY | _KEPT_FLAGS, None) != 0:
            ok = False
    return ok


def preexec_readonly(paths: list[str], hidden: list[str] = (), binds: dict[str, str] | None = None):
    """A subprocess preexec_fn applying make_readonly; never raises (the session must start)."""

    def setup():
        try:
            make_readonly(paths, hidden, binds)
        except Exception:  # an odd kernel or libc: file modes still apply
            pass

    return setup


_PROBE = """
import os, sys
from nsml.scheduler.sandbox import make_readonly
path = sys.argv[1]
if not make_readonly([path]):
    sys.exit(2)
try:
    open(os.path.join(path, "f"), "w").close()
except OSError:
    sys.exit(0)
sys.exit(3)
"""


def readonly_mounts_work() -> bool:
    """Whether make_readonly really protects a path here (probed once in a child process)."""
    if not sys.platform.startswith("linux"):
        return False
    with tempfile.TemporaryDirectory(prefix="nsml-probe-") as tmp:
        try:
            result = subprocess.run([sys.executable, "-c", _PROBE, tmp], capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return False
        return result.returncode == 0 and not os.path.exists(os.path.join(tmp, "f"))
