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
