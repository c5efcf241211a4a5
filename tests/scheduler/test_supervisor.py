"""The supervisor's shipping (nsml.scheduler.shipper).

Journal offsets are checked against a stand-in for the server's offset bookkeeping
(`RecordingShipper`, which answers posts as the server's ingest does, without HTTP); hostile spool
contents against the real checkpoint walking and removal with the upload replaced by a recorder;
the retry policy against a real HTTP server of this file's that answers what a full disk does.
The same attacks as real sessions through the CLI are in tests/security/test_spool_attacks.py.
"""

import http.server
import json
import os
import threading
import time
import tracemalloc

import pytest

from nsml.core import spool as codec
from nsml.scheduler import shipper as shipping
from nsml.scheduler.supervisor import Shipper


class FakeResponse:
    def __init__(self, status_code, body):
        self.status_code, self.body = status_code, body

    def json(self):
        return self.body


class RecordingShipper(Shipper):
    """Answers journal posts the way the server does: bytes it already has are skipped; a skip
    moves its offset; uploads are recorded (with the bytes the real tar streaming sends)."""

    def __init__(self, spec, server_has=0):
        super().__init__(spec)
        self.server_has = server_has
        self.stored = b""
        self.skips = []
        self.uploaded = {}  # checkpoint name -> {arcname: bytes}

    def _post(self, path, tar=None, open_source=None, **kwargs):
        if path.startswith("/checkpoints/"):
            self.uploaded[path.rsplit("/", 1)[1]] = {m.arcname: b"".join(open_source(m)) for m in tar}
            return FakeResponse(201, {})
        query = dict(part.split("=") for part in path.split("?")[1].split("&"))
        offset, skip = int(query["offset"]), int(query.get("skip", 0))
        if offset > self.server_has:
            return FakeResponse(409, {"offset": self.server_has})
        if skip:
            self.skips.append((offset, skip))
            self.server_has = max(self.server_has, offset + skip)
        else:
            new = kwargs["content"][self.server_has - offset:]
            self.stored += new
            self.server_has += len(new)
        return FakeResponse(200, {"offset": self.server_has})


def metric(step, **values) -> bytes:
    return json.dumps({"k": "m", "w": 1.0, "step": step, "s": False, "v": values}).encode() + b"\n"


def make_spool(tmp_path, journal=b""):
    """A run directory laid out as the executor makes it: home/runs/1/{spool,app,output.log},
    beside the home's blob store (home/blobs), which the attacks below aim at."""
    home = tmp_path / "home"
    (home / "blobs" / "ab").mkdir(parents=True)
    (home / "blobs" / "ab" / "cdef").write_bytes(b"a stored blob")
    run = home / "runs" / "1"
    (run / "spool" / "checkpoints").mkdir(parents=True)
    (run / "app").mkdir()
    (run / "output.log").write_bytes(b"")
    (run / "spool" / "journal.ndjson").write_bytes(journal)
    spec = {"spool": str(run / "spool"), "log": str(run / "output.log"), "workdir": str(run / "app"),
            "session": "a/b/1", "token": "t", "server_url": "http://127.0.0.1:9"}
    return spec, home


def log_of(spec) -> str:
    return open(spec["log"]).read()


def test_a_server_ahead_of_the_supervisor_gets_no_bytes_twice(tmp_path):
    data = metric(1, a=1) + json.dumps({"k": "c", "w": 2.0, "name": "1", "dir": "checkpoints/x"}).encode() + b"\n" + metric(2, a=2)
    spec, _ = make_spool(tmp_path, data)
    shipper = RecordingShipper(spec, server_has=len(data))  # it has all: sent before, answer lost
    shipper.ship_journal()
    assert shipper.stored == b"" and shipper.journal_offset == len(data)
    assert shipper.uploaded == {}


def test_a_server_behind_the_supervisor_gets_the_bytes_it_lacks(tmp_path):
    data = metric(1, a=1) + metric(2, a=2)
    spec, _ = make_spool(tmp_path, data)
    shipper = RecordingShipper(spec, server_has=0)
    shipper.journal_offset = data.index(b"\n") + 1  # the server lost the first line: 409
    shipper.ship_journal()
    assert shipper.stored == data and shipper.journal_offset == len(data)


def test_a_checkpoint_is_uploaded_after_the_metrics_before_it_then_removed(tmp_path):
    spec, _ = make_spool(tmp_path)
    folder = tmp_path / "home" / "runs" / "1" / "spool" / "checkpoints" / "123-4-ab"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.pkl").write_bytes(b"weights")
    (folder / "sub" / "opt.pkl").write_bytes(b"state")
    line = codec.checkpoint_line(2.0, "best", "123-4-ab").encode() + b"\n"
    (tmp_path / "home" / "runs" / "1" / "spool" / "journal.ndjson").write_bytes(metric(1, a=1) + line + metric(2, a=2))
    shipper = RecordingShipper(spec)
    shipper.ship_journal()
    assert shipper.uploaded == {"best": {"model.pkl": b"weights", "sub/opt.pkl": b"state"}}
    assert not folder.exists()
    assert shipper.stored.count(b"\n") == 3


