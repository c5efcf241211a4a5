"""The supervisor: parent of one session's user process, and its only link to the server.

Started by the local executor as `python -m nsml.scheduler.supervisor SPEC.json` in a process
group of its own, so it outlives a server restart. It starts the user process at once (before
importing anything slow), then ships the log, the metrics journal and checkpoints by byte
offset, retrying while the server is away, and holds the channel on which `nsml exec` and
`nsml sh` requests reach the session (channel.py). SIGTERM means `nsml stop`: it forwards the
signal to the user's process group, and kills it after a grace period.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

GRACE_SECONDS = 10
POLL_SECONDS = 0.2
MAX_CHUNK = 8 << 20


def start_user_process(spec: dict):
    """The user process, sandboxed when the spec says so (nsml.scheduler.userproc)."""
    from nsml.scheduler import userproc

    with open(log_path(spec), "ab") as log:  # the child keeps its own copy
        return userproc.start(spec, log, preexec=user_preexec(spec))


def log_path(spec: dict) -> Path:
    """The session's log: beside the spool, not in it (the session could swap a file in its
    spool for a link to one it must not read); older specs kept it in the spool."""
    return Path(spec["log"]) if spec.get("log") else Path(spec["spool"]) / "output.log"


def user_preexec(spec: dict):
    """What the user process (and `nsml sh`) runs under: the dataset view read-only even for
    root, the blob store hidden (see sandbox.py); None where nothing is to be hidden."""
    if not (spec.get("readonly") or spec.get("hidden")):
        return None
    from nsml.scheduler.sandbox import preexec_readonly

    return preexec_readonly(spec.get("readonly", []), spec.get("hidden", []))


class Shipper:
    """Sends new bytes of the spool's files to the server; resumes from the server's offsets.

    A resumed session's new attempt starts with fresh spool files, while the server's log and
    journal go on from where the earlier attempts left them: `log_base` and `journal_base` (the
    server's offsets when this attempt was launched) are where byte 0 of the local files lands.
    Offsets below are the server's; a local file is read at offset - base.
    """

    def __init__(self, spec: dict):
        import httpx  # imported after the user process started: it is the slow part

        self.spec = spec
        self.spool = Path(spec["spool"])
        self.log = log_path(spec)
        self.base = f"/api/sessions/{spec['session']}"
        self.client = httpx.Client(timeout=60, headers={"Authorization": f"Bearer {spec['token']}"})
        self.url = spec["server_url"]
        self.log_base = spec.get("log_base", 0)
        self.journal_base = spec.get("journal_base", 0)
        self.log_offset = self.log_base
        self.journal_offset = self.journal_base
        self.gone = False  # the server deleted the session

    def _post(self, path: str, tar: list | None = None, **kwargs):
        """POST, retrying until the server answers; returns the response (None if gone).

        `tar`: archive members to send as the body, streamed from disk afresh on each attempt,
        so a large checkpoint or output file is never held in memory. A file that changes while
        it is sent raises InvalidInput.
        """
        import httpx

        delay = 0.2
        while True:
            if tar is not None:
                from nsml.store.archive import archive_size, stream_tar

                kwargs["content"] = stream_tar(tar)
                kwargs["headers"] = {"Content-Type": "application/x-tar", "Content-Length": str(archive_size(tar))}
            try:
                resp = self.client.post(self.url + self.base + path, **kwargs)
                if resp.status_code == 404:
                    self.gone = True
                    return None
                if resp.status_code < 500 and resp.status_code not in (401, 422):
                    return resp
            except httpx.TransportError:
                self.refresh_url()
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

    # Each ship_* call sends what the file held when it was called, then returns: a process that
    # writes faster than one round trip must not keep the shipper on one file forever.
    def ship_log(self) -> None:
        path = self.log
        target = self.log_base + _size(path)
        while not self.gone and target > self.log_offset:
            with open(path, "rb") as f:
                f.seek(self.log_offset - self.log_base)
                data = f.read(min(MAX_CHUNK, target - self.log_offset))
            resp = self._post(f"/logs?offset={self.log_offset}", content=data)
            if resp is not None:
                self.log_offset = max(self.log_base, resp.json()["offset"])

    def ship_journal(self) -> None:
        path = self.spool / "journal.ndjson"
        target = self.journal_base + _size(path)
        chunk = MAX_CHUNK
        while not self.gone and target > self.journal_offset:
            with open(path, "rb") as f:
                f.seek(self.journal_offset - self.journal_base)
                data = f.read(min(chunk, target - self.journal_offset))
            end = data.rfind(b"\n") + 1
            if end == 0:
                if len(data) < chunk:
                    return  # the last line is still being written
                chunk *= 2  # one line longer than a chunk (a huge logged list): read more
                continue
            chunk = MAX_CHUNK
            data = data[:end]
            # Metrics before a checkpoint line reach the server before the checkpoint, so the
            # checkpoint's summary is what was reported before it was saved.
            start = 0
            for line_end in _checkpoint_line_ends(data):
                line_start = data.rfind(b"\n", 0, line_end - 1) + 1
                if not self._post_journal(data[start:line_end]):
                    break  # the server is elsewhere in the file: re-read from its offset
                self._upload_checkpoint(json.loads(data[line_start:line_end]))
                start = line_end
            else:
                self._post_journal(data[start:])

    def _post_journal(self, data: bytes) -> bool:
        """Send data, which starts at journal_offset; False if the server's offset is now not
        where data ends (it had more, or less), so the rest of the chunk must not be sent as is."""
        if not data or self.gone:
            return not self.gone
        expected = self.journal_offset + len(data)
        resp = self._post(f"/journal?offset={self.journal_offset}", content=data)
        if resp is None:
            return False
        if resp.status_code == 409:  # the server knows a different offset; resume from its
            self.journal_offset = max(self.journal_base, resp.json().get("offset", self.journal_offset))
            return False
        self.journal_offset = resp.json()["offset"]
        return self.journal_offset == expected

    def _upload_checkpoint(self, line: dict) -> None:
        folder = self.spool / line["dir"]
        if not folder.is_dir():
            return  # uploaded before a restart of this supervisor
        from urllib.parse import quote

        from nsml.core.errors import NsmlError
        from nsml.store.archive import walk_folder

        # Names are free text ('best model #2?'); only '/' is refused, by the library.
        path = f"/checkpoints/{quote(line['name'], safe='')}"
        try:
            resp = self._post(path, tar=walk_folder(folder), params={"walltime": line["w"]})
        except NsmlError as exc:  # the save function's files changed after it returned
            _note(self.log, f"[nsml] checkpoint '{line['name']}' could not be uploaded: {exc}")
            return
        if resp is not None and resp.status_code < 300:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
        elif resp is not None:
            _note(self.log, f"[nsml] checkpoint '{line['name']}' was refused: {resp.text}")

    def ship_outputs(self) -> None:
        # Sent even when empty: a stored (possibly empty) outputs set tells the server that the
        # run directory holds nothing it still needs.
        changed = written_files(Path(self.spec["workdir"]), self.spec.get("code_files", {}))
        if not self.gone:
            from nsml.core.errors import NsmlError
            from nsml.store.archive import Member

            try:
                members = [Member(rel, p, p.stat().st_size) for rel, p in changed]
                self._post("/outputs", tar=members)
            except (NsmlError, OSError) as exc:  # a file that changed under us: say so, keep the rest going
                _note(self.log, f"[nsml] the session's output files could not be uploaded: {exc}")

    def ship_prediction(self) -> None:
        """A submit's predictions, for the evaluator on the server's side."""
        path = self.spool / "prediction.txt"
        if path.is_file() and not self.gone:
            from nsml.store.archive import Member

            self._post("/prediction", tar=[Member("prediction.txt", path, path.stat().st_size)])

    def report_exit(self, exit_code: int, stopped: bool, relaunch: dict | None = None, reason: str = "") -> None:
        self._post("/exit", json={"exit_code": exit_code, "stopped": stopped, "relaunch": relaunch, "reason": reason})


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _checkpoint_line_ends(data: bytes):
    """Byte offsets just past each checkpoint line in a chunk of complete journal lines."""
    pos = 0
    for line in data.split(b"\n")[:-1]:
        pos += len(line) + 1
        if b'"c"' in line:  # cheap test first: metric lines are the vast majority
            try:
                if json.loads(line).get("k") == "c":
                    yield pos
            except ValueError:
                continue


def written_files(workdir: Path, code_files: dict[str, int]) -> list[tuple[str, Path]]:
    """Files the session wrote: new ones, or code files whose size or content changed."""
    import hashlib

    out = []
    for path in sorted(workdir.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        rel = path.relative_to(workdir).as_posix()
        if "__pycache__" in rel.split("/"):
            continue
        known = code_files.get(rel)
        if known is not None:
            with open(path, "rb") as f:
                if hashlib.file_digest(f, "sha256").hexdigest() == known:
                    continue
        out.append((rel, path))
    return out


def _note(log: Path, text: str) -> None:
    """A line of the platform's in the session's log."""
    with open(log, "ab") as f:
        f.write(text.encode() + b"\n")


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    stop_requested = {"at": None}

    def on_term(_sig, _frame):
        stop_requested["at"] = stop_requested["at"] or time.monotonic()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    gateway = None
    if spec.get("sandbox"):  # the sandboxed library asks its supervisor for what it needs
        from nsml.scheduler.gateway import Gateway

        gateway = Gateway(spec)
        gateway.bind()
    proc = start_user_process(spec)
    Path(spec.get("user_pid") or Path(spec["spool"], "user.pid")).write_text(str(proc.pid))
    shipper = Shipper(spec)
    if gateway is not None:
        gateway.shipper = shipper
        gateway.start()
    from nsml.scheduler.channel import Channel

    channel = Channel(spec, shipper, preexec=user_preexec(spec))  # nsml exec and nsml sh
    channel.start()
    signalled = killed = False
    deadline = time.monotonic() + spec["paused_timeout"] if spec.get("paused_timeout") else None
    timed_out = False
    while True:
        code = proc.poll()
        if deadline and code is None and time.monotonic() > deadline:
            deadline = None
            if read_stage(spec) is None:  # the script never reached nsml.paused()
                timed_out = True
                _note(shipper.log, f"[nsml] main.py did not call nsml.paused() within {spec['paused_timeout']:.0f} s; "
                      "the session was ended.")
                stop_requested["at"] = time.monotonic() - GRACE_SECONDS  # no grace: it is not saving anything
        if stop_requested["at"] is not None and code is None:
            if not signalled:
                proc.signal(signal.SIGTERM)
                signalled = True
            elif not killed and time.monotonic() - stop_requested["at"] > GRACE_SECONDS:
                proc.kill()
                killed = True
        shipper.ship_log()
        shipper.ship_journal()
        if shipper.gone:  # the session was removed on the server: nothing left to serve
            channel.close()
            proc.kill()
            proc.close()
            return 0
        if code is not None:
            break
        time.sleep(POLL_SECONDS)
    channel.close()
    proc.kill()  # children the entry file left behind
    reason = "Out of memory" if proc.out_of_memory() else ""
    proc.close()
    if spec.get("sandbox") and 128 < code < 160:
        code = 128 - code  # bubblewrap reports a signal as 128 + N, as a shell does
    shipper.ship_log()
    shipper.ship_journal()
    shipper.ship_outputs()
    relaunch = None
    if spec.get("kind", "normal") != "normal":
        relaunch = read_stage(spec) or {"stage": "", "error": ""}
        relaunch["timed_out"] = timed_out
        if spec["kind"] in ("submit", "submit_test"):
            shipper.ship_prediction()
    shipper.ship_log()
    if reason:
        _note(shipper.log, f"[nsml] the session ran out of memory (its limit: {spec['limits']['memory_bytes']} bytes) and was killed.")
        shipper.ship_log()
    shipper.report_exit(code, stopped=stop_requested["at"] is not None and not timed_out, relaunch=relaunch, reason=reason)
    return 0


def read_stage(spec: dict) -> dict | None:
    """How far a relaunched script got (nsml.client.protocol writes it); None before paused()."""
    try:
        return json.loads((Path(spec["spool"]) / "relaunch.json").read_text())
    except (OSError, ValueError):
        return None


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
