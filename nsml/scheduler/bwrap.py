"""The session sandbox: bubblewrap around the user process.

What a session sees is listed, never subtracted: a fresh root with the system's programs and
libraries (read-only), the platform's interpreter and the session's environment (read-only, at
their own paths, so shebangs and `sys.prefix` keep working), its working directory at /app
(read-write), its dataset view at /data/NAME (read-only: the view is hard links to the blob
store, and bubblewrap's mounts cannot be remounted from inside), its spool at /run/nsml (the
only way to its supervisor), a private /tmp, a minimal /dev plus the GPUs allocated to it, and a
/proc of its own PID namespace. Not the NSML home, the database, the blob store, other sessions
or other processes.

Who the process is depends on who runs the platform:

- **root**: bubblewrap runs privileged (no user namespace: an unprivileged user namespace would
  only *look* like another uid), then `setpriv` drops to the session's own uid from a reserved
  range, clears the groups, the bounding set and the inheritable capabilities, and sets
  no_new_privs. The process is really that uid: root's 0600 files stay closed to it.
- **an ordinary user**: bubblewrap makes an unprivileged user namespace (no capabilities that
  count outside it, nested user namespaces disabled); the process keeps the platform's uid, so
  only what is bound in is visible (docs/security.md says what that leaves).

Pure argv building plus a probe; the supervisor runs the result.
"""

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

# A uid per session (never shared by two sessions, so never by two users): base + session id.
# Far above what distributions hand to people (1000+) and to subordinate-uid ranges (100000+).
UID_BASE = 1_000_000_000
UID_SPAN = 1_000_000_000

APP = "/app"          # NSML's working directory inside a session
SPOOL = "/run/nsml"   # the spool: journal, checkpoints, the supervisor's socket
DATA = "/data"        # datasets: /data/NAME

# Devices CUDA needs besides one /dev/nvidiaN per allocated GPU.
NVIDIA_SHARED = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset")
# Files of /etc a program needs; the rest of /etc (keys, other users' config) stays out.
ETC_FILES = (
    "passwd", "group", "hosts", "resolv.conf", "nsswitch.conf", "host.conf", "localtime", "ld.so.cache",
    "ld.so.conf", "ld.so.conf.d", "ssl", "ca-certificates", "ca-certificates.conf", "alternatives",
    "mime.types", "protocols", "services", "gai.conf", "os-release", "debian_version", "timezone",
    "fonts", "matplotlibrc", "pip.conf", "xdg",
)
SYSTEM_DIRS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin")


def session_uid(session_id: int) -> int:
    return UID_BASE + session_id % UID_SPAN


# A submit's evaluator (a dataset's evaluation.py) runs as a uid of its own, from the block at the
# top of the reserved range, just above the sessions' block: never a uid a session can have, so
# no session process can read or signal an evaluation. It ends below 2**31, where tools that
# read uids as signed 32-bit numbers still work.
EVALUATOR_UID_BASE = UID_BASE + UID_SPAN
EVALUATOR_UID_SPAN = 100_000_000


def evaluator_uid(submission_id: int) -> int:
    return EVALUATOR_UID_BASE + submission_id % EVALUATOR_UID_SPAN


@dataclass(frozen=True)
class Confinement:
    """What one sandboxed process may see and be."""

    workdir: Path                      # read-write at /app
    spool: Path                        # read-write at /run/nsml
    readonly: tuple[str, ...] = ()     # host paths shown read-only at the same path (interpreters, envs)
    dataset: tuple[str, Path] | None = None   # (name, view) shown read-only at /data/NAME
    binds: tuple[tuple[str, str], ...] = ()   # more read-only (source, target) pairs
    uid: int | None = None             # drop to this uid (the platform runs as root)
    network: bool = False              # False: a network namespace with nothing in it
    devices: tuple[str, ...] = ()      # device nodes (GPUs) passed through
    shm_bytes: int | None = None       # size of /dev/shm
    hostname: str = "nsml"
    env: dict[str, str] = field(default_factory=dict)
    # More addresses refused like the host's own: on a cluster, every node's and the server's
    # (a session on one node must not reach Ray, the API or the database on another).
    refused: tuple[str, ...] = ()
    chdir: str = APP


