"""Sessions as users see them: run, list, inspect, stop, remove, logs, code, outputs, checkpoints."""

import re
import shlex
import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import TypeAdapter

from nsml.core import naming
from nsml.core import query as runs_query
from nsml.core.entities import Session
from nsml.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from nsml.core.policy import DEFAULT_VISIBILITY, Action, Actor, can, check_visibility, session_scope
from nsml.core.resources import format_size, parse_size
from nsml.core.states import ACTIVE, FINAL, SessionKind, Status
from nsml.scheduler import admission
from nsml.scheduler.environments import read_first_line_image

from .. import pausing, scheduling
from ..access import controlled_session, dataset_for, readable_session, session_for, session_read_by_caller
from ..auth import current_actor
from ..bounds import (MAX_INT, MAX_ITEMS, MAX_LOG_CHUNK, MAX_OFFSET, MAX_TAIL, Args, Count, Cpus, Gpus, Memo, Name,
                      OptName, OptText, Seconds, SessionNumber, Size)
from ..schemas import (TAR_BODY, CheckpointPublic, LogChunk, MemoUpdate, Note, NoteUpdate, Removed, SessionPublic, Tags,
                       TagUpdate)
from ..state import ServerState, state
from ..uploads import forget, receive_tar
from .datasets import tar_response

router = APIRouter(prefix="/api/sessions", tags=["sessions"])
SESSION = "/{owner}/{dataset}/{number}"
DEFAULT_SHM = 1 << 30  # NSML's --shm-size default, 1G


def session_of(st: ServerState, owner: str, dataset: str, number: SessionNumber):
    return st.store.get_session(naming.session_name(owner, dataset, number))


@router.post("", response_model=SessionPublic, status_code=201, openapi_extra=TAR_BODY)
async def run_session(
    request: Request, dataset: Name = "", entry: Name = "main.py", args: Args = "", gpus: Gpus = None,
    cpus: Cpus = None, memory: Size = None, memo: Memo = "", shm_size: Size = None,
    team: Name = "", visibility: Name = DEFAULT_VISIBILITY, priority: Name = "normal", time_limit: Seconds = None,
    gpu_model: Annotated[str, Query(max_length=64)] = "", preemptible: bool = False, actor: Actor = Depends(current_actor),
) -> SessionPublic:
    """Body: an uncompressed tar of the code folder. Starts when resources allow (status queued first).

    Without `dataset` the session has none (HAS_DATASET false) and is named
    OWNER/.nodata/N (naming.NO_DATASET). `shm_size`: shared memory for /dev/shm (default 1G,
    at most the session's memory). `team`: the team it belongs to (default: the caller's default
    team), whose members may read it while `visibility` is team; private: its owner (and admins)
    only; public: every user. `priority`: low, normal or high (admins); `time_limit`: seconds
    after which the platform stops it; `gpu_model`: only GPUs whose model contains this;
    `preemptible`: it may fill idle GPUs and be paused (checkpointed) and requeued when a regular
    session needs them (docs/scheduler.md)."""
    st = state(request)
    user = actor.name
    dataset = dataset.strip() or naming.NO_DATASET
    if dataset != naming.NO_DATASET:
        dataset_for(st, actor, dataset)  # a clear "did you mean" before any byte is uploaded
    check_visibility(visibility)
    team = session_team(st, actor, team.strip())
    request_res = admission.run_defaults(st.nodes, cpus, parse_size(memory) if memory else None, gpus)
    gpu_model = gpu_model.strip()
    admission.admit(request_res, st.nodes, gpu_model)
    rank = admission.priority_of(priority, actor.admin)
    limit = admission.time_limit_of(time_limit)
    shm = shm_bytes(shm_size, request_res.memory)
    entry = entry.strip()
    check_args(args)
    files, created = await receive_tar(request, st.blobs, "the code")
    try:
        paths = {f.path for f in files}
        if entry not in paths:
            py = sorted(p for p in paths if p.endswith(".py") and "/" not in p)
            hint = f" Python files there: {', '.join(py[:8])}." if py else " The folder has no .py file."
            raise InvalidInput(f"Entry file '{entry}' is not in the uploaded folder; choose one with -e.{hint}")
        if not entry.endswith(".py"):
            raise InvalidInput(f"Entry file '{entry}' is not a Python file; NSML runs Python entry files only.")
        image = read_first_line_image({f.path: st.blobs.path(f.sha256) for f in files})
        session = st.store.create_session(user, dataset, entry, args, request_res, memo, image, files, shm_size=shm,
                                          team=team, visibility=visibility, priority=rank, time_limit=limit,
                                          gpu_model=gpu_model, preemptible=preemptible)
    except BaseException:
        forget(st.blobs, created)
        raise
    st.scheduler.wake()
    return SessionPublic.of(session)


