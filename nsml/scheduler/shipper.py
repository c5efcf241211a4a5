"""The supervisor's shipping: the session's log, journal, checkpoints and outputs, to the server.

Everything is sent by byte offset and is idempotent on the server, so a retry after a lost
answer or a server restart stores nothing twice. The session is hostile by assumption, and it
owns its spool: the journal's records are checked with the spool codec (nsml.core.spool), files
are opened without following links (session_files.py), a journal line over MAX_LINE is skipped
without being read into memory (the server is told to move its offset past it), and whatever is
refused gets one `[nsml] ...` line in the session's log while the shipping goes on.

Retries are bounded where waiting cannot help: answers of 507 (the server's disk is full), or
a spool disk with no space left, for longer than `disk_full_retry_s` end the session as failed
with "disk full"; after a stop request an upload is retried only briefly; and `guard` ends the
user process on a stop (SIGTERM, SIGKILL after the grace period) whatever the shipping is
doing, so `nsml stop` ends a session within GRACE_SECONDS even while the server is unreachable
or refusing.
"""

import json
import math
import os
import signal
import threading
import time
from pathlib import Path

from nsml.core import spool as codec

GRACE_SECONDS = 10
MAX_CHUNK = 8 << 20      # bytes of log or journal per request (the server takes at most 16 MiB)
SCAN_CHUNK = 1 << 20     # reading through a journal line too long to ship
DISK_FULL_RETRY_S = 30.0
STOP_RETRY_S = 3.0       # after a stop: how long one upload is retried while the server is away
EXIT_RETRY_S = 300.0     # the exit report, which records how the session ended
MAX_NOTES = 100          # `[nsml]` lines about refused records, per attempt
# Journal pacing: after each post the next waits PACE_ROUND_TRIPS of the server's recent round
# trips, at most MAX_PACE_S. An idle server answers in milliseconds, so a lone session's metrics
# show within the supervisor's 0.2 s poll; a loaded one answers slowly, and its sessions then
# post less often, each post carrying more: much of the server's cost is per post, not per value
# (bench/README.md, load: 100 sessions each posting every 0.2 s kept it saturated at any rate).
PACE_ROUND_TRIPS = 8
MAX_PACE_S = 0.8
_DISK_FULL = 507


