"""Bearer tokens: every API call says who is calling."""

import time

from fastapi import Header, Request

from nsml.core.errors import Unauthorized

from .state import state

CACHE_SECONDS = 10.0  # a rotated token stops working within this long
_cache: dict[tuple[int, str], tuple[str, float]] = {}


def current_user(request: Request, authorization: str | None = Header(default=None)) -> str:
    token = authorization[7:].strip() if authorization and authorization.startswith("Bearer ") else ""
    if not token:
        raise Unauthorized("This server needs a token: run `nsml login URL` first.")
    key = (id(request.app), token)
    cached = _cache.get(key)
    if cached and time.monotonic() - cached[1] < CACHE_SECONDS:
        return cached[0]
    user = state(request).store.user_for_token(token)
    if user is None:
        _cache.pop(key, None)
        raise Unauthorized("The token is not valid for this server: run `nsml login URL` again.")
    _cache[key] = (user, time.monotonic())
    return user