def argv(conf: Confinement, command: list[str], bwrap: str = "bwrap") -> list[str]:
    """The command line that runs `command` confined by `conf`."""
    out = [bwrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
           "--unshare-cgroup-try", "--hostname", conf.hostname]
    if not conf.network:
        out.append("--unshare-net")
    if conf.uid is None:  # unprivileged: a user namespace, and no further ones inside it
        out += ["--unshare-user", "--disable-userns"]
    out += _system_mounts()
    # /proc, /dev and /tmp first: a bind below /tmp (an environment under a home in /tmp) must
    # land on the private /tmp, not be covered by it.
    out += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
    parents = _Parents()
    for path in _outermost(conf.readonly):
        out += parents.of(path) + ["--ro-bind", path, path]
    for source, target in conf.binds:
        out += parents.of(target) + ["--ro-bind", source, target]
    if conf.dataset:
        name, view = conf.dataset
        out += parents.of(f"{DATA}/{name}") + ["--ro-bind", str(view), f"{DATA}/{name}"]
    out += ["--bind", str(conf.workdir), APP] + parents.of(SPOOL) + ["--bind", str(conf.spool), SPOOL]
    # /tmp and /dev/shm: private, and writable by the session's uid like on any machine.
    if conf.shm_bytes:
        out += ["--size", str(conf.shm_bytes)]
    out += ["--perms", "1777", "--tmpfs", "/dev/shm"]
    for device in conf.devices:
        out += ["--dev-bind", device, device]
    out += ["--chdir", conf.chdir, "--clearenv"]
    for key, value in conf.env.items():
        out += ["--setenv", key, value]
    # setsid: the user's process leads a process group of its own, which `nsml stop` signals
    # as a whole (bubblewrap's --new-session makes its init, not the command, a session leader).
    out += ["--", "setsid"]
    if conf.uid is not None:
        out += _drop_to(conf.uid)
    return out + list(command)


class _Parents:
    """`--dir` arguments for the folders above a mount point, made 0755: bubblewrap makes them
    0700 root-owned, which a session's uid could not walk through (an interpreter under a 0700 home folder)."""

    def __init__(self):
        self.made: set[str] = {"/tmp", "/dev", "/proc"}

    def of(self, path: str) -> list[str]:
        out = []
        parts = Path(path).parts[1:-1]
        for i in range(len(parts)):
            folder = "/" + "/".join(parts[: i + 1])
            if folder not in self.made and folder not in SYSTEM_DIRS and not folder.startswith("/usr/"):
                self.made.add(folder)
                out += ["--perms", "0755", "--dir", folder]
        return out


def _drop_to(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs", "--"]


def _system_mounts() -> list[str]:
    out = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):  # merged /usr: /lib -> usr/lib
            out += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            out += ["--ro-bind", path, path]
    out += ["--perms", "0755", "--dir", "/etc"]
    for name in ETC_FILES:
        path = f"/etc/{name}"
        if os.path.lexists(path):
            out += ["--ro-bind-try", path, path]
    return out


def _outermost(paths) -> list[str]:
    """Existing paths, each once, leaving out those inside another one already listed."""
    real = sorted({os.path.realpath(p) for p in paths if p and os.path.exists(p)} |
                  {os.path.abspath(p) for p in paths if p and os.path.exists(p)})
    kept: list[str] = []
    for path in real:
        if any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            continue
        if path in ("/", "/usr") or path.startswith("/usr/"):
            continue  # /usr is bound already; "/" would undo the whole sandbox
        kept.append(path)
    return kept