def session_team(st: ServerState, actor: Actor, team: str) -> str:
    """The team a new session of `actor` belongs to: `team`, which they must be in, or their default."""
    if not team:
        return st.store.get_user(actor.name).default_team
    if team not in actor.teams and not actor.admin:
        mine = ", ".join(sorted(actor.teams)) or "none"
        raise Forbidden(f"You are not a member of team '{team}' (your teams: {mine}).")
    st.store.get_team(team)
    return team


def shm_bytes(shm_size: str | None, memory: int) -> int:
    """--shm-size in bytes, checked like --memory: a size, more than 0, within the memory."""
    if not shm_size:
        return min(DEFAULT_SHM, memory)
    shm = parse_size(shm_size)
    if shm <= 0:
        raise InvalidInput(f"--shm-size {shm_size} is not more than 0; write it like 512M or 1G.")
    if shm > memory:
        raise InvalidInput(f"--shm-size {shm_size} is more than the session's memory ({format_size(memory)}); "
                           f"lower --shm-size or raise --memory.")
    return shm


def check_args(args: str) -> None:
    try:
        shlex.split(args)
    except ValueError as exc:
        raise InvalidInput(f"The arguments {args!r} cannot be split like a shell would ({exc}); check the quotes in -a.") from exc


TOTAL_HEADER = "X-Total-Count"
_SESSION_LIST = TypeAdapter(list[SessionPublic])


@router.get("", response_model=list[SessionPublic], responses={200: {"headers": {TOTAL_HEADER: {
    "description": "How many sessions the listing has (at most `last`), whatever the page.", "schema": {"type": "integer"}}}}})
def list_sessions(
    request: Request, all: bool = False, last: Count = None, dataset: OptName = None,
    pattern: OptText = None, limit: Count = None, offset: Count = None,
    query: Annotated[str | None, Query(max_length=runs_query.MAX_QUERY, description="A runs query (docs/web.md, Queries).")] = None,
    actor: Actor = Depends(current_actor),
) -> Response:
    """The sessions the caller may read (nsml.core.policy), newest first: running and queued
    ones, or every one with all=true; `dataset`, the glob `pattern` and a runs `query`
    (`lr < 0.01 and tag:baseline`; 400 pointing at the bad token) narrow them, and `last`
    keeps the N newest (NSML's `ps -n`).

    Paging: `offset` skips that many of the newest, `limit` returns at most that many after
    them (limit=0: none, only the count). Without `limit` every one is returned, as before
    paging. The body is a plain list either way; the header X-Total-Count says how many the
    listing has in all, so a client knows what lies beyond its page."""
    st = state(request)
    statuses = None if all else set(ACTIVE)
    tree = runs_query.parse(query) if query else None
    total, page = session_page(st, statuses, dataset, pattern, session_scope(actor), last or None, offset or 0, limit,
                               tree)
    # One pydantic-core pass straight to JSON bytes: FastAPI's own path (validate the models
    # again, dump them to dicts, json.dumps) adds ~0.3 s to a listing of 10,000 sessions.
    return Response(_SESSION_LIST.dump_json(scheduling.public(st, page)), media_type="application/json",
                    headers={TOTAL_HEADER: str(total)})


def session_page(st: ServerState, statuses, dataset: str | None, pattern: str | None, scope, last: int | None,
                 offset: int, limit: int | None, tree=None) -> tuple[int, list[Session]]:
    """(how many the listing has, capped at `last`; the page of it from `offset`, at most `limit`)."""
    if pattern:  # a glob the database cannot match: narrow by its longest literal piece, then match
        _, found = st.store.search_sessions(q=literal_part(pattern), dataset=dataset, statuses=statuses,
                                            limit=MAX_INT, scope=scope, where_tree=tree)
        found = [s for s in found if naming.matches(pattern, s.name)][:last]
        return len(found), found[offset:None if limit is None else offset + limit]
    stop = min(x for x in (last, None if limit is None else offset + limit, MAX_INT) if x is not None)
    total, page = st.store.search_sessions(dataset=dataset, statuses=statuses, offset=offset,
                                           limit=max(0, stop - offset), scope=scope, where_tree=tree)
    return min(total, last or total), page


