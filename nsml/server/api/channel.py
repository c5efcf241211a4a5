"""`nsml exec` and `nsml sh`: requests to a running session over the channel its supervisor holds.

The server never connects to a session. Each session's supervisor long-polls
``GET …/channel/next`` (nsml.scheduler.channel); a user's ``POST …/exec`` or ``POST …/sh`` puts a
request (a kind and a JSON payload) in the session's queue here, the supervisor takes it, answers
it, and posts the result to ``POST …/channel/ID/result``, which wakes the waiting caller. The
channel is generic so that infer can move onto it (issue 11).

Pending requests live in this server process, in memory: a few per session (``MAX_PENDING``),
each waiting at most its timeout. A server restart drops them (their callers get an error and
ask again); a deployment with several server processes would need a shared queue instead.
Everything here runs on the event loop (async routes), so the queues need no locks.
"""

import asyncio
import secrets
import time
from collections import deque
from dataclasses import dataclass, field

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from nsml.core.entities import Session
from nsml.core.errors import Conflict, InvalidInput, NotFound
from nsml.core.states import Status

from ..access import controlled_session
from ..auth import supervisor_of
from ..bounds import SessionNumber
from ..state import state
from .sessions import SESSION, session_of

router = APIRouter(prefix="/api/sessions", tags=["exec, sh (the session channel)"])
MAX_PENDING = 8  # requests waiting for one session
MAX_RESULT = 16 << 20  # bytes of one posted result
ANSWER_MARGIN = 10.0  # seconds the caller waits beyond the session's own time limit
CHECK_EVERY = 1.0  # how often a waiting caller checks that the session still runs
POLL_STALE = 60.0  # a supervisor that has not polled for this long is not listening
FORGET_AFTER = 300.0  # an idle queue of a session nobody polls is dropped


# -- the queues -----------------------------------------------------------------------------------
@dataclass(eq=False)
class _Request:
    id: str
    kind: str
    payload: dict
    answer: asyncio.Future


@dataclass(eq=False)
class _Queue:
    waiting: deque = field(default_factory=deque)  # not taken by the supervisor yet
    pending: dict = field(default_factory=dict)  # id -> _Request, until answered or given up
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    polled: float = 0.0  # time.monotonic() of the supervisor's latest poll


class SessionGone(Exception):
    """The session stopped running while a request waited."""


class NoAnswer(Exception):
    def __init__(self, listening: bool):
        self.listening = listening