def interpreter_paths(python: str | None = None) -> list[str]:
    """Everything the platform's interpreter (and so a session's environment on top of it)
    imports from: its prefixes, its sys.path folders, and this package's own source (an
    editable install lives outside site-packages)."""
    prefixes = [sys.prefix, sys.base_prefix, sys.exec_prefix]
    paths = prefixes + [os.path.dirname(os.path.realpath(sys.executable))]
    # Only sys.path folders that hold installed packages: `python -m` puts the working
    # directory first, and the server's working directory may well hold the NSML home.
    paths += [p for p in sys.path if p and os.path.isdir(p) and _installed_packages(p, prefixes)]
    # The package folder alone: with an editable install it sits in a checkout whose tests and
    # .git the session has no business reading.
    paths.append(str(Path(__file__).resolve().parents[1]))
    if python:
        paths += [str(Path(python).parent.parent), os.path.dirname(os.path.realpath(python))]
    return paths


def essential_paths() -> list[str]:
    """What a session cannot start without: the interpreter, its standard library, the
    platform's virtualenv and this package (a user site folder in a 0700 home is not needed)."""
    prefixes = [sys.prefix, sys.base_prefix, sys.exec_prefix]
    inside = [p for p in sys.path if p and os.path.isdir(p) and any(
        os.path.realpath(p).startswith(os.path.realpath(x) + "/") for x in prefixes)]
    return [*prefixes, os.path.dirname(os.path.realpath(sys.executable)), *inside, str(Path(__file__).resolve().parents[1])]


def unreadable_by_others(paths: list[str]) -> str | None:
    """The first of `paths` (or a folder between it and the outermost of `paths` above it) that
    another uid cannot read and walk, or None. Sessions run as uids of their own: a platform in a
    0700 virtualenv would start every session on "No module named nsml". Folders above the
    outermost path do not count: the sandbox binds these paths, and makes its own parents."""
    import stat

    roots = [Path(os.path.realpath(p)) for p in paths]
    for real in roots:
        for folder in [real, *real.parents]:
            if not any(folder.is_relative_to(r) for r in roots):
                break
            try:
                mode = folder.stat().st_mode
            except OSError:
                break  # gone or unreachable: nothing a session would import from
            needed = stat.S_IXOTH | (stat.S_IROTH if folder == real else 0)
            if stat.S_ISDIR(mode) and mode & needed != needed:
                return f"{folder} (mode {stat.S_IMODE(mode):04o})"
    return None


def _installed_packages(path: str, prefixes: list[str]) -> bool:
    real = os.path.realpath(path)
    if os.path.basename(real) in ("site-packages", "dist-packages"):
        return True
    return any(real == os.path.realpath(p) or real.startswith(os.path.realpath(p) + "/") for p in prefixes)


def outside(paths, *private: Path) -> list[str]:
    """`paths` less any that is, holds or lies inside one of the `private` folders (the NSML
    home, the blob store): a bind of one of those would undo the sandbox."""
    roots = [os.path.realpath(p) for p in private]
    kept = []
    for path in paths:
        real = os.path.realpath(path)
        if any(real == r or real.startswith(r + "/") or r.startswith(real.rstrip("/") + "/") for r in roots):
            continue
        kept.append(path)
    return kept


@dataclass(frozen=True)
class Mode:
    """The isolation in force, as `nsml server` prints it."""

    name: str        # "bwrap+uid", "bwrap" or "none"
    detail: str

    @property
    def sandboxed(self) -> bool:
        return self.name != "none"

    @property
    def drops_uid(self) -> bool:
        return self.name == "bwrap+uid"


def find_bwrap() -> str | None:
    return shutil.which("bwrap")