_GLOB_SPECIALS = re.compile(r"\*|\?|\[!?\]?[^\]]*\]?")  # fnmatch's: [!]x] is one class


def literal_part(pattern: str) -> str:
    """The longest run of `pattern` without glob specials ('alice/mnist/' of 'alice/mnist/*'): a
    name the glob matches holds it (search_sessions matches it case-insensitively, in the memo
    and args too: more, never fewer)."""
    return max(_GLOB_SPECIALS.split(pattern), key=len)


@router.delete("", response_model=Removed)
def remove_sessions(
    request: Request, pattern: list[str] = Query(default=[], max_length=MAX_ITEMS), force: bool = False, skip: bool = False,
    actor: Actor = Depends(current_actor),
) -> Removed:
    """Remove sessions matching glob patterns; running ones only with force=true (they are killed).

    skip=true (NSML's `rm -s`, "skip the deletion from storage"): the sessions leave every listing
    (ps, the dashboard, globs) but their code, outputs, logs and checkpoints stay stored, so
    `model pull`, `nsml.load(session=...)`, `fork` and `submit` still work by name; removing one
    again by name without skip deletes it for good."""
    st = state(request)
    if not pattern:
        raise InvalidInput("Name the sessions to remove, e.g. alice/digits/3 or 'alice/digits/*'.")
    targets = {}
    for pat in pattern:  # a plain name goes through the policy; a glob matches what the caller controls
        if naming.is_pattern(pat):
            matched = [s for s in st.store.match_sessions(pat, session_scope(actor)) if can(actor, Action.CONTROL, s)]
        else:
            matched = [session_for(st, actor, pat, Action.CONTROL)]
        if not matched:
            raise NotFound(f"No session matches '{pat}'.")
        targets.update({s.id: s for s in matched})
    running = [s.name for s in targets.values() if s.status in ACTIVE]
    if running and not force:
        raise Conflict(f"{', '.join(sorted(running))} {'is' if len(running) == 1 else 'are'} still running; stop it first or use rm -f.")
    for s in targets.values():
        if skip:
            _hide(st, s)
        else:
            _remove(st, s)
        st.audit(actor.name, "rm", s.name, ("skip " if skip else "") + ("force" if force else ""))
    return Removed(removed=sorted(s.name for s in targets.values()))


def _hide(st: ServerState, session) -> None:
    if session.status in ACTIVE:  # rm -s -f: the session ends now, its files stay
        st.store.move_session(session.id, Status.STOPPED, ended=time.time())
        st.executor.kill(session)
    st.store.hide_session(session.id, time.time())


def _remove(st: ServerState, session) -> None:
    if session.kind == SessionKind.AUTOML:  # a study goes with its trials (nsml automl rm)
        from ..automl.service import trial_sessions

        for child in trial_sessions(st, session):
            _remove(st, child)
    if session.status in ACTIVE:  # rm -f: no grace period, the session and its files go now
        st.store.move_session(session.id, Status.STOPPED, ended=time.time())
        st.executor.kill(session)
    checkpoints = [c.fileset_id for c in st.store.list_checkpoints(session.id)]
    shas = st.store.fileset_shas(session.code_fileset_id, session.outputs_fileset_id, *checkpoints)
    st.store.delete_session(session.id)
    st.executor.remove(session)
    (st.logs_dir / f"{session.id}.log").unlink(missing_ok=True)
    (Path(st.settings.home) / "predictions" / f"{session.id}.txt").unlink(missing_ok=True)  # a submit's
    st.blobs.delete_unused(shas)


@router.get(SESSION, response_model=SessionPublic)
def get_session(owner: str, dataset: str, number: SessionNumber, request: Request,
                session: Session = Depends(readable_session)) -> SessionPublic:
    return scheduling.public(state(request), [session])[0]


