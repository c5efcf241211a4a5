"""Endpoints the session supervisor calls: logs, metrics journal, checkpoints, outputs, exit.

Logs and the journal are sent by byte offset and are idempotent: a supervisor that lost an
answer (server restart, timeout) sends the same bytes again and nothing is stored twice. A
journal line too long to ship (over spool.MAX_LINE) is skipped by the supervisor without being
read: `POST …/journal?offset=N&skip=L` moves the server's offset from N past it, as idempotently.

Bodies held in memory (log and journal chunks) are bounded by MAX_BODY (413 beyond it); tar
uploads are streamed to disk and never held. A full disk answers 507, which the supervisor
retries for a while and then ends the session with "disk full".
"""

import shutil
import signal
import threading
import time

from collections import OrderedDict

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from nsml.core.entities import Session
from nsml.core.errors import Conflict, InvalidInput, NotFound, StorageFull
from nsml.core.states import SUBMIT_KINDS, SessionKind, Status, final_status
from nsml.scheduler.usage import end_samples
from nsml.store.sql.metrics import JournalPost

from .. import pausing, relaunch
from ..auth import supervisor_of
from ..bounds import MAX_OFFSET, SessionNumber
from ..schemas import CheckpointPublic, ExitReport, JournalOffset, Offset, SessionPublic
from ..state import state
from ..uploads import forget, receive_tar
from .sessions import SESSION, tail_lines, session_of

router = APIRouter(prefix="/api/sessions", tags=["session runtime"])
ERROR_LINES = 3
MAX_BODY = 16 << 20  # a log or journal chunk (the supervisor sends at most 8 MiB)


async def bounded_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed `limit`."""
    too_large = HTTPException(413, f"The body is over {limit} bytes, the most this call takes; send it in smaller pieces.")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(SESSION + "/heartbeat", status_code=204)
def heartbeat(owner: str, dataset: str, number: SessionNumber, request: Request, session: Session = Depends(supervisor_of)) -> Response:
    """The supervisor reports in (every few seconds): the scheduler's liveness. A running
    session silent past the server's heartbeat timeout is marked lost."""
    try:
        state(request).store.record_heartbeat(session.id, time.time())
    except StorageFull:
        pass  # a full disk must not make live sessions look lost; the next beat tries again
    return Response(status_code=204)


@router.get(SESSION + "/files/{sha}")
def fetch_file(owner: str, dataset: str, number: SessionNumber, request: Request, sha: str = Path(pattern="^[0-9a-f]{64}$"),
               session: Session = Depends(supervisor_of)) -> StreamingResponse:
    """A file a cluster node needs to start the session (nsml.scheduler.ray_host), by content
    hash: one of its code, of the outputs its earlier attempts wrote, or of its dataset's view
    for its kind (training: no test/; a submit: test/ without its labels). Nothing else is
    served, whatever the hash: a dataset's hidden labels never leave the server for a node
    where user code runs."""
    st = state(request)
    if sha not in session_shas(st, session):
        raise NotFound(f"Session {session.name} has no file {sha[:12]}…")
    return StreamingResponse(st.blobs.read_chunks(sha), media_type="application/octet-stream")


def session_shas(st, session: Session) -> set[str]:
    from nsml.scheduler.local import visible_in_view

    shas: set[str] = set()
    if session.code_fileset_id is not None:
        shas |= _fileset_shas(st, session.code_fileset_id, "all")
    if session.resumed_from and session.outputs_fileset_id is not None:
        shas |= _fileset_shas(st, session.outputs_fileset_id, "all")
    if session.has_dataset:
        try:
            fileset = st.store.get_dataset(session.dataset).fileset_id
        except NotFound:
            return shas
        view = "submit" if session.kind in SUBMIT_KINDS else "train"
        shas |= _fileset_shas(st, fileset, view, lambda path: visible_in_view(path, view == "submit"))
    return shas


# A fileset never changes once made: what a view of it holds is worked out once, not per file
# fetched (a dataset of 10,000 files would otherwise be read 10,000 times to start one session).
_FILESETS: OrderedDict = OrderedDict()
_FILESETS_KEPT = 64
_filesets_lock = threading.Lock()


def _fileset_shas(st, fileset_id: int, view: str, keep=lambda _path: True) -> frozenset[str]:
    key = (id(st.store), fileset_id, view)
    with _filesets_lock:
        found = _FILESETS.get(key)
    if found is None:
        found = frozenset(f.sha256 for f in st.store.files(fileset_id) if keep(f.path))
        with _filesets_lock:
            _FILESETS[key] = found
            while len(_FILESETS) > _FILESETS_KEPT:
                _FILESETS.popitem(last=False)
    return found