def probe() -> Mode:
    """Which sandbox works here, found by running one (a kernel may ship bwrap and still refuse
    user namespaces)."""
    bwrap = find_bwrap()
    if not bwrap:
        return Mode("none", "bubblewrap is not installed (apt-get install bubblewrap)")
    root = os.geteuid() == 0
    if root and not shutil.which("setpriv"):
        return Mode("none", "setpriv (util-linux) is missing: cannot drop to a session uid")
    closed = unreadable_by_others(essential_paths()) if root else None
    if closed:
        return Mode("none", f"sessions run as uids of their own, and the platform's Python is closed to them at "
                            f"{closed}: chmod o+rx it")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="nsml-probe-") as tmp:
        work, spool = Path(tmp, "app"), Path(tmp, "spool")
        work.mkdir()
        spool.mkdir()
        uid = UID_BASE if root else None
        if root:
            os.chown(work, UID_BASE, UID_BASE)
        conf = Confinement(workdir=work, spool=spool, uid=uid)
        try:
            result = subprocess.run(argv(conf, ["/bin/sh", "-c", "touch /app/ok && id -u"], bwrap),
                                    capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            return Mode("none", f"bubblewrap could not start: {exc}")
        if result.returncode != 0 or not (work / "ok").exists():
            why = (result.stderr.strip().splitlines() or ["no output"])[-1]
            return Mode("none", f"bubblewrap refused to run here ({why}); user namespaces may be off")
        if root:
            if result.stdout.strip() != str(UID_BASE):
                return Mode("none", "bubblewrap ran, but the uid drop did not take effect")
            return Mode("bwrap+uid", "bubblewrap, a uid per session, no capabilities")
        return Mode("bwrap", "bubblewrap in a user namespace, the platform's uid (no uid per session: not root)")


class Confined:
    """A running sandboxed process and its network helper (slirp4netns), ended together.

    `child_pid` is the host pid of the sandbox's first process (bubblewrap's init; the command
    is its child), 0 if bubblewrap failed before starting it."""

    def __init__(self, proc: subprocess.Popen, net: subprocess.Popen | None, child_pid: int):
        self.proc = proc
        self.net = net
        self.pid = proc.pid
        self.child_pid = child_pid

    def wait(self, timeout: float | None = None) -> int:
        code = self.proc.wait(timeout)
        self.close()
        return code

    def poll(self) -> int | None:
        code = self.proc.poll()
        if code is not None:
            self.close()
        return code

    def close(self) -> None:
        if self.net is not None and self.net.poll() is None:
            self.net.terminate()
            try:
                self.net.wait(5)
            except subprocess.TimeoutExpired:
                self.net.kill()


def start(conf: Confinement, command: list[str], *, stdout=None, preexec_fn=None, bwrap: str = "bwrap",
          marker: dict[str, str] | None = None) -> Confined:
    """Start `command` confined by `conf`.

    With `conf.network`, the process gets a network namespace of its own, connected outwards by
    slirp4netns with the host's loopback cut off (`--disable-host-loopback`) and every address of
    the host refused by a route (`cut_off_host`): it can download a package but not talk to the
    API, the database or anything else listening on the host, on 127.0.0.1 or on 0.0.0.0. The
    user's code starts only once that network is up (bubblewrap blocks on a pipe until then).
    Without slirp4netns a network session gets an empty namespace: offline, never the host's.

    `marker`: environment of the bubblewrap process itself (not of the sandbox, which starts
    from a clean one), so the platform can recognise it in /proc.
    """
    import json

    slirp = shutil.which("slirp4netns") if conf.network else None
    info_r, info_w = os.pipe()
    fds = [info_w]
    extra = ["--info-fd", str(info_w)]
    block_r = block_w = None
    if slirp:
        block_r, block_w = os.pipe()
        fds.append(block_r)
        extra += ["--unshare-net", "--block-fd", str(block_r)]
    full = argv(conf if slirp else _offline(conf), command, bwrap)
    full[1:1] = extra
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(marker or {})}
    try:
        proc = subprocess.Popen(full, stdout=stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                preexec_fn=preexec_fn, start_new_session=True, pass_fds=tuple(fds))
    except BaseException:
        for fd in (info_r, block_w):
            if fd is not None:
                os.close(fd)
        raise
    finally:
        for fd in fds:
            os.close(fd)
    child, net = 0, None
    try:
        raw = b""
        with os.fdopen(info_r, "rb") as info:
            while not raw.rstrip().endswith(b"}"):
                chunk = info.read1(4096)
                if not chunk:
                    break
                raw += chunk
        child = int(json.loads(raw)["child-pid"]) if raw else 0
        if slirp and child:
            net = _connect(slirp, child, conf.uid is None, conf.refused)
    except (OSError, ValueError, KeyError):
        pass  # bubblewrap failed before reporting its child; its exit status says why
    finally:
        if block_w is not None:
            try:
                os.write(block_w, b"go")
            except BrokenPipeError:
                pass  # bubblewrap already ended (a failed set-up): its exit status tells
            finally:
                os.close(block_w)
    return Confined(proc, net, child)


