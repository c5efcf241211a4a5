"""Attack families: privilege, the dataset view's mount (3), other processes (4). See probes.py
for the markers they print."""

import ctypes
import os
import re
import signal
import subprocess

from probes import DATA, SPOOL, T, blocked, lines, note, ok, pids, read, recognise, say


# -- 3. privilege -----------------------------------------------------------------------------
libc = ctypes.CDLL(None, use_errno=True)
MS_RDONLY, MS_REMOUNT, MS_BIND, MNT_DETACH = 1, 32, 4096, 2
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000


def family_privilege() -> None:
    status = dict(ln.split(":", 1) for ln in lines("/proc/self/status") if ":" in ln)
    caps = int(status.get("CapEff", "0").strip(), 16)
    say(f"CAPEFF {caps:x} UID {os.getuid()} EUID {os.geteuid()} NONEWPRIVS {status.get('NoNewPrivs', '?').strip()}")
    if caps:
        ok("holds capabilities", f"CapEff={caps:x}")
    else:
        blocked("capabilities", "CapEff is 0")
    if os.geteuid() == 0:
        ok("runs as root", "euid 0")
    try:
        os.setuid(0)
        ok("became root", "setuid(0) worked")
    except OSError as exc:
        blocked("setuid(0)", exc)
    # A root-owned 0600 file outside the session, by its path and through /proc.
    secret = T.get("secret_path")
    if secret:
        for path in (secret, f"/proc/1/root{secret}", f"/proc/{T.get('server_pid')}/root{secret}"):
            try:
                data = read(path)
                ok("read a root-only file", path, data)
            except OSError as exc:
                blocked(f"read {path}", exc)
    rootfile = T.get("rootfile_path")
    if rootfile:
        for attempt, action in (("append to", lambda: open(rootfile, "a").write("session was here\n")),
                                ("chmod", lambda: os.chmod(rootfile, 0o666)),
                                ("replace", lambda: _replace(rootfile))):
            try:
                action()
                ok(f"{attempt} a root-owned 0644 file", rootfile)
            except OSError as exc:
                blocked(f"{attempt} {rootfile}", exc)
    for name in sorted(os.listdir("/dev")):
        if re.fullmatch(r"(sd|vd|xvd|nvme|hd|loop|dm-|md|mem|kmem|port|kmsg).*", name):
            try:
                read(f"/dev/{name}", 512)
                ok("read a raw device", f"/dev/{name}")
            except OSError as exc:
                blocked(f"read /dev/{name}", exc)
    try:
        os.mknod("/tmp/disk", 0o600 | 0o60000, os.makedev(8, 0))
        ok("made a device node", "mknod /tmp/disk 8:0")
    except OSError as exc:
        blocked("mknod a block device", exc)
    dataset_view()
    say("DONE privilege")


def _replace(path: str) -> None:
    new = path + ".new"
    with open(new, "w") as f:
        f.write("replaced by a session\n")
    os.replace(new, path)


def dataset_view() -> None:
    """Write into the dataset view: directly, after a remount, after unmounting it, from a user
    namespace of our own. Its files are the stored blobs (hard links)."""
    if not DATA:
        return
    files = [os.path.join(f, n) for f, _d, names in os.walk(DATA) for n in names]
    target = files[0] if files else os.path.join(DATA, "x")
    raw = os.fsencode(DATA)
    if libc.mount(b"none", raw, None, MS_REMOUNT | MS_BIND, None) == 0:
        ok("remounted the dataset view read-write", DATA)
    else:
        blocked("mount(MS_REMOUNT) of the dataset view", os.strerror(ctypes.get_errno()))
    out = _sh(f"mount -o remount,rw,bind {DATA} && echo REMOUNTED")
    (ok if "REMOUNTED" in out else blocked)("mount -o remount,rw of the dataset view", out.strip().replace("\n", " | ")[-200:])
    _write_attempts(target)
    for path in (DATA, "/app", "/tmp", SPOOL, "/proc", "/"):
        if libc.umount2(os.fsencode(path), MNT_DETACH) == 0:
            ok("unmounted something", path)
        else:
            blocked(f"umount {path}", os.strerror(ctypes.get_errno()))
    if libc.unshare(CLONE_NEWNS) == 0:
        ok("a mount namespace of its own without a user namespace", "unshare(CLONE_NEWNS) worked")
    else:
        blocked("unshare(CLONE_NEWNS)", os.strerror(ctypes.get_errno()))
    # A user namespace of our own (root inside it): the view's mount is locked read-only there.
    script = (f"mount -o remount,rw,bind {DATA} && echo REMOUNTED; umount -l {DATA} && echo UNMOUNTED; "
              f"ls {DATA}; echo corrupted >> {target} && echo WROTE; touch {DATA}/new && echo CREATED")
    out = _sh(f"unshare -Urm sh -c '{script}'")
    note("unshare -Urm (a user namespace of the session's own)", out.strip().replace("\n", " | ")[-300:])
    for word, what in (("REMOUNTED", "remounted the view read-write in a user namespace"),
                       ("WROTE", "wrote a dataset file from a user namespace"),
                       ("CREATED", "created a file in the dataset view from a user namespace")):
        (ok if word in out.split() else blocked)(what, out.strip().replace("\n", " | ")[-200:])


def _write_attempts(target: str) -> None:
    for attempt, action in (("append to", lambda: open(target, "a").write("corrupted")),
                            ("truncate", lambda: open(target, "r+").truncate(0)),
                            ("chmod", lambda: os.chmod(target, 0o666)),
                            ("create in", lambda: open(os.path.join(DATA, "new"), "w").close()),
                            ("remove", lambda: os.remove(target))):
        try:
            action()
            ok(f"{attempt} the dataset view", target)
        except OSError as exc:
            blocked(f"{attempt} the dataset view", exc)