class Shipper:
    """Sends new bytes of the spool's files to the server; resumes from the server's offsets.

    A resumed session's new attempt starts with fresh spool files, while the server's log and
    journal go on from where the earlier attempts left them: `log_base` and `journal_base` (the
    server's offsets when this attempt was launched) are where byte 0 of the local files lands.
    Offsets below are the server's; a local file is read at offset - base.

    `stop_requested`: the supervisor's {"at": monotonic time or None}; set once `nsml stop` (or
    the paused() timeout, or a failure found here) ends the session.
    """

    def __init__(self, spec: dict, stop_requested: dict | None = None):
        import httpx  # imported after the user process started: it is the slow part

        from nsml.scheduler import session_files

        self.spec = spec
        self.spool = Path(spec["spool"])
        # The log lies beside the spool (supervisor.log_path); older specs kept it inside.
        self.log = Path(spec["log"]) if spec.get("log") else self.spool / codec.LOG
        self.spool_fd = session_files.open_dir(str(self.spool))  # held: a session cannot move it
        self.owner = os.fstat(self.spool_fd).st_uid  # whose files the spool's must be
        self.base = f"/api/sessions/{spec['session']}"
        self.client = httpx.Client(timeout=60, headers={"Authorization": f"Bearer {spec['token']}"})
        self.url = spec["server_url"]
        self.log_base = spec.get("log_base", 0)
        self.journal_base = spec.get("journal_base", 0)
        self.log_offset = self.log_base
        self.journal_offset = self.journal_base
        self.gone = False  # the server deleted the session
        self.failure = ""  # why the session must end as failed ("disk full: ..."), once known
        self.stop_requested = stop_requested if stop_requested is not None else {"at": None}
        self.disk_full_retry_s = float(os.environ.get("NSML_DISK_FULL_RETRY_S") or spec.get("disk_full_retry_s") or DISK_FULL_RETRY_S)
        self._server_full_since: float | None = None
        self._spool_full_since: float | None = None
        self._long_line: tuple[int, int] | None = None  # (start, scanned up to) of a line being skipped
        self._round_trip = 0.0  # seconds, a moving average over the journal's recent posts
        self._journal_due = 0.0  # monotonic time before which ship_journal() waits (pacing)
        self.journal_acked = -math.inf  # monotonic time the server last took a journal post (a heartbeat too)
        self._noted: set[str] = set()

    # -- posting -------------------------------------------------------------------------------
    def _post(self, path: str, tar: list | None = None, open_source=None, patience: float | None = None, **kwargs):
        """POST; the response, or None when it was given up on: the session was removed (404,
        `gone`), the server's disk stayed full (507) past disk_full_retry_s (`failure` says so),
        or, once a stop was asked for or the session failed, the server did not answer within
        STOP_RETRY_S. Otherwise (server away or restarting, 5xx) it is retried with backoff, so a
        server restart loses nothing. `patience`: retry that long whatever the state (the exit).

        `tar`: archive members sent as the body, streamed afresh on each attempt (by
        `open_source`, session_files.Folder.chunks), so a large checkpoint is never held in
        memory. A file that changes while it is sent raises InvalidInput.
        """
        import httpx

        delay = 0.2
        started = time.monotonic()
        while True:
            if tar is not None:
                from nsml.store.archive import archive_size, stream_tar

                kwargs["content"] = stream_tar(tar, open_source)
                kwargs["headers"] = {"Content-Type": "application/x-tar", "Content-Length": str(archive_size(tar))}
            resp = None
            try:
                resp = self.client.post(self.url + self.base + path, **kwargs)
            except httpx.TransportError:
                self.refresh_url()
            now = time.monotonic()
            if resp is not None:
                if resp.status_code == 401 and patience is not None:
                    return resp  # the exit report: the token ends with the session, whose end is recorded
                if resp.status_code == 404:
                    self.gone = True
                    return None
                if resp.status_code == _DISK_FULL:
                    self._server_full_since = self._server_full_since or now
                    if now - self._server_full_since > self.disk_full_retry_s and not self.failure:
                        self.fail(f"disk full: the server's disk is full ({_detail(resp)})")
                elif resp.status_code < 500 and resp.status_code not in (401, 422):
                    self._server_full_since = None
                    return resp
            if patience is not None:
                if now - started > patience:
                    return None
            elif self.failure or (self.stop_requested["at"] is not None and now - started > STOP_RETRY_S):
                return None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def refresh_url(self) -> None:
        """An embedded server restarted on another port writes its new address here."""
        server_file = self.spec.get("server_file")
        if server_file:
            try:
                self.url = json.loads(Path(server_file).read_text())["url"]
            except (OSError, ValueError, KeyError):
                pass

    # -- the log -------------------------------------------------------------------------------
    # Each ship_* call sends what the file held when it was called, then returns: a process that
    # writes faster than one round trip must not keep the shipper on one file forever.
    def ship_log(self) -> None:
        try:
            fd = os.open(self.log, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return
        try:
            target = self.log_base + os.fstat(fd).st_size
            while not self.gone and target > self.log_offset:
                data = os.pread(fd, min(MAX_CHUNK, target - self.log_offset), self.log_offset - self.log_base)
                if not data:
                    return  # the session truncated its log
                resp = self._post(f"/logs?offset={self.log_offset}", content=data)
                if resp is None or resp.status_code >= 300:
                    return
                self.log_offset = max(self.log_base, resp.json()["offset"])
        finally:
            os.close(fd)

    # -- the journal ---------------------------------------------------------------------------
    def ship_journal(self, now: bool = False) -> None:
        """Ship what the journal holds, unless the pacing says to wait (`now`: the last call,
        at the session's end, never waits)."""
        from nsml.scheduler import session_files

        if not now and time.monotonic() < self._journal_due:
            return
        try:
            fd, st = session_files.open_file(self.spool_fd, codec.JOURNAL, self.owner)
        except FileNotFoundError:
            return  # nothing reported yet
        except codec.SpoolError as exc:
            self.note_once("journal", f"[nsml] the metrics journal was not read: {exc}")
            return
        try:
            target = self.journal_base + st.st_size
            while not self.gone and not self.failure and self.journal_offset < target:
                before = self.journal_offset
                if not self._ship_journal_chunk(fd, target) or self.journal_offset == before:
                    return
        finally:
            os.close(fd)

    def _ship_journal_chunk(self, fd: int, target: int) -> bool:
        """Ship (or skip) what follows journal_offset; False when there is nothing more to do
        now (a line still being written, or the server not taking it)."""
        start = self.journal_offset
        if self._long_line and self._long_line[0] == start:
            return self._skip_long_line(fd, target)
        data = os.pread(fd, min(MAX_CHUNK, target - start), start - self.journal_base)
        if not data:
            return False
        long = codec.long_lines(data)
        if long and long[0][0] == 0:  # the line at the offset is too long to ship
            self._long_line = (start, start)
            return self._skip_long_line(fd, target)
        end = long[0][0] if long else data.rfind(b"\n") + 1
        if end == 0:
            return False  # the last line is still being written
        return self._send_lines(data[:end])

    def _send_lines(self, data: bytes) -> bool:
        """Post complete lines (each at most MAX_LINE bytes), uploading each checkpoint once the
        lines before it are stored: a checkpoint's summary is what was reported before it.
        False when the server is not taking them now."""
        if b'"' + codec.CHECKPOINT.encode() + b'"' not in data:  # the usual case: metrics only
            return self._post_journal(data) is not False
        start = pos = 0
        while pos < len(data):
            line_end = data.index(b"\n", pos) + 1
            record = codec.checkpoint_in(data[pos:line_end])
            pos = line_end
            if record is not None:
                sent = self._post_journal(data[start:line_end])
                if sent is not True:
                    return sent is None  # None: the server is elsewhere in the file, re-read from there
                self._upload_checkpoint(record)
                start = line_end
        return start == len(data) or self._post_journal(data[start:]) is not False

    def _skip_long_line(self, fd: int, target: int) -> bool:
        """Read on through the overlong line at journal_offset, a block at a time, for its end;
        once found, have the server skip it. Where the scan got to is kept for the next call."""
        start, pos = self._long_line
        pos = max(pos, start + 1)
        while pos < target:
            block = os.pread(fd, min(SCAN_CHUNK, target - pos), pos - self.journal_base)
            if not block:
                break
            newline = block.find(b"\n")
            if newline >= 0:
                length = pos + newline + 1 - start
                self.note(f"[nsml] a journal line of {_size_text(length)} was skipped: lines may be at most "
                          f"{_size_text(codec.MAX_LINE)} (report smaller values)")
                self._long_line = None
                return self._post_journal(skip=length) is not False
            pos += len(block)
        self._long_line = (start, pos)
        return False

    def _post_journal(self, data: bytes = b"", skip: int = 0) -> bool | None:
        """Send data (or skip `skip` bytes), starting at journal_offset. True if the server's
        offset is now where it ends; None if the server is elsewhere in the file (its offset is
        taken: the next read starts there); False if it was not reached, or refused."""
        if (not data and not skip) or self.gone:
            return not self.gone
        expected = self.journal_offset + (skip or len(data))
        query = f"/journal?offset={self.journal_offset}" + (f"&skip={skip}" if skip else "")
        sent = time.monotonic()
        resp = self._post(query, content=data)
        self._pace(time.monotonic() - sent)
        if resp is None:
            return False
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code == 409:  # the server knows a different offset; resume from its
            self.journal_offset = max(self.journal_base, body.get("offset", self.journal_offset))
            return None
        if resp.status_code >= 300 or "offset" not in body:
            self.note_once("journal-refused", f"[nsml] the server refused the metrics journal: {_detail(resp)}")
            return False
        for item in body.get("notes") or ():  # what the ingest refused, e.g. a NaN value
            self.note_once(str(item.get("about", "")), str(item.get("text", ""))[:500])
        self.journal_offset = body["offset"]
        self.journal_acked = time.monotonic()
        return True if self.journal_offset == expected else None

    def _pace(self, round_trip: float) -> None:
        self._round_trip = round_trip if not self._round_trip else 0.7 * self._round_trip + 0.3 * round_trip
        self._journal_due = time.monotonic() + min(MAX_PACE_S, PACE_ROUND_TRIPS * self._round_trip)

    # -- checkpoints, outputs, predictions -----------------------------------------------------
    def _upload_checkpoint(self, record: dict) -> None:
        from urllib.parse import quote

        from nsml.core.errors import NsmlError
        from nsml.scheduler import session_files

        try:
            name, folder = codec.checkpoint_record(record)
        except codec.SpoolError as exc:
            self.note(f"[nsml] a checkpoint line in the journal was refused: {exc}")
            return
        try:
            codec.inside(str(self.spool), folder)  # a clear message for links on the way
        except codec.SpoolError as exc:
            self.note(f"[nsml] checkpoint {name!r} was not uploaded: {exc}")
            return
        walltime = record.get("w")
        if type(walltime) not in (int, float) or not math.isfinite(walltime):
            walltime = time.time()
        try:
            parent = session_files.open_below(self.spool_fd, codec.CHECKPOINTS)
            try:
                checkpoint = session_files.Folder(parent, folder.partition("/")[2], folder)
            finally:
                os.close(parent)
        except FileNotFoundError:
            return  # uploaded before a restart of this supervisor
        except codec.SpoolError as exc:
            self.note(f"[nsml] checkpoint {name!r} was not uploaded: {exc}")
            return
        with checkpoint:
            try:
                members = checkpoint.members(links="refuse")
            except (codec.SpoolError, OSError) as exc:
                self.note(f"[nsml] checkpoint {name!r} was not uploaded: {exc}")
                checkpoint.remove()
                return
            try:
                resp = self._post(f"/checkpoints/{quote(name, safe='')}", tar=members, open_source=checkpoint.chunks,
                                  params={"walltime": walltime})
            except NsmlError as exc:  # the save function's files changed after it returned
                self.note(f"[nsml] checkpoint {name!r} could not be uploaded: {exc}")
                return
            if resp is not None and resp.status_code < 300:
                checkpoint.remove()
            elif resp is not None:
                self.note(f"[nsml] checkpoint {name!r} was refused: {_detail(resp)}")

    def ship_outputs(self) -> None:
        # Sent even when empty: a stored (possibly empty) outputs set tells the server that the
        # run directory holds nothing it still needs.
        if self.gone:
            return
        from nsml.core.errors import NsmlError
        from nsml.scheduler import session_files

        refused: list[str] = []
        try:
            with session_files.Folder.at(self.spec["workdir"], "the working directory") as workdir:
                members = session_files.written_members(workdir, self.spec.get("code_files", {}), refused)
                for problem in refused[:10]:
                    self.note(f"[nsml] an output file was not uploaded: {problem}")
                self._post("/outputs", tar=members, open_source=workdir.chunks)
        except (NsmlError, codec.SpoolError, OSError) as exc:  # a file that changed under us: say so
            self.note(f"[nsml] the session's output files could not be uploaded: {exc}")

    def ship_prediction(self) -> None:
        """A submit's predictions, for the evaluator on the server's side."""
        if self.gone:
            return
        from nsml.core.errors import NsmlError
        from nsml.scheduler import session_files

        try:
            with session_files.Folder.at(str(self.spool), "the spool") as spool:
                member = spool.member(codec.PREDICTION)
                self._post("/prediction", tar=[member], open_source=spool.chunks)
        except FileNotFoundError:
            return
        except (NsmlError, codec.SpoolError, OSError) as exc:
            self.note(f"[nsml] the predictions could not be uploaded: {exc}")

    def report_exit(self, exit_code: int, stopped: bool, relaunch: dict | None = None, reason: str = "",
                    usage: dict | None = None) -> None:
        """`usage`: what the run used as a whole (supervisor.run_usage), for its end sample."""
        if self.failure:  # the supervisor ended it (a full disk): failed, not stopped
            stopped, reason = False, self.failure
        self._post("/exit", json={"exit_code": exit_code, "stopped": stopped, "relaunch": relaunch, "reason": reason[:200],
                                  "usage": usage}, patience=EXIT_RETRY_S)

    # -- ending the session ----------------------------------------------------------------------
    def fail(self, reason: str) -> None:
        """End the session as failed, for `reason` (one line, shown by `nsml ps`)."""
        self.failure = reason
        self.note(f"[nsml] {reason}; the session was ended.")
        if self.stop_requested["at"] is None:
            self.stop_requested["at"] = time.monotonic()

    def start_heartbeat(self) -> threading.Thread:
        """Report in every `heartbeat_every` seconds (the scheduler's liveness: a session whose
        supervisor stops reporting is lost), but for beats within that time of a journal post,
        which the server records as a heartbeat itself. One try per beat on a client of its own, so a slow
        upload never delays it; the next beat is the retry."""
        import httpx

        every = float(self.spec.get("heartbeat_every") or 5.0)
        client = httpx.Client(timeout=max(1.0, every), headers=self.client.headers)

        def beat() -> None:
            while not self.gone:
                if time.monotonic() - self.journal_acked >= every:  # the server counts a journal post as one
                    try:
                        resp = client.post(self.url + self.base + "/heartbeat")
                        if resp.status_code == 404:
                            self.gone = True
                    except httpx.HTTPError:
                        self.refresh_url()
                time.sleep(every)

        thread = threading.Thread(target=beat, name="nsml-heartbeat", daemon=True)
        thread.start()
        return thread

    def guard(self, proc, grace: float = GRACE_SECONDS) -> threading.Thread:
        """A thread that ends the user process once a stop is asked for, whatever the shipping
        is doing (a post can wait up to its timeout): SIGTERM at once, SIGKILL after `grace`.
        It also watches the spool's disk: no space left there for disk_full_retry_s fails the
        session, as a full disk on the server does."""

        def run() -> None:
            signalled = False
            next_check = 0.0
            while True:
                now = time.monotonic()
                at = self.stop_requested["at"]
                if at is not None:
                    if not signalled:
                        proc.signal(signal.SIGTERM)
                        signalled = True
                    elif now - at > grace:
                        proc.signal(signal.SIGKILL)
                        return
                if now >= next_check:
                    next_check = now + 1.0
                    self._check_spool_disk(now)
                time.sleep(0.1)

        thread = threading.Thread(target=run, name="nsml-stop-guard", daemon=True)
        thread.start()
        return thread

    def _check_spool_disk(self, now: float) -> None:
        try:
            free = os.statvfs(self.spool_fd).f_bavail
        except OSError:
            return
        if free > 0:
            self._spool_full_since = None
        elif self._spool_full_since is None:
            self._spool_full_since = now
        elif now - self._spool_full_since > self.disk_full_retry_s and not self.failure:
            self.fail(f"disk full: no space is left on the disk that holds the session's files ({self.spool.parent})")

    # -- notes in the session's log ----------------------------------------------------------------
    def note(self, text: str) -> None:
        """One `[nsml]` line in the session's log, at most MAX_NOTES of them per attempt."""
        if len(self._noted) >= MAX_NOTES:
            if "\0capped" not in self._noted:
                self._noted.add("\0capped")
                _note(self.log, "[nsml] more records of this session were refused; they are not noted any more")
            return
        self._noted.add(f"\0{len(self._noted)}")
        _note(self.log, text)

    def note_once(self, about: str, text: str) -> None:
        """A note, once per `about` (a NaN for each key, not for each step)."""
        if about in self._noted:
            return
        if len(self._noted) < MAX_NOTES:
            self._noted.add(about)
        self.note(text)


def _note(log: Path, text: str) -> None:
    """A line of the platform's in the session's log; never through a link, never blocking on
    a FIFO, and silently nothing when the disk is full."""
    try:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    try:
        import stat

        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.write(fd, text.replace("\n", " ").encode(errors="replace") + b"\n")
    except OSError:
        pass
    finally:
        os.close(fd)


def _detail(resp) -> str:
    """The one line an error answer carries."""
    try:
        detail = resp.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail if detail else resp.text or resp.status_code)[:300]


def _size_text(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"