@pytest.mark.parametrize("folder", ["../../../blobs", "checkpoints/../../../../blobs", "/", "checkpoints", "app"])
def test_a_checkpoint_line_that_leaves_the_spool_is_refused_and_nothing_is_deleted(tmp_path, folder):
    bad = json.dumps({"k": "c", "w": 1.0, "name": "x", "dir": folder}).encode() + b"\n"
    spec, home = make_spool(tmp_path, metric(1, a=1) + bad + metric(2, a=2))
    shipper = RecordingShipper(spec)
    shipper.ship_journal()
    assert (home / "blobs" / "ab" / "cdef").read_bytes() == b"a stored blob"
    assert shipper.uploaded == {}
    assert shipper.journal_offset == len(metric(1, a=1) + bad + metric(2, a=2))  # shipping went on
    assert "[nsml] a checkpoint line in the journal was refused" in log_of(spec)


def write_checkpoint_line(spec, ident, name="x"):
    with open(os.path.join(spec["spool"], codec.JOURNAL), "ab") as f:
        f.write(codec.checkpoint_line(1.0, name, ident).encode() + b"\n")


def test_a_checkpoint_folder_that_is_a_link_is_refused(tmp_path):
    spec, home = make_spool(tmp_path)
    os.symlink(home / "blobs", os.path.join(spec["spool"], "checkpoints", "evil"))
    write_checkpoint_line(spec, "evil")
    shipper = RecordingShipper(spec)
    shipper.ship_journal()
    assert shipper.uploaded == {} and (home / "blobs" / "ab" / "cdef").exists()
    assert "symbolic link" in log_of(spec)


def test_a_checkpoints_folder_swapped_for_a_link_is_refused(tmp_path):
    spec, home = make_spool(tmp_path)
    os.rmdir(os.path.join(spec["spool"], "checkpoints"))
    os.symlink(home, os.path.join(spec["spool"], "checkpoints"))  # checkpoints/blobs is the blob store
    write_checkpoint_line(spec, "blobs")
    shipper = RecordingShipper(spec)
    shipper.ship_journal()
    assert shipper.uploaded == {} and (home / "blobs" / "ab" / "cdef").exists()
    assert "symbolic link" in log_of(spec)


@pytest.mark.parametrize("kind", ["link to a blob", "link to a secret", "fifo", "another user's file"])
def test_a_checkpoint_holding_links_or_foreign_files_is_refused_whole(tmp_path, kind):
    spec, home = make_spool(tmp_path)
    folder = os.path.join(spec["spool"], "checkpoints", "1-2-aa")
    os.mkdir(folder)
    open(os.path.join(folder, "ok.pkl"), "wb").write(b"fine")
    secret = tmp_path / "secret"
    secret.write_bytes(b"root's secret")
    secret.chmod(0o600)
    bad = os.path.join(folder, "model.pkl")
    if kind == "link to a blob":
        os.symlink(home / "blobs" / "ab" / "cdef", bad)
    elif kind == "link to a secret":
        os.symlink(secret, bad)
    elif kind == "fifo":
        os.mkfifo(bad)  # opening it for reading would block a careless supervisor forever
    else:
        if os.geteuid() != 0:
            pytest.skip("making a file of another user needs root")
        open(bad, "wb").write(b"not the session's")
        os.chown(bad, 12345, 12345)
    write_checkpoint_line(spec, "1-2-aa")
    shipper = RecordingShipper(spec)
    shipper.ship_journal()
    assert shipper.uploaded == {}
    assert "[nsml] checkpoint 'x' was not uploaded: 'model.pkl'" in log_of(spec)
    assert secret.read_bytes() == b"root's secret" and (home / "blobs" / "ab" / "cdef").read_bytes() == b"a stored blob"
    assert not os.path.lexists(folder)  # the refused folder is removed; what its links named is not


def test_a_line_longer_than_max_line_is_skipped_without_being_read_whole(tmp_path):
    huge = b'{"k":"m","v":{"x":"' + b"A" * (64 << 20) + b'"}}\n'
    data = metric(1, a=1) + huge + metric(2, a=2)
    spec, _ = make_spool(tmp_path, data)
    size = len(huge)
    del huge, data
    shipper = RecordingShipper(spec)
    tracemalloc.start()
    try:
        shipper.ship_journal()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert shipper.stored == metric(1, a=1) + metric(2, a=2)
    assert shipper.skips == [(len(metric(1, a=1)), size)]
    assert shipper.journal_offset == len(metric(1, a=1)) + size + len(metric(2, a=2))
    assert peak < 20 << 20, f"the shipper held {peak / 2**20:.0f} MiB for a 64 MiB line"
    assert "[nsml] a journal line of 64.0 MiB was skipped: lines may be at most 1.0 MiB" in log_of(spec)


