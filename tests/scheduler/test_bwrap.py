"""The bubblewrap sandbox itself, driven directly: hostile snippets that must fail inside it.

The same attacks run again as real sessions in tests/security/; these pin the sandbox's own
guarantees, so a regression shows up here with a small, readable reproduction.
"""

import dataclasses
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nsml.scheduler import bwrap, limits

MODE = bwrap.probe()
pytestmark = pytest.mark.skipif(not MODE.sandboxed, reason=f"no sandbox here: {MODE.detail}")
ROOT = os.geteuid() == 0


def confine(tmp_path: Path, uid_offset: int = 7, **kw) -> bwrap.Confinement:
    work, spool = tmp_path / "app", tmp_path / "spool"
    work.mkdir(exist_ok=True)
    spool.mkdir(exist_ok=True)
    uid = bwrap.session_uid(uid_offset) if ROOT else None
    if ROOT:
        os.chown(work, uid, uid)
    return bwrap.Confinement(workdir=work, spool=spool, readonly=tuple(bwrap.interpreter_paths()), uid=uid,
                             env={"PATH": "/usr/bin:/bin"}, **kw)


def run_py(conf: bwrap.Confinement, code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    full = bwrap.argv(conf, [sys.executable, "-c", textwrap.dedent(code)])
    return subprocess.run(full, capture_output=True, text=True, timeout=timeout)


def test_runs_python_with_the_platform_packages_as_the_session_uid(tmp_path):
    conf = confine(tmp_path)
    out = run_py(conf, """
        import os, nsml, sklearn
        print(os.getuid(), os.getgid(), os.getgroups())
        print(open('/proc/self/status').read().split('CapEff:')[1].split()[0])
        open('/app/written', 'w').write('ok')
        print(os.getcwd())
    """)
    assert out.returncode == 0, out.stderr
    uid_line, caps, cwd = out.stdout.split("\n")[:3]
    if ROOT:
        assert uid_line == f"{conf.uid} {conf.uid} []"
    assert int(caps, 16) == 0
    assert cwd == "/app"
    assert (conf.workdir / "written").read_text() == "ok"


@pytest.mark.skipif(not ROOT, reason="a uid of its own needs root")
def test_a_platform_python_closed_to_other_uids_is_found(tmp_path):
    """A 0700 virtualenv would start every session on "No module named nsml": probe() reports it."""
    prefix = tmp_path / "venv"
    site = prefix / "lib" / "site-packages"
    site.mkdir(parents=True)
    for folder in (prefix, prefix / "lib", site):
        folder.chmod(0o755)
    tmp_path.chmod(0o700)  # above what the sandbox binds: it makes its own parents, 0755
    paths = [str(prefix), str(site)]
    assert bwrap.unreadable_by_others(paths) is None
    prefix.chmod(0o700)  # what mktemp -d makes
    assert bwrap.unreadable_by_others(paths) == f"{prefix} (mode 0700)"
    prefix.chmod(0o755)
    (prefix / "lib").chmod(0o700)  # between the bound prefix and its site-packages
    assert bwrap.unreadable_by_others(paths) == f"{prefix / 'lib'} (mode 0700)"
    (prefix / "lib").chmod(0o755)
    site.chmod(0o711)  # walkable, not listable: python cannot find its packages
    assert bwrap.unreadable_by_others(paths) == f"{site} (mode 0711)"
    assert bwrap.unreadable_by_others(bwrap.essential_paths()) is None  # this test's own interpreter


def test_host_addresses_come_from_the_local_table():
    fib = """Local:
  +-- 0.0.0.0/0 3 0 5
     +-- 127.0.0.0/8 2 0 2
           |-- 127.0.0.1
              /32 host LOCAL
     +-- 192.0.2.0/24 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
        |-- 192.0.2.255
           /32 link BROADCAST
           |-- 10.0.0.7
              /32 host LOCAL
"""
    assert bwrap.host_addresses(fib) == ["10.0.0.7", "192.0.2.2"]
    assert "127.0.0.1" not in bwrap.host_addresses()  # the host's own, read from /proc


def test_root_files_stay_closed(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("labels")
    secret.chmod(0o600)
    shared = tmp_path / "shared"
    shared.write_text("platform")
    shared.chmod(0o644)
    conf = confine(tmp_path, binds=((str(secret), "/secret"),))
    unbound = dataclasses.replace(conf, binds=())
    out = run_py(conf, """
        try:
            print(open('/secret').read())
        except PermissionError:
            print('denied')
    """)
    assert out.stdout.strip() == "denied", out
    # A root-owned 0644 file: not even visible unless bound in, and never writable.
    out = run_py(unbound, f"""
        import os
        try:
            open({str(shared)!r}, 'a').write('x')
            print('wrote')
        except OSError as e:
            print(type(e).__name__)
    """)
    assert out.stdout.strip() in ("PermissionError", "FileNotFoundError"), out
    assert shared.read_text() == "platform"


def test_host_paths_and_processes_are_invisible(tmp_path):
    conf = confine(tmp_path)
    out = run_py(conf, f"""
        import os
        pids = [p for p in os.listdir('/proc') if p.isdigit()]
        print(len(pids))
        print(os.path.exists({str(tmp_path / 'spool')!r}), os.path.exists({str(Path.home() / '.ssh')!r}), os.path.exists({str(Path.home())!r} + '/.nsml'))
        print(sorted(os.listdir('/etc'))[:3] and os.path.exists('/etc/shadow'))
    """)
    assert out.returncode == 0, out.stderr
    count, paths, shadow = out.stdout.split("\n")[:3]
    assert int(count) <= 3  # bwrap's init, python (and maybe a reaper): never the host's
    assert paths == "False False False"
    assert shadow == "False"


def test_dataset_view_cannot_be_written_or_remounted(tmp_path):
    view = tmp_path / "view"
    view.mkdir()
    (view / "train_data").write_text("1 2 3")
    conf = confine(tmp_path, dataset=("digits", view))
    out = run_py(conf, """
        import subprocess
        try:
            open('/data/digits/train_data', 'a').write('x')
            print('WROTE')
        except OSError as e:
            print('write', type(e).__name__)
        for cmd in ('mount -o remount,rw /data/digits', 'unshare -Urm sh -c "mount -o remount,rw /data/digits && echo x >> /data/digits/train_data"',
                    'unshare -Urm sh -c "umount /data/digits"'):
            r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
            print('rc', r.returncode)
    """)
    lines = out.stdout.split("\n")
    assert lines[0].startswith("write "), out
    assert all(line != "rc 0" for line in lines[1:4]), out
    assert (view / "train_data").read_text() == "1 2 3"


def test_no_network_reaches_the_host_loopback(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    code = f"""
        import socket
        for host in ('127.0.0.1', '10.0.2.2', 'localhost'):
            try:
                socket.create_connection((host, {port}), timeout=3)
                print('REACHED', host)
            except OSError:
                print('blocked')
    """
    for network in (False, True):
        conf = confine(tmp_path, network=network)
        proc = bwrap.start(conf, [sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE)
        out = proc.proc.stdout.read().decode()
        proc.wait(60)
        assert "REACHED" not in out and out.count("blocked") == 3, (network, out)
    server.close()


@pytest.mark.skipif(not __import__("shutil").which("slirp4netns"), reason="no slirp4netns: sessions get no network at all")
def test_a_clusters_other_addresses_are_refused_like_the_hosts(tmp_path):
    """On a Ray cluster a session's sandbox also refuses the other nodes' and the server's
    addresses (Confinement.refused): connect() fails at once with EACCES, the prohibit route's
    answer, where an address nobody refused would be tried through the network."""
    code = """
        import socket
        for host in ('192.0.2.77', '198.51.100.9'):
            try:
                socket.create_connection((host, 6379), timeout=2)
                print('REACHED', host)
            except PermissionError:
                print('refused', host)
            except OSError as e:
                print('other', host, type(e).__name__)
    """
    conf = confine(tmp_path, network=True, refused=("192.0.2.77",))
    proc = bwrap.start(conf, [sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE)
    out = proc.proc.stdout.read().decode()
    proc.wait(60)
    assert "refused 192.0.2.77" in out, out
    assert "refused 198.51.100.9" not in out, out  # only what was asked: the route is real, not a blanket cut


def test_signals_cannot_reach_processes_outside(tmp_path):
    victim = subprocess.Popen(["sleep", "30"])
    try:
        out = run_py(confine(tmp_path), f"""
            import os
            try:
                os.kill({victim.pid}, 9)
                print('KILLED')
            except OSError as e:
                print(type(e).__name__)
        """)
        assert out.stdout.strip() in ("ProcessLookupError", "PermissionError"), out
        assert victim.poll() is None
    finally:
        victim.kill()


@pytest.mark.skipif(limits.detect().name == "rlimit", reason="no working cgroup controllers here")
def test_memory_and_process_limits_end_only_the_session(tmp_path):
    backend = limits.detect()
    group = backend.group(f"test-{os.getpid()}", limits.Limits(memory_bytes=128 << 20, pids=64))
    try:
        conf = confine(tmp_path)
        hog = bwrap.start(conf, [sys.executable, "-c", "x = bytearray(1 << 30); x[::4096] = b'1' * len(x[::4096])"],
                          stdout=subprocess.DEVNULL, preexec_fn=group.preexec)
        assert hog.wait(120) != 0
        assert group.oom_killed()
    finally:
        group.remove()
    group = backend.group(f"bomb-{os.getpid()}", limits.Limits(memory_bytes=512 << 20, pids=32))
    try:
        bomb = bwrap.start(confine(tmp_path), ["sh", "-c", "for i in $(seq 200); do sleep 5 & done; wait"],
                           stdout=subprocess.DEVNULL, preexec_fn=group.preexec)
        assert bomb.wait(120) != 0
    finally:
        group.remove()
    assert subprocess.run(["true"]).returncode == 0  # the platform can still start processes