def _sh(command: str) -> str:
    """stdout and stderr of a shell command, together."""
    try:
        return subprocess.run(["/bin/sh", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"could not run: {exc}"


# -- 4. other processes -----------------------------------------------------------------------
PTRACE_SEIZE = 0x4206
MARKS = {b"nsml.scheduler.supervisor": "a supervisor", b"nsml.server.main": "the server", b"bwrap": "bubblewrap"}


def family_processes() -> None:
    me = os.getpid()
    mine = {me, *_ancestors_inside()}
    visible = pids()
    note("visible processes", len(visible))
    targets: dict[int, str] = {}
    for pid in visible:
        try:
            cmd = read(f"/proc/{pid}/cmdline").replace(b"\0", b" ")
        except OSError:
            continue
        for mark, what in MARKS.items():
            if mark in cmd and pid not in (me,):
                targets[pid] = what
                if mark != b"bwrap":
                    ok(f"sees {what}'s process", f"pid {pid}: {cmd[:160].decode('utf-8', 'replace')}")
    for pid in T.get("platform_pids", []):
        targets.setdefault(pid, "a platform process (pid given)")
    for pid in T.get("victim_pids", []):
        targets.setdefault(pid, "another session's process")
    if os.getppid() not in mine:
        targets.setdefault(os.getppid(), "the parent (the supervisor, or the sandbox's init)")
    for pid, what in sorted(targets.items()):
        if pid == me:
            continue
        _inspect(pid, what)
    # Guessing: every pid the kernel can hand out, signal 0 (permission and existence only).
    signalled = []
    try:
        pid_max = int(read("/proc/sys/kernel/pid_max"))
    except (OSError, ValueError):
        pid_max = 1 << 15
    ours = {pid for pid in visible if _session_of(pid) == os.getsid(0)}  # the session's own processes
    for pid in range(1, min(pid_max, 1 << 17) + 1):
        if pid in mine or pid in ours:
            continue
        try:
            os.kill(pid, 0)
        except OSError:
            continue
        if _thread_group(pid) not in mine | ours:  # a thread of our own is no other process
            signalled.append(pid)
    if signalled:
        ok("may signal processes it cannot see", f"{len(signalled)} pids, e.g. {signalled[:10]}")
    else:
        blocked("signal any pid outside its own processes", f"none of 1..{min(pid_max, 1 << 17)}")
    for pid in T.get("kill_pids", []):
        for how, act in (("kill -9", lambda p=pid: os.kill(p, signal.SIGKILL)),
                         ("kill -9 of its group", lambda p=pid: os.killpg(p, signal.SIGKILL))):
            try:
                act()
                ok(f"{how} {pid}", "the signal was delivered")
            except OSError as exc:
                blocked(f"{how} {pid}", exc)
    say("DONE processes")


def _thread_group(pid: int) -> int | None:
    for line in lines(f"/proc/{pid}/status"):
        if line.startswith("Tgid:"):
            return int(line.split()[1])
    return None


def _session_of(pid: int) -> int | None:
    try:
        return int(read(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()[3])
    except (OSError, ValueError, IndexError):
        return None


def _ancestors_inside() -> list[int]:
    out, pid = [], os.getpid()
    for _ in range(10):
        try:
            pid = int(read(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        if pid <= 0:
            break
        out.append(pid)
    return out


def _inspect(pid: int, what: str) -> None:
    label = f"{what} (pid {pid})"
    try:
        env = read(f"/proc/{pid}/environ")
        if env:
            recognise(env, f"/proc/{pid}/environ")
            ok(f"read the environment of {label}", f"{len(env)} bytes")
        else:
            blocked(f"environment of {label}", "empty")
    except OSError as exc:
        blocked(f"environment of {label}", exc)
    try:
        maps = read(f"/proc/{pid}/maps").decode().splitlines()
        region = next(ln for ln in maps if " r" in ln[:30])
        start = int(region.split("-")[0], 16)
        with open(f"/proc/{pid}/mem", "rb") as mem:
            mem.seek(start)
            ok(f"read the memory of {label}", f"{len(mem.read(64))} bytes at {start:x}")
    except (OSError, StopIteration, ValueError) as exc:
        blocked(f"memory of {label}", exc)
    home = T.get("home", "")
    try:
        if os.path.exists(f"/proc/{pid}/root{home}") and home:
            ok(f"sees the NSML home through /proc/{pid}/root", f"/proc/{pid}/root{home}: {os.listdir(f'/proc/{pid}/root{home}')[:10]}")
        else:
            blocked(f"/proc/{pid}/root of {label}", "no NSML home there")
    except OSError as exc:
        blocked(f"/proc/{pid}/root of {label}", exc)
    # ptrace from a child, so that its exit detaches (and the target never stops).
    child = os.fork()
    if child == 0:
        code = 0 if libc.ptrace(PTRACE_SEIZE, pid, None, None) == 0 else 1
        os._exit(code)
    _, status = os.waitpid(child, 0)
    if os.WEXITSTATUS(status) == 0:
        ok(f"ptrace {label}", "PTRACE_SEIZE worked")
    else:
        blocked(f"ptrace {label}", "refused")
    try:
        os.kill(pid, 0)
        ok(f"may signal {label}", "kill(pid, 0) worked")
    except OSError as exc:
        blocked(f"signal {label}", exc)