@router.post(SESSION + "/journal", response_model=JournalOffset)
async def ingest_journal(owner: str, dataset: str, number: SessionNumber, request: Request, offset: int = Query(ge=0, le=MAX_OFFSET),
                         skip: int = Query(0, ge=0, le=MAX_OFFSET), _session: Session = Depends(supervisor_of)):
    """Journal bytes from `offset`; or, with `skip`, no body: move past `skip` bytes at `offset`.
    `notes`: what the ingest refused (a NaN, an over-long key...), for the session's log. A
    journal post is also its supervisor's heartbeat (Shipper.start_heartbeat skips its own
    while the journal flows)."""
    st = state(request)
    session = _session  # supervisor_of checked it is the one named
    data = await bounded_body(request)
    notes: list[tuple[str, str]] = []
    try:
        if skip:
            if data:
                raise InvalidInput("A journal skip carries no body.")
            new = await run_in_threadpool(st.store.skip_journal, session.id, offset, skip)
        else:
            new = await st.journal.ingest(JournalPost(session.id, offset, data, notes, heartbeat=time.time()))
    except Conflict:
        return JSONResponse({"detail": "journal offset mismatch", "offset": st.store.session_by_id(session.id).journal_offset}, status_code=409)
    return JournalOffset(offset=new, notes=[{"about": about, "text": text} for about, text in notes])


@router.post(SESSION + "/logs", response_model=Offset)
async def ingest_logs(owner: str, dataset: str, number: SessionNumber, request: Request, offset: int = Query(ge=0, le=MAX_OFFSET), _session: Session = Depends(supervisor_of)) -> Offset:
    st = state(request)
    session = session_of(st, owner, dataset, number)
    data = await bounded_body(request)
    return Offset(offset=await run_in_threadpool(append_log, st, session.id, offset, data))


def append_log(st, session_id: int, offset: int, data: bytes) -> int:
    """Append the part of data the server does not have yet; the log file's size is the offset
    (a write cut short by a full disk leaves a shorter log, which the next retry continues)."""
    from nsml.store.blobs import is_disk_full

    path = st.logs_dir / f"{session_id}.log"
    with st.log_lock:
        have = path.stat().st_size if path.exists() else 0
        if offset > have:
            return have  # a gap: the supervisor resends from what we have
        new = data[have - offset:]
        if new:
            try:
                with open(path, "ab") as f:
                    f.write(new)
            except OSError as exc:
                if is_disk_full(exc):
                    raise StorageFull(f"The server's disk ({st.logs_dir}) is full: the session's log could not be "
                                      "stored. Free some space.") from exc
                raise
        return have + len(new)


@router.post(SESSION + "/checkpoints/{name}", response_model=CheckpointPublic, status_code=201)
async def upload_checkpoint(owner: str, dataset: str, number: SessionNumber, name: str, request: Request, walltime: float = Query(allow_inf_nan=False), _session: Session = Depends(supervisor_of)) -> CheckpointPublic:
    st = state(request)
    session = session_of(st, owner, dataset, number)
    old_shas = st.store.fileset_shas(*(c.fileset_id for c in st.store.list_checkpoints(session.id) if c.name == name))
    files, created = await receive_tar(request, st.blobs, f"checkpoint '{name}'")
    try:
        ckpt = st.store.put_checkpoint(session.id, name, walltime, files)
    except BaseException:
        forget(st.blobs, created)
        raise
    st.blobs.delete_unused(old_shas)
    st.scheduler.wake()  # an AutoML trial's save: its study compares it now, not up to a second later
    return CheckpointPublic.of(ckpt)


@router.post(SESSION + "/outputs", response_model=SessionPublic)
async def upload_outputs(owner: str, dataset: str, number: SessionNumber, request: Request, _session: Session = Depends(supervisor_of)) -> SessionPublic:
    st = state(request)
    session = session_of(st, owner, dataset, number)
    old_shas = st.store.fileset_shas(session.outputs_fileset_id)
    files, created = await receive_tar(request, st.blobs, "the session's output files")
    try:
        session = st.store.put_outputs(session.id, files)
    except BaseException:
        forget(st.blobs, created)
        raise
    st.blobs.delete_unused(old_shas)
    return SessionPublic.of(session)


@router.post(SESSION + "/prediction", response_model=Offset)
async def upload_prediction(owner: str, dataset: str, number: SessionNumber, request: Request, _session: Session = Depends(supervisor_of)) -> Offset:
    """A submit session's predictions (a tar holding prediction.txt), kept for the evaluator."""
    st = state(request)
    session = session_of(st, owner, dataset, number)
    if session.kind not in SUBMIT_KINDS:
        raise InvalidInput(f"Session {session.name} is not a submit session.")
    files, created = await receive_tar(request, st.blobs, "the predictions")
    try:
        found = [f for f in files if f.path == "prediction.txt"]
        if not found:
            raise InvalidInput("The upload holds no prediction.txt.")
        target = relaunch.prediction_path(st, session)
        await run_in_threadpool(shutil.copyfile, st.blobs.path(found[0].sha256), target)
    finally:
        forget(st.blobs, created)  # kept as a plain file, not a blob
    return Offset(offset=found[0].size)


