"""Endpoints the session supervisor calls: logs, metrics journal, checkpoints, outputs, exit.

Logs and the journal are sent by byte offset and are idempotent: a supervisor that lost an
answer (server restart, timeout) sends the same bytes again and nothing is stored twice.
"""

import shutil
import signal
import time

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from nsml.core.entities import Session
from nsml.core.errors import Conflict, InvalidInput
from nsml.scheduler.local import SUBMIT_KINDS
from nsml.core.states import Status, final_status

from .. import relaunch
from ..auth import supervisor_of
from ..schemas import CheckpointPublic, ExitReport, Offset, SessionPublic
from ..state import state
from ..uploads import forget, receive_tar
from .sessions import SESSION, tail_lines, session_of

router = APIRouter(prefix="/api/sessions", tags=["session runtime"])
ERROR_LINES = 3


@router.post(SESSION + "/journal", response_model=Offset)
async def ingest_journal(owner: str, dataset: str, number: int, request: Request, offset: int = Query(ge=0), _session: Session = Depends(supervisor_of)):
    st = state(request)
    session = session_of(st, owner, dataset, number)
    data = await request.body()
    try:
        new = await run_in_threadpool(st.store.ingest_journal, session.id, offset, data)
    except Conflict:
        return JSONResponse({"detail": "journal offset mismatch", "offset": st.store.session_by_id(session.id).journal_offset}, status_code=409)
    return Offset(offset=new)


@router.post(SESSION + "/logs", response_model=Offset)
async def ingest_logs(owner: str, dataset: str, number: int, request: Request, offset: int = Query(ge=0), _session: Session = Depends(supervisor_of)) -> Offset:
    st = state(request)
    session = session_of(st, owner, dataset, number)
    data = await request.body()
    return Offset(offset=await run_in_threadpool(append_log, st, session.id, offset, data))


def append_log(st, session_id: int, offset: int, data: bytes) -> int:
    """Append the part of data the server does not have yet; the log file's size is the offset."""
    path = st.logs_dir / f"{session_id}.log"
    with st.log_lock:
        have = path.stat().st_size if path.exists() else 0
        if offset > have:
            return have  # a gap: the supervisor resends from what we have
        new = data[have - offset:]
        if new:
            with open(path, "ab") as f:
                f.write(new)
        return have + len(new)


@router.post(SESSION + "/checkpoints/{name}", response_model=CheckpointPublic, status_code=201)
async def upload_checkpoint(owner: str, dataset: str, number: int, name: str, walltime: float, request: Request, _session: Session = Depends(supervisor_of)) -> CheckpointPublic:
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
    return CheckpointPublic.of(ckpt)


@router.post(SESSION + "/outputs", response_model=SessionPublic)
async def upload_outputs(owner: str, dataset: str, number: int, request: Request, _session: Session = Depends(supervisor_of)) -> SessionPublic:
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
async def upload_prediction(owner: str, dataset: str, number: int, request: Request, _session: Session = Depends(supervisor_of)) -> Offset:
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


@router.post(SESSION + "/exit", response_model=SessionPublic)
def report_exit(owner: str, dataset: str, number: int, body: ExitReport, request: Request, _session: Session = Depends(supervisor_of)) -> SessionPublic:
    st = state(request)
    session = session_of(st, owner, dataset, number)
    status = final_status(body.exit_code, body.stopped or session.status == Status.STOPPED)
    error = ""
    if status == Status.FAILED:
        # One line, for `ps` and the end of `logs`: a traceback's last line names the error.
        path = st.logs_dir / f"{session.id}.log"
        lines = [ln.strip() for ln in tail_lines(path, ERROR_LINES).splitlines() if ln.strip()] if path.exists() else []
        error = _exit_text(body.exit_code) + (f": {lines[-1][:300]}" if lines else "")
        if body.reason:  # the supervisor knows better than the last log line (an OOM kill leaves none)
            error = f"{body.reason} ({_exit_text(body.exit_code)})"
    moved = st.store.move_session(session.id, status, exit_code=body.exit_code, ended=time.time(), error=error)
    if moved is None and session.status == Status.STOPPED:  # stop was recorded first; keep the code
        moved = st.store.update_session(session.id, exit_code=body.exit_code, ended=session.ended or time.time())
    st.scheduler.wake()
    final = moved or st.store.session_by_id(session.id)
    if session.kind != "normal" and moved is not None:
        relaunch.on_exit(st, final, body.exit_code, body.stopped, body.relaunch)
        final = st.store.session_by_id(session.id)
    if final.outputs_fileset_id is not None:
        st.executor.release_workdir(final)
    return SessionPublic.of(final)


def _exit_text(code: int) -> str:
    """'exit code 3', or for a process ended by a signal (negative code) 'killed by SIGKILL'."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
