"""Bearer tokens: every API call says who is calling."""

from fastapi import Header, Request

from nsml.core.errors import Unauthorized

from .state import state

_cache: dict[tuple[int, str], str] = {}


def current_user(request: Request, authorization: str | None = Header(default=None)) -> str:
    if not authorization or not authorization.startswith("Bearer "):
        raise Unauthorized("This server needs a token: run `nsml login URL` first.")
    token = authorization[7:].strip()
    key = (id(request.app), token)
    user = _cache.get(key)
    if user is None:
        user = state(request).store.user_for_token(token)
        if user is None:
            raise Unauthorized("The token is not valid for this server: run `nsml login URL` again.")
        _cache[key] = user
    return user
