"""Who is calling: a bearer token (CLI, runtime) or the dashboard's login cookie (browser).

`nsml web` opens URL/login?token=T once; that answer stores T in an HttpOnly, SameSite=Strict
cookie, so page scripts never see the token and other sites cannot make the browser use it
(which is what keeps the dashboard's stop/remove/memo calls safe without a CSRF token).
"""

import time

from fastapi import Depends, Header, Request

from nsml.core import credentials, naming
from nsml.core.entities import Session
from nsml.core.policy import Actor
from nsml.core.errors import Forbidden, NotFound, StorageFull, Unauthorized
from nsml.core.states import ACTIVE, Status

from .state import state

CACHE_SECONDS = 10.0  # a rotated token stops working within this long
COOKIE = "nsml_token"
_cache: dict[tuple[int, str], tuple[str, float]] = {}


def request_token(request: Request, authorization: str | None) -> str:
    """The bearer header wins; the cookie is the browser's way of sending the same token."""
    if authorization and authorization.startswith("Bearer "):
        return authorization[7:].strip()
    return request.cookies.get(COOKIE, "").strip()


def actor_for(request: Request, token: str) -> Actor | None:
    """Who holds `token` (cached CACHE_SECONDS: a revoked token stops working within that long);
    each use is recorded on the token at most once a cache period."""
    key = (id(request.app), token)
    cached = _cache.get(key)
    if cached and time.monotonic() - cached[1] < CACHE_SECONDS:
        return cached[0]
    store = state(request).store
    found = store.actor_for_token(token)
    if found is None:
        _cache.pop(key, None)
        return None
    actor, token_id = found
    try:
        store.touch_token(token_id)
    except StorageFull:
        pass  # a full disk must not lock everyone out; the use is recorded once there is room
    _cache[key] = (actor, time.monotonic())
    return actor


def forget_cached() -> None:
    """Drop every cached token: a revocation or a team change takes effect on the next request."""
    _cache.clear()


def current_actor(request: Request, authorization: str | None = Header(default=None)) -> Actor:
    """The user calling, with their teams and whether they are an admin (nsml.core.policy)."""
    token = request_token(request, authorization)
    if not token:
        raise Unauthorized("This server needs a token: run `nsml login URL` first.")
    if credentials.is_session_token(token):
        raise Unauthorized("A session's credentials are for its own supervisor's calls only.")
    actor = actor_for(request, token)
    if actor is None:
        # Revoked, expired or unknown alike: the answer tells nobody which tokens ever existed.
        raise Unauthorized("The token is not valid for this server: run `nsml login URL` again.")
    return actor


def current_user(actor: Actor = Depends(current_actor)) -> str:
    """The calling user's name: for routes that act on nothing but the caller's own things."""
    return actor.name


def supervisor_of(owner: str, dataset: str, number: int, request: Request,
                  authorization: str | None = Header(default=None)) -> Session:
    """The session whose supervisor is calling: only that session's scoped token
    (nsml.core.credentials) for its current attempt, and only until its end was reported, is
    accepted. A user's token is not: no person posts a session's journal or logs."""
    session = _scoped_session(request, authorization)
    name = naming.session_name(owner, dataset, number)
    if session.name != name:
        raise Forbidden(f"These credentials belong to session {session.name}, not to {name}.")
    return session


def caller(request: Request, authorization: str | None = Header(default=None)) -> Actor:
    """Who reads: a user by token or cookie, or a live session on its owner's behalf (through
    its supervisor: `nsml.load(session=...)` of a checkpoint its owner may read)."""
    token = request_token(request, authorization)
    if credentials.is_session_token(token):
        return state(request).store.actor(_scoped_session(request, authorization).owner)
    return current_actor(request, authorization)


def _scoped_session(request: Request, authorization: str | None) -> Session:
    token = request_token(request, authorization)
    st = state(request)
    parsed = credentials.parse_session_token(st.session_secret, token) if token else None
    if parsed is None:
        if token and not credentials.is_session_token(token) and actor_for(request, token):
            raise Forbidden("Only a session's own supervisor may make this call, not a user.")
        raise Unauthorized("Only a session's own supervisor may make this call.")
    session_id, attempt = parsed
    try:
        session = st.store.session_by_id(session_id)
    except NotFound:  # the session was removed
        raise Unauthorized("These session credentials are no longer valid.") from None
    ended = session.status not in ACTIVE and not (session.status == Status.STOPPED and session.exit_code is None)
    if session.attempt != attempt or ended:
        raise Unauthorized("These session credentials are no longer valid: the session's attempt ended.")
    return session