MAX_EXIT_BODY = 2 << 20  # the exit report carries relaunch.json (at most spool.MAX_LINE) and a little more


def _inlined(schema: dict) -> dict:
    """A model's JSON schema with its $defs put in place: a request body given by hand in the
    OpenAPI document cannot point into $defs of its own."""
    defs = schema.pop("$defs", {})

    def walk(node):
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(defs[ref.rsplit("/", 1)[1]])
            return {k: walk(v) for k, v in node.items()}
        return [walk(v) for v in node] if isinstance(node, list) else node
    return walk(schema)


@router.post(SESSION + "/exit", response_model=SessionPublic, openapi_extra={
    "requestBody": {"required": True, "content": {"application/json": {"schema": _inlined(ExitReport.model_json_schema())}}}})
async def report_exit(owner: str, dataset: str, number: SessionNumber, request: Request, _session: Session = Depends(supervisor_of)) -> SessionPublic:
    """`ExitReport` as the body, read (bounded) only once the caller is known to be the session's
    supervisor: a declared body would be read whole before any check."""
    from pydantic import ValidationError

    raw = await bounded_body(request, MAX_EXIT_BODY)
    try:
        body = ExitReport.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(f"The exit report is not valid: {'.'.join(map(str, first['loc'])) or 'body'}: {first['msg']}.") from None
    return await run_in_threadpool(_record_exit, state(request), owner, dataset, number, body)


def _record_exit(st, owner: str, dataset: str, number: SessionNumber, body: ExitReport) -> SessionPublic:
    session = session_of(st, owner, dataset, number)
    status = final_status(body.exit_code, body.stopped or session.status == Status.STOPPED)
    if body.reason and status != Status.STOPPED:  # the supervisor ended it (disk full, out of memory)
        status = Status.FAILED
    error = ""
    if status == Status.FAILED:
        # One line, for `ps` and the end of `logs`: a traceback's last line names the error.
        path = st.logs_dir / f"{session.id}.log"
        lines = [ln.strip() for ln in tail_lines(path, ERROR_LINES).splitlines() if ln.strip()] if path.exists() else []
        error = _exit_text(body.exit_code) + (f": {lines[-1][:300]}" if lines else "")
        if body.reason:  # the supervisor knows better than the last log line (an OOM kill leaves none)
            error = f"{body.reason} ({_exit_text(body.exit_code)})"
    # A session that paused at its checkpoint (nsml pause, preemption) ends paused instead.
    moved = pausing.end_if_paused(st, session, body.exit_code) \
        or st.store.move_session(session.id, status, exit_code=body.exit_code, ended=time.time(), error=error)
    if moved is None and session.status == Status.STOPPED:  # stop was recorded first; keep the code
        moved = st.store.record_exit_code(session.id, body.exit_code, session.ended or time.time())
    st.scheduler.wake()
    final = moved or st.store.session_by_id(session.id)
    _record_end_usage(st, final, body)
    if session.kind != SessionKind.NORMAL and moved is not None:
        relaunch.on_exit(st, final, body.exit_code, body.stopped, body.relaunch)
        final = st.store.session_by_id(session.id)
    if final.outputs_fileset_id is not None:
        st.executor.release_workdir(final)
    final = pausing.settle(st, final)  # a preempted session is queued again from its checkpoint
    return SessionPublic.of(final)


def _record_end_usage(st, session: Session, body: ExitReport) -> None:
    """The run's start reading and end summary from the supervisor (nsml.scheduler.usage:
    the process is gone by now, so only its supervisor knows them), dated at the session's
    end: a second try of the report that got past the credentials check while the first was
    being recorded finds the summary there and adds nothing."""
    if body.usage is None or session.ended is None:
        return
    if any(u.final and u.at == session.ended for u in st.store.usage(session.id, session.ended - 1.0)):
        return
    now = time.time()
    for sample in end_samples(body.usage.model_dump(), session.started or session.ended, session.ended, now):
        try:
            st.store.add_usage(session.id, sample.at, sample.cpu, sample.memory, sample.gpus, final=sample.final)
        except StorageFull:
            return  # the exit itself is recorded; its usage is not worth failing it for


def _exit_text(code: int) -> str:
    """'exit code 3', or for a process ended by a signal (negative code) 'killed by SIGKILL'."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
