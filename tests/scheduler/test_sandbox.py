"""Read-only dataset views: a private mount namespace where the kernel allows one."""

import subprocess
import sys

import pytest

from nsml.scheduler import sandbox

CHILD = """
import os, sys
from nsml.scheduler.sandbox import make_readonly
ro, rw = sys.argv[1], sys.argv[2]
assert make_readonly([ro])
try:
    open(os.path.join(ro, 'data'), 'a').write('x')
except OSError as exc:
    print('refused', exc.errno)
open(os.path.join(rw, 'out'), 'w').write('fine')  # elsewhere writes still work
"""


@pytest.mark.skipif(not sandbox.readonly_mounts_work(), reason="no private mount namespaces here (not root?)")
def test_a_path_becomes_read_only_for_the_child_only(tmp_path):
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "data").write_text("original")
    out = subprocess.run([sys.executable, "-c", CHILD, str(ro), str(rw)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "refused 30"  # EROFS, even for root
    assert (ro / "data").read_text() == "original"
    assert (rw / "out").read_text() == "fine"
    (ro / "data").write_text("the parent's namespace is unchanged")


def test_preexec_never_raises(tmp_path):
    setup = sandbox.preexec_readonly([str(tmp_path / "does-not-exist")])
    proc = subprocess.run([sys.executable, "-c", "print('started')"], preexec_fn=setup, capture_output=True, text=True)
    assert proc.stdout == "started\n"
    assert sandbox.make_readonly([]) is False


def test_session_groups_left_behind_are_pruned_and_live_ones_kept(tmp_path):
    """Supervisors killed with SIGKILL leave their (empty) limit groups; the next server removes
    them. The kernel refuses to remove a group that still holds a process, as rmdir refuses a
    folder that is not empty: that stands in for a live one here."""
    from nsml.scheduler import limits

    for name in ("session-1-aa", "session-2-bb", "eval-3"):
        (tmp_path / name).mkdir()
    (tmp_path / "session-4-cc").mkdir()
    (tmp_path / "session-4-cc" / "cgroup.procs").write_text("4\n")
    assert limits.prune_empty(limits.Backend("cgroup2", v2_parent=tmp_path)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval-3", "session-4-cc"]