def _connect(slirp: str, child: int, unprivileged: bool, refused: tuple[str, ...] = ()) -> subprocess.Popen | None:
    """slirp4netns into the sandbox's network namespace; returns once the network is up, with
    the host's own addresses cut off (`cut_off_host`), or None (ended) if either step failed: the
    session then runs offline, never with a way to the host's services."""
    ready_r, ready_w = os.pipe()
    cmd = [slirp, "--configure", "--mtu=65520", "--disable-host-loopback", "--ready-fd", str(ready_w)]
    if unprivileged:  # join the sandbox's user namespace to reach its netns
        cmd += ["--userns-path", f"/proc/{child}/ns/user"]
    try:
        net = subprocess.Popen([*cmd, str(child), "tap0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               stdin=subprocess.DEVNULL, pass_fds=(ready_w,), start_new_session=True)
    finally:
        os.close(ready_w)
    with os.fdopen(ready_r, "rb") as ready:
        up = ready.read(1)  # empty if slirp4netns failed: the session then runs offline
    if up and cut_off_host(child, unprivileged, sorted({*host_addresses(), *refused})):
        return net
    net.kill()
    net.wait()
    return None


def host_addresses(fib_trie: str | None = None) -> list[str]:
    """The host's own IPv4 addresses (other than 127/8), from the kernel's local routing table.

    slirp4netns makes a session's outbound connections from the host's network namespace, so a
    connection to one of these reaches whatever listens there on 0.0.0.0 (the API, PostgreSQL,
    Ray, the object store): `--disable-host-loopback` only cuts the gateway alias 10.0.2.2."""
    if fib_trie is None:
        try:
            with open("/proc/net/fib_trie") as f:
                fib_trie = f.read()
        except OSError:
            return []
    found, last = set(), ""
    for line in fib_trie.splitlines():
        text = line.strip()
        if text.startswith("|-- "):
            last = text[4:]
        elif text == "/32 host LOCAL" and last and not last.startswith("127."):
            found.add(last)
    return sorted(found, key=lambda a: tuple(int(x) for x in a.split(".")))


def cut_off_host(child: int, unprivileged: bool, addresses: list[str] | None = None) -> bool:
    """Routes in the sandbox's network namespace that refuse every host address (`prohibit`:
    connect() fails at once with EACCES). The session's process has no CAP_NET_ADMIN in that
    namespace, so it cannot take them out; IPv6 needs nothing, slirp4netns gives it none.
    Returns False if they could not be set (the caller then takes the network away)."""
    addresses = host_addresses() if addresses is None else addresses
    if not addresses:
        return True
    ns = [f"--net=/proc/{child}/ns/net"]
    if unprivileged:  # the namespace belongs to the sandbox's user namespace: enter that first
        ns = [f"--user=/proc/{child}/ns/user", "--preserve-credentials", *ns]
    nsenter, ip = shutil.which("nsenter"), shutil.which("ip")
    if not (nsenter and ip):
        return False
    batch = "".join(f"route add prohibit {a}/32\n" for a in addresses)
    try:
        done = subprocess.run([nsenter, *ns, ip, "-batch", "-"], input=batch, text=True, capture_output=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _offline(conf: Confinement) -> Confinement:
    from dataclasses import replace

    return replace(conf, network=False)
