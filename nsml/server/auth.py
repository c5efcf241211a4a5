"""Who is calling: a bearer token (CLI, runtime) or the dashboard's login cookie (browser).

`nsml web` opens URL/login?token=T once; that answer stores T in an HttpOnly, SameSite=Strict
cookie, so page scripts never see the token and other sites cannot make the browser use it
(which is what keeps the dashboard's stop/remove/memo calls safe without a CSRF token).
"""

import time

from fastapi import Header, Request

from nsml.core.errors import Unauthorized

from .state import state

CACHE_SECONDS = 10.0  # a rotated token stops working within this long
COOKIE = "nsml_token"
_cache: dict[tuple[int, str], tuple[str, float]] = {}


def request_token(request: Request, authorization: str | None) -> str:
    """The bearer header wins; the cookie is the browser's way of sending the same token."""
    if authorization and authorization.startswith("Bearer "):
        return authorization[7:].strip()
    return request.cookies.get(COOKIE, "").strip()


def user_for(request: Request, token: str) -> str | None:
    key = (id(request.app), token)
    cached = _cache.get(key)
    if cached and time.monotonic() - cached[1] < CACHE_SECONDS:
        return cached[0]
    user = state(request).store.user_for_token(token)
    if user is None:
        _cache.pop(key, None)
        return None
    _cache[key] = (user, time.monotonic())
    return user


def current_user(request: Request, authorization: str | None = Header(default=None)) -> str:
    token = request_token(request, authorization)
    if not token:
        raise Unauthorized("This server needs a token: run `nsml login URL` first.")
    user = user_for(request, token)
    if user is None:
        raise Unauthorized("The token is not valid for this server: run `nsml login URL` again.")
    return user