@router.post(SESSION + "/stop", response_model=SessionPublic)
def stop_session(owner: str, dataset: str, number: SessionNumber, request: Request, session: Session = Depends(controlled_session),
                 actor: Actor = Depends(current_actor)) -> SessionPublic:
    st = state(request)
    if session.status in FINAL:
        raise Conflict(f"Session {session.name} has already {session.status.value}.")
    if session.pause_requested:  # a stop outranks a pause (or preemption) under way: it is not queued again
        st.store.clear_pause_request(session.id, f"stopped by {actor.name} while it was being paused")
    if session.status == Status.QUEUED or not st.executor.stop(session):
        st.store.move_session(session.id, Status.STOPPED, ended=time.time())
        st.scheduler.wake()
    st.audit(actor.name, "stop", session.name)
    return SessionPublic.of(st.store.session_by_id(session.id))


@router.post(SESSION + "/pause", response_model=SessionPublic)
def pause_session(owner: str, dataset: str, number: SessionNumber, request: Request, requeue: bool = False,
                  session: Session = Depends(controlled_session), actor: Actor = Depends(current_actor)) -> SessionPublic:
    """Checkpoint a running session through its script's bound save and set it aside with its
    resources released (`nsml pause`; docs/scheduler.md, Stop-and-go). Answers at once with
    `pause_requested` set; the session ends `paused` (`pause_checkpoint` naming the checkpoint)
    once saved, or goes on running with `pause_error` if the save failed. A queued session is
    paused at once. `nsml resume` continues it. `requeue=true`: what a preemption does, queued
    again from that checkpoint as soon as it has paused.

    409 for a session whose script has not bound a save (or handles SIGUSR1 itself), and for
    one that has ended."""
    st = state(request)
    reason = f"preempted by {actor.name} (pause --requeue)" if requeue else f"pause requested by {actor.name}"
    paused = pausing.request_pause(st, session, reason=reason, requeue=requeue)
    st.audit(actor.name, "pause", session.name, "requeue" if requeue else "")
    return SessionPublic.of(paused)


@router.patch(SESSION + "/memo", response_model=SessionPublic)
def set_memo(owner: str, dataset: str, number: SessionNumber, body: MemoUpdate, request: Request, session: Session = Depends(controlled_session)) -> SessionPublic:
    st = state(request)
    return SessionPublic.of(st.store.set_memo(session.id, body.memo))


@router.post(SESSION + "/tags", response_model=Tags)
def change_tags(owner: str, dataset: str, number: SessionNumber, body: TagUpdate, request: Request,
                session: Session = Depends(controlled_session)) -> Tags:
    """Add and remove the session's tags (`nsml tag S +x -y`): whoever may control it."""
    return Tags(tags=state(request).store.tag_session(session.id, add=body.add, remove=body.remove))


@router.get(SESSION + "/tags", response_model=Tags)
def read_tags(owner: str, dataset: str, number: SessionNumber, request: Request,
              session: Session = Depends(readable_session)) -> Tags:
    return Tags(tags=state(request).store.session_tags([session.id])[session.id])


@router.put(SESSION + "/note", response_model=Note)
def set_note(owner: str, dataset: str, number: SessionNumber, body: NoteUpdate, request: Request,
             session: Session = Depends(controlled_session)) -> Note:
    """Replace the session's markdown note, the longer companion of its one-line memo."""
    state(request).store.set_note(session.id, body.note)
    return Note(note=body.note)


@router.get(SESSION + "/note", response_model=Note)
def read_note(owner: str, dataset: str, number: SessionNumber, request: Request,
              session: Session = Depends(readable_session)) -> Note:
    return Note(note=state(request).store.session_note(session.id))


@router.get(SESSION + "/logs", response_model=LogChunk)
def read_logs(
    owner: str, dataset: str, number: SessionNumber, request: Request, offset: int = Query(0, le=MAX_OFFSET),
    limit: int = Query(1 << 20, ge=1, le=MAX_LOG_CHUNK), tail: int | None = Query(None, ge=0, le=MAX_TAIL), session: Session = Depends(readable_session),
) -> LogChunk:
    """Log bytes from `offset` (or the last `tail` lines); `done` once the session ended and all was read."""
    st = state(request)
    path = st.logs_dir / f"{session.id}.log"
    size = path.stat().st_size if path.exists() else 0
    if tail is not None:
        text = tail_lines(path, tail) if size else ""
        offset, data = size, text.encode()
    else:
        offset = min(max(offset, 0), size)
        data = b""
        if size > offset:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(limit)
            cut = data.rfind(b"\n") + 1 if len(data) == limit else len(data)  # whole lines only
            data = data[:cut] if cut else data
        offset += len(data)
    done = session.status in FINAL and offset >= size
    return LogChunk(offset=offset, text=data.decode(errors="replace"), status=session.status.value, done=done)


