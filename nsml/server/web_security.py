"""Web hardening, as one ASGI middleware (docs/security.md, "Input bounds and the web").

- A state-changing request (POST, PUT, PATCH, DELETE) that the dashboard's login cookie would
  authenticate must come from this server's own pages: its `Origin` (or, without one, its
  `Referer`) must be this server; otherwise, or with neither, it is refused with 403 before any
  route runs. The login form (POST /login) likewise refuses another site's Origin. The SameSite=Strict cookie already keeps other sites from using it; this is the
  second lock, for browsers and proxies that get SameSite wrong. A request with a bearer token
  (the CLI, scripts, supervisors) carries no ambient credential and is not affected.
- Every response carries a Content-Security-Policy (scripts from this server only: no inline
  script, no eval), X-Frame-Options DENY, X-Content-Type-Options nosniff and Referrer-Policy
  same-origin.
- A JSON request body over bounds.MAX_JSON_BODY is answered 413 without being read whole.
"""

import json
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import COOKIE
from .bounds import MAX_JSON_BODY

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# style-src allows inline styles: Plotly.js draws its charts with style elements and attributes;
# a style cannot run code, and no script but this server's own files may run.
CSP = "; ".join([
    "default-src 'self'", "script-src 'self'", "style-src 'self' 'unsafe-inline'", "img-src 'self' data: blob:",
    "font-src 'self' data:", "connect-src 'self'", "object-src 'none'", "base-uri 'none'", "form-action 'self'",
    "frame-ancestors 'none'",
])
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]
_NAMES = {name for name, _ in HEADERS}
_DEFAULT_PORTS = {"http": 80, "https": 443}


def install(app) -> None:
    app.add_middleware(WebSecurity)


def _site(netloc: str, scheme: str) -> tuple[str, int | None] | None:
    """(host, port) of a netloc with the scheme's default port filled in; None if malformed."""
    try:
        parts = urlsplit(f"//{netloc}")
        return (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None


def cross_site_refusal(scope: Scope, headers: Headers) -> str | None:
    """Why this request is refused, or None. Checked: unsafe requests the login cookie would
    authenticate, and those to the dashboard's own forms (POST /login: no login CSRF)."""
    if scope["method"] not in UNSAFE or headers.get("authorization", "").startswith("Bearer "):
        return None  # a safe method, or the bearer token wins over the cookie (auth.request_token)
    with_cookie = bool(cookie_parser(headers.get("cookie", "")).get(COOKIE, "").strip())
    page_form = not scope.get("path", "").startswith("/api/")
    if not (with_cookie or page_form):
        return None
    own = _site(headers.get("host", ""), scope.get("scheme", "http"))
    claimed = headers.get("origin") or headers.get("referer")
    if not claimed:
        if not with_cookie:  # curl posting the login form: nothing ambient to abuse
            return None
        return ("This request carries the dashboard's login cookie but neither an Origin nor a Referer header, so it may "
                "come from another site; it was refused. Scripts should send the token as 'Authorization: Bearer TOKEN'.")
    try:
        parts = urlsplit(claimed)
        theirs = _site(parts.netloc, parts.scheme) if parts.scheme in _DEFAULT_PORTS else None
    except ValueError:
        theirs = None
    if own is None or theirs != own:
        shown = claimed if len(claimed) <= 100 else claimed[:100] + "…"
        what = "with the dashboard's login cookie" if with_cookie else "to the dashboard"
        return f"Refused: a {scope['method']} {what} must come from this server's own pages, not from {shown}."
    return None


class WebSecurity:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_hardened(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _NAMES]
                message = {**message, "headers": kept + HEADERS}
            await send(message)

        headers = Headers(scope=scope)
        refusal = cross_site_refusal(scope, headers)
        if refusal:
            return await _answer(send_hardened, 403, refusal, "Forbidden")
        if scope["method"] in UNSAFE and _is_json(headers.get("content-type", "")):
            body = await _bounded(receive, headers)
            if body is None:
                return await _answer(send_hardened, 413, f"The JSON body is over {MAX_JSON_BODY >> 20} MiB, the most this "
                                     "server takes.", "PayloadTooLarge")
            receive = _replay(body, receive)
        await self.app(scope, receive, send_hardened)


def _is_json(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


async def _bounded(receive: Receive, headers: Headers) -> bytes | None:
    """The whole body, or None as soon as it is known to be over MAX_JSON_BODY."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_JSON_BODY:
        return None
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: let the app see it
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_JSON_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(send: Send, status: int, detail: str, error: str) -> None:
    body = json.dumps({"detail": detail, "error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