class ChannelHub:
    """The request queues of every session, keyed by session id."""

    def __init__(self):
        self.queues: dict[int, _Queue] = {}

    def _queue(self, session_id: int) -> _Queue:
        return self.queues.setdefault(session_id, _Queue())

    async def ask(self, session_id: int, kind: str, payload: dict, timeout: float, still_running) -> dict:
        """Queue a request and wait for its result; raises NoAnswer after `timeout` seconds,
        SessionGone when `still_running()` (awaited now and then) says it ended."""
        self._forget_idle()
        queue = self._queue(session_id)
        if len(queue.pending) >= MAX_PENDING:
            raise Conflict(f"{len(queue.pending)} requests are already waiting for this session; try again once they are answered.")
        loop = asyncio.get_running_loop()
        req = _Request(secrets.token_hex(8), kind, payload, loop.create_future())
        queue.pending[req.id] = req
        queue.waiting.append(req)
        queue.arrived.set()
        deadline = loop.time() + timeout
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    raise NoAnswer(listening=time.monotonic() - queue.polled < POLL_STALE)
                try:
                    return await asyncio.wait_for(asyncio.shield(req.answer), min(left, CHECK_EVERY))
                except asyncio.TimeoutError:
                    if not await still_running():
                        raise SessionGone() from None
        finally:
            queue.pending.pop(req.id, None)
            try:
                queue.waiting.remove(req)
            except ValueError:
                pass
            if not req.answer.done():
                req.answer.cancel()

    async def next(self, session_id: int, wait: float) -> _Request | None:
        """The oldest request nobody took yet, waiting up to `wait` s for one (long poll)."""
        queue = self._queue(session_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        try:
            while True:
                queue.polled = time.monotonic()
                while queue.waiting:
                    req = queue.waiting.popleft()
                    if not req.answer.done():
                        return req
                left = deadline - loop.time()
                if left <= 0:
                    return None
                queue.arrived.clear()
                try:
                    await asyncio.wait_for(queue.arrived.wait(), left)
                except asyncio.TimeoutError:
                    return None
        finally:
            queue.polled = time.monotonic()

    def answer(self, session_id: int, request_id: str, result: dict) -> bool:
        """Deliver a result; False when nobody waits for it any more (the caller gave up)."""
        queue = self.queues.get(session_id)
        req = queue.pending.get(request_id) if queue else None
        if req is None or req.answer.done():
            return False
        req.answer.set_result(result)
        return True

    def _forget_idle(self) -> None:
        now = time.monotonic()
        for session_id in [k for k, q in self.queues.items() if not q.pending and now - q.polled > FORGET_AFTER]:
            del self.queues[session_id]


def hub(request: Request) -> ChannelHub:
    """This app's hub, made on first use (on the event loop: no race)."""
    found = getattr(request.app.state, "channels", None)
    if found is None:
        found = request.app.state.channels = ChannelHub()
    return found


# -- who may call ---------------------------------------------------------------------------------
def supervisor_caller(owner: str, dataset: str, number: SessionNumber, request: Request,
                      authorization: str | None = Header(default=None)) -> None:
    """The channel's session end accepts only that session's own scoped credentials."""
    supervisor_of(owner, dataset, number, request, authorization)


def _running(session: Session, command: str) -> Session:
    if session.status == Status.QUEUED:
        raise Conflict(f"Session {session.name} is queued, not running yet; nsml {command} works once it runs (see nsml ps).")
    if session.status != Status.RUNNING:
        raise Conflict(f"Session {session.name} is not running (it {session.status.value}); nsml {command} needs a running session.")
    return session


async def _ask(request: Request, session: Session, command: str, payload: dict, limit: float) -> tuple[Session, dict]:
    """`session` comes through the policy (access.controlled_session): its owner or an admin."""
    st = state(request)
    _running(session, command)

    async def still_running() -> bool:
        try:
            now = await run_in_threadpool(st.store.session_by_id, session.id)
        except NotFound:
            return False
        return now.status == Status.RUNNING and now.attempt == session.attempt

    try:
        result = await hub(request).ask(session.id, command, payload, limit + ANSWER_MARGIN, still_running)
    except SessionGone:
        raise Conflict(f"Session {session.name} ended before it answered.") from None
    except NoAnswer as exc:
        why = "" if exc.listening else (" Its supervisor is not polling the server's channel (it cannot reach the server, "
                                        "or it predates nsml exec: resume or rerun the session).")
        raise Conflict(f"Session {session.name} did not answer within {limit + ANSWER_MARGIN:g} s.{why}") from None
    if result.get("failure"):
        raise Conflict(f"{session.name}: {result['failure']}")
    return session, result


# -- the user's end -------------------------------------------------------------------------------
class ExecRequest(BaseModel):
    code: str = Field(description="An expression (its repr is returned) or statements (what they print is returned).")
    timeout: float = Field(30.0, gt=0, le=600, description="Seconds the code may run in the session.")


class ExecAnswer(BaseModel):
    session: str
    ok: bool  # False: the code raised; `error` holds its traceback
    output: str
    error: str


class ShRequest(BaseModel):
    command: str = Field(description="Run by /bin/sh -c in the session's working directory (/app).")
    timeout: float = Field(60.0, gt=0, le=600, description="Seconds before the command is ended.")


class ShAnswer(BaseModel):
    session: str
    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool


@router.post(SESSION + "/exec", response_model=ExecAnswer)
async def exec_code(owner: str, dataset: str, number: SessionNumber, body: ExecRequest, request: Request,
                    target: Session = Depends(controlled_session)) -> ExecAnswer:
    """Evaluate code in the scope the running session registered with nsml.report(scope=…) or
    nsml.paused(scope=…). Owner only."""
    if not body.code.strip():
        raise InvalidInput("Nothing to evaluate: give an expression, e.g. nsml exec SESSION 'config'.")
    session, result = await _ask(request, target, "exec", {"code": body.code, "timeout": body.timeout}, body.timeout)
    return ExecAnswer(session=session.name, ok=bool(result.get("ok")), output=str(result.get("output", "")), error=str(result.get("error", "")))


@router.post(SESSION + "/sh", response_model=ShAnswer)
async def run_shell(owner: str, dataset: str, number: SessionNumber, body: ShRequest, request: Request,
                    target: Session = Depends(controlled_session)) -> ShAnswer:
    """Run a shell command in the running session's working directory; its output and exit
    code. Owner only."""
    if not body.command.strip():
        raise InvalidInput("Nothing to run: give a command, e.g. nsml sh SESSION ls -la.")
    session, result = await _ask(request, target, "sh", {"command": body.command, "timeout": body.timeout}, body.timeout)
    code = result.get("exit_code")
    return ShAnswer(session=session.name, exit_code=code if isinstance(code, int) else None, stdout=str(result.get("stdout", "")),
                    stderr=str(result.get("stderr", "")), timed_out=bool(result.get("timed_out")))


# -- the supervisor's end -------------------------------------------------------------------------
@router.get(SESSION + "/channel/next", dependencies=[Depends(supervisor_caller)])
async def channel_next(owner: str, dataset: str, number: SessionNumber, request: Request, wait: float = Query(20.0, ge=0, le=60)):
    """The next request for this session, `{"id", "kind", "payload"}`; 204 when none came
    within `wait` seconds (poll again)."""
    st = state(request)
    session = await run_in_threadpool(session_of, st, owner, dataset, number)
    req = await hub(request).next(session.id, wait)
    if req is None:
        return Response(status_code=204)
    return {"id": req.id, "kind": req.kind, "payload": req.payload}


@router.post(SESSION + "/channel/{request_id}/result", dependencies=[Depends(supervisor_caller)])
async def channel_result(owner: str, dataset: str, number: SessionNumber, request_id: str, request: Request) -> dict:
    """The result of request `request_id` (a JSON object); `accepted` is false when its caller
    stopped waiting."""
    import json

    st = state(request)
    session = await run_in_threadpool(session_of, st, owner, dataset, number)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_RESULT:
            raise InvalidInput(f"The result is larger than {MAX_RESULT >> 20} MB.")
    try:
        result = json.loads(body)
    except ValueError:
        raise InvalidInput("The result is not JSON.") from None
    if not isinstance(result, dict):
        raise InvalidInput("The result must be a JSON object.")
    return {"accepted": hub(request).answer(session.id, request_id, result)}