def tail_lines(path, lines: int) -> str:
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 65536))
        data = f.read()
    return b"\n".join(data.splitlines()[-lines:]).decode(errors="replace") + "\n" if lines else ""


@router.get(SESSION + "/code")
def pull_code(owner: str, dataset: str, number: SessionNumber, request: Request, session: Session = Depends(readable_session)) -> StreamingResponse:
    st = state(request)
    return tar_response(st, st.store.files(session.code_fileset_id), "code.tar")


@router.get(SESSION + "/outputs")
def download_outputs(
    owner: str, dataset: str, number: SessionNumber, request: Request, only: OptText = None, session: Session = Depends(readable_session),
) -> StreamingResponse:
    """Files the session wrote in its working directory (collected when it ends; live while it
    runs). `only`: one file or folder, relative or as the absolute path /app/... NSML used."""
    from nsml.store.archive import Member, safe_relpath, stream_tar

    st = state(request)
    if session.outputs_fileset_id is not None:
        members = [Member(f.path, st.blobs.path(f.sha256), f.size) for f in st.store.files(session.outputs_fileset_id)]
    else:  # still running: what it wrote so far, as its executor sees it
        code = {f.path: f.sha256 for f in st.store.files(session.code_fileset_id)} if session.code_fileset_id else {}
        members = [Member(rel, path, size) for rel, path, size in st.executor.live_outputs(session, code)]
    if only:
        wanted = safe_relpath(only.removeprefix("/app/") if only.startswith("/app/") else only.lstrip("/"))
        chosen = [m for m in members if m.arcname == wanted or m.arcname.startswith(wanted + "/")]
        if not chosen:
            names = ", ".join(m.arcname for m in members[:8]) or "none"
            raise NotFound(f"Session {session.name} wrote no file '{only}'. Files it wrote: {names}.")
        members = chosen
    return StreamingResponse(
        stream_tar(members), media_type="application/x-tar",
        headers={"X-NSML-Files": str(len(members)), "X-NSML-Bytes": str(sum(m.size for m in members))},
    )


@router.get(SESSION + "/checkpoints", response_model=list[CheckpointPublic])
def list_checkpoints(owner: str, dataset: str, number: SessionNumber, request: Request, session: Session = Depends(readable_session)) -> list[CheckpointPublic]:
    store = state(request).store
    submitted: dict[str, list] = {}
    for s in store.submissions_of(sessions=[session.name]):
        submitted.setdefault(s.checkpoint, []).append(s)
    return [CheckpointPublic.of(c, submitted.get(c.name, [])) for c in store.list_checkpoints(session.id)]


@router.delete(SESSION + "/checkpoints", response_model=Removed)
def remove_checkpoints(owner: str, dataset: str, number: SessionNumber, request: Request, pattern: Name, session: Session = Depends(controlled_session),
                       actor: Actor = Depends(current_actor)) -> Removed:
    st = state(request)
    if naming.is_pattern(pattern):
        ckpts = st.store.list_checkpoints(session.id)
        targets = [c for c in ckpts if naming.matches(pattern, c.name)]
        if not targets:
            listing = ", ".join(c.name for c in ckpts) or "none yet"
            raise NotFound(f"No checkpoint of {session.name} matches '{pattern}'. Its checkpoints: {listing}.")
    else:
        targets = [st.store.get_checkpoint(session, pattern)]
    shas = st.store.fileset_shas(*(c.fileset_id for c in targets))
    for ckpt in targets:
        st.store.delete_checkpoint(session.id, ckpt.name)
    st.blobs.delete_unused(shas)
    st.audit(actor.name, "checkpoint rm", session.name, ", ".join(c.name for c in targets))
    return Removed(removed=[c.name for c in targets])


@router.get(SESSION + "/checkpoints/{name}/archive")
def pull_checkpoint(owner: str, dataset: str, number: SessionNumber, name: str, request: Request,
                    target: Session = Depends(session_read_by_caller)) -> StreamingResponse:
    """Also for a live session's supervisor (`nsml.load(session=...)`): what its owner may read."""
    st = state(request)
    ckpt = st.store.get_checkpoint(target, name)
    return tar_response(st, st.store.files(ckpt.fileset_id), f"{name}.tar")