def test_a_long_line_still_being_written_is_skipped_once_it_ends(tmp_path):
    start = metric(1, a=1)
    spec, _ = make_spool(tmp_path, start + b'{"k":"m","v":{"x":"' + b"B" * (3 << 20))
    shipper = RecordingShipper(spec)
    shipper.ship_journal()
    assert shipper.stored == start and shipper.skips == []
    scanned = shipper._long_line[1]
    assert scanned > len(start) + (2 << 20)  # where the next look starts: not from the line's start again
    with open(os.path.join(spec["spool"], codec.JOURNAL), "ab") as f:
        f.write(b'"}}\n' + metric(2, a=2))
    shipper.ship_journal()
    assert shipper.stored == start + metric(2, a=2)
    assert shipper.skips == [(len(start), (3 << 20) + 23)]


def test_a_journal_that_is_a_link_or_fifo_is_not_read(tmp_path):
    spec, home = make_spool(tmp_path)
    journal = os.path.join(spec["spool"], codec.JOURNAL)
    secret = tmp_path / "secret.ndjson"
    secret.write_bytes(metric(1, password="hunter2"))
    os.unlink(journal)
    os.symlink(secret, journal)
    shipper = RecordingShipper(spec)
    shipper.ship_journal()
    assert shipper.stored == b""
    os.unlink(journal)
    os.mkfifo(journal)
    shipper.ship_journal()  # returns at once rather than blocking on the FIFO
    assert shipper.stored == b""
    assert "[nsml] the metrics journal was not read" in log_of(spec)


def test_notes_go_through_a_link_nowhere(tmp_path):
    spec, _ = make_spool(tmp_path)
    target = tmp_path / "passwd"
    target.write_text("root:x:0:0\n")
    os.unlink(spec["log"])
    os.symlink(target, spec["log"])
    shipping._note(spec["log"], "[nsml] x\nroot2::0:0")
    assert target.read_text() == "root:x:0:0\n"


def test_outputs_leave_out_links_and_files_of_other_users(tmp_path):
    spec, _ = make_spool(tmp_path)
    app = tmp_path / "home" / "runs" / "1" / "app"
    (app / "out").mkdir()
    (app / "out" / "result.txt").write_text("42")
    (app / "main.py").write_text("print(1)")
    os.symlink("/etc/passwd", app / "out" / "passwd")
    from nsml.scheduler import session_files

    import hashlib
    code = {"main.py": hashlib.sha256(b"print(1)").hexdigest()}
    refused = []
    with session_files.Folder.at(app, "app") as folder:
        members = session_files.written_members(folder, code, refused)
        assert [m.arcname for m in members] == ["out/result.txt"]
        assert b"".join(folder.chunks(members[0])) == b"42"
    assert refused == []  # links are left out silently, as before


# -- retries against a real HTTP server that answers like a full or broken one ------------------
class Answering(http.server.BaseHTTPRequestHandler):
    status = 507

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"detail": "The server's disk filled up while saving to its database; nothing was kept."}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def answering_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answering)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()


def test_a_full_server_disk_is_retried_for_a_bounded_time_then_fails_the_session(tmp_path, answering_server):
    spec, _ = make_spool(tmp_path, metric(1, a=1))
    spec["server_url"] = f"http://127.0.0.1:{answering_server.server_port}"
    spec["disk_full_retry_s"] = 1.5
    stop = {"at": None}
    shipper = Shipper(spec, stop)
    t0 = time.monotonic()
    shipper.ship_journal()
    assert 1.5 < time.monotonic() - t0 < 6
    assert shipper.failure.startswith("disk full: the server's disk is full (The server's disk filled up")
    assert stop["at"] is not None  # the session is being ended
    assert "[nsml] disk full: the server's disk is full" in log_of(spec)
    t0 = time.monotonic()
    shipper.ship_log()  # once failed, nothing more waits
    assert time.monotonic() - t0 < 1


def test_a_stop_request_bounds_the_retries_while_the_server_is_away(tmp_path, answering_server):
    Answering.status = 503
    try:
        spec, _ = make_spool(tmp_path, metric(1, a=1))
        spec["server_url"] = f"http://127.0.0.1:{answering_server.server_port}"
        stop = {"at": None}
        shipper = Shipper(spec, stop)
        threading.Timer(1.0, lambda: stop.update(at=time.monotonic())).start()
        t0 = time.monotonic()
        shipper.ship_journal()  # would retry for ever without the stop
        assert time.monotonic() - t0 < 1.0 + shipping.STOP_RETRY_S + 3
        assert shipper.journal_offset == 0 and not shipper.failure
    finally:
        Answering.status = 507


class Group:
    """Stands in for userproc's process handle: records the signals the guard sends."""

    def __init__(self):
        self.signals = []

    def signal(self, sig):
        self.signals.append((sig, time.monotonic()))


def test_the_guard_ends_the_user_process_on_a_stop_whatever_the_shipping_does(tmp_path):
    import signal

    spec, _ = make_spool(tmp_path)
    stop = {"at": None}
    shipper = Shipper(spec, stop)
    proc = Group()
    shipper.guard(proc, grace=1.0)
    time.sleep(0.3)
    assert proc.signals == []
    stop["at"] = asked = time.monotonic()
    time.sleep(1.6)
    assert [s for s, _ in proc.signals] == [signal.SIGTERM, signal.SIGKILL]
    assert proc.signals[0][1] - asked < 0.3 and 1.0 <= proc.signals[1][1] - asked < 1.4
