"""Page routes, the login cookie, and static files with long cache lifetimes."""

import gzip
import hashlib
import html
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from nsml import __version__

from ..auth import COOKIE, actor_for

router = APIRouter(include_in_schema=False)
HERE = Path(__file__).parent
STATIC = HERE / "static"
SCRIPTS = ["core.js", "nav.js", "plots.js", "graph.js", "argtable.js", "session.js", "notes.js", "info.js", "diff.js", "parcoords.js", "runs.js", "automl.js", "usability.js", "sharing.js", "pages.js"]  # load order matters
COOKIE_DAYS = 30
YEAR = 365 * 24 * 3600


def plotly_js() -> Path:
    """Plotly.js as bundled by the `plotly` Python package (a core dependency): no CDN needed."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def static_file(name: str) -> Path | None:
    if name == "plotly.min.js":
        return plotly_js()
    path = (STATIC / name).resolve()
    return path if path.parent == STATIC.resolve() and path.is_file() else None


@lru_cache(maxsize=64)
def _load(path: Path, mtime: float) -> tuple[bytes, bytes, str]:
    """(raw, gzipped, short content hash) of a static file; cached until the file changes."""
    raw = path.read_bytes()
    return raw, gzip.compress(raw, 6, mtime=0), hashlib.sha256(raw).hexdigest()[:12]


def loaded(path: Path) -> tuple[bytes, bytes, str]:
    return _load(path, path.stat().st_mtime)


def static_url(name: str) -> str:
    """A URL that changes whenever the file does, so browsers may cache it for a year."""
    path = static_file(name)
    return f"/static/{name}?v={loaded(path)[2] if path else __version__}"


@router.get("/static/{name}")
def static(name: str, request: Request) -> Response:
    path = static_file(name)
    if path is None:
        return Response("not found", status_code=404, media_type="text/plain")
    raw, packed, _ = loaded(path)
    media = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}.get(path.suffix, "application/octet-stream")
    headers = {"Cache-Control": f"public, max-age={YEAR}, immutable", "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(packed, media_type=media, headers={**headers, "Content-Encoding": "gzip"})
    return Response(raw, media_type=media, headers=headers)


@lru_cache(maxsize=1)
def _shell_template() -> str:
    return (HERE / "templates" / "shell.html").read_text()


def shell(request: Request, page: str, title: str) -> HTMLResponse:
    """The page's HTML: the same shell for every page; the scripts fill <main> by `page`. The
    body says whether this server records the dashboard's use (usability.js; opt-in)."""
    from ..state import state

    text = _shell_template()
    analytics = "on" if state(request).settings.usage_analytics else "off"
    scripts = "\n".join(f'<script src="{static_url(s)}" defer></script>' for s in ["plotly.min.js", *SCRIPTS])
    for key, value in {"title": html.escape(title), "page": page, "css": static_url("app.css"),
                       "theme": static_url("theme.js"), "scripts": scripts, "version": __version__,
                       "analytics": analytics}.items():
        text = text.replace("{{" + key + "}}", value)
    # The shell holds no data (scripts fetch it with the login cookie), so it may be cached briefly.
    return HTMLResponse(text, headers={"Cache-Control": "no-cache"})


@router.get("/")
def home(request: Request) -> HTMLResponse:
    return shell(request, "home", "Sessions")


@router.get("/datasets/{name}")
def dataset_page(request: Request, name: str) -> HTMLResponse:
    return shell(request, "dataset", f"Dataset {name}")


@router.get("/sessions/{owner}/{dataset}/{number}")
def session_page(request: Request, owner: str, dataset: str, number: str) -> HTMLResponse:
    return shell(request, "session", f"{owner}/{dataset}/{number}")


@router.get("/compare")
def compare_page(request: Request) -> HTMLResponse:
    return shell(request, "compare", "Compare")


@router.get("/automl")
def automl_page(request: Request) -> HTMLResponse:
    """AutoML studies (issue 16); its twin is GET /api/automl?all=true."""
    return shell(request, "automl", "AutoML")


@router.get("/automl/compare")
def automl_compare_page(request: Request) -> HTMLResponse:
    """Several studies overlaid (s=NAME repeated); twin: GET /api/web/automl/compare."""
    return shell(request, "automl-compare", "Compare studies")


@router.get("/automl/{owner}/{dataset}/{number}")
def automl_study_page(request: Request, owner: str, dataset: str, number: str) -> HTMLResponse:
    """One study's analytics; twin: GET /api/web/automl/OWNER/DATASET/N (and its importance,
    contour and rerun routes)."""
    return shell(request, "automl-study", f"AutoML {owner}/{dataset}/{number}")


@router.get("/diff")
def diff_page(request: Request) -> HTMLResponse:
    return shell(request, "diff", "Diff")


@router.get("/resources")
def resources_page(request: Request) -> HTMLResponse:
    return shell(request, "resources", "Resources")


@router.get("/usability")
def usability_page(request: Request) -> HTMLResponse:
    """Admins: how the dashboard is used (a server started with --usage-analytics)."""
    return shell(request, "usability", "Usability")


def _safe_next(target: str) -> str:
    """Only a path on this server (never //other.host or a scheme): no open redirect."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"


LOGIN_FORM = """<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content="width=device-width">
<title>NSML login</title><link rel=stylesheet href="{css}">
<main class=login><h1>NSML</h1>{message}
<form method=post action="/login"><input type=hidden name=next value="{next}">
<label>Username <input name=username autocomplete=username required maxlength=64 autofocus></label>
<label>Password <input name=password type=password autocomplete=current-password required maxlength=1024></label>
<button type=submit>Log in</button></form>
<p class=hint>Or run <code>nsml web</code> for a login link.</p></main></html>"""
MAX_FORM_BYTES = 4096


def login_page(next_path: str, message: str = "", status: int = 200) -> HTMLResponse:
    text = LOGIN_FORM.format(css=static_url("app.css"), next=html.escape(_safe_next(next_path)),
                             message=f"<p class=error role=alert>{html.escape(message)}</p>" if message else "")
    return HTMLResponse(text, status_code=status, headers={"Cache-Control": "no-store"})


def _logged_in(request: Request, token: str, next_path: str) -> Response:
    resp = RedirectResponse(_safe_next(next_path), status_code=303)
    resp.set_cookie(COOKIE, token, max_age=COOKIE_DAYS * 86400, httponly=True, samesite="strict",
                    secure=request.url.scheme == "https", path="/")
    return resp


@router.get("/login")
def login(request: Request, token: str = "", next: str = "/") -> Response:
    """Without a token: the username and password form. With the token in the link `nsml web`
    printed: trade it for an HttpOnly cookie, then drop it from the address bar by redirecting."""
    if not token:
        return login_page(next)
    if actor_for(request, token) is None:
        return login_page(next, "This login link is not valid for this server. Run nsml web for a fresh one, "
                                "or log in below.", 401)
    return _logged_in(request, token, next)


@router.post("/login")
async def login_with_password(request: Request) -> Response:
    """The form's answer: a token of its own for this browser (COOKIE_DAYS, `nsml token ls`
    lists it as 'web'), in the cookie."""
    from urllib.parse import parse_qs

    from .. import passwords
    from ..api.identity import issue_token

    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return login_page("/", "That form is too large.", 413)
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    username, password, next_path = form.get("username", "")[:64], form.get("password", ""), form.get("next", "/")
    st = request.app.state.nsml
    stored = st.store.password_hash(username) if username else None
    ok = bool(stored) and await run_in_threadpool(passwords.verify, password, stored)
    if not ok:
        if not stored:
            await run_in_threadpool(passwords.burn, password)
        st.audit(username or "-", "login failed", username, "web")
        return login_page(next_path, "Wrong username or password.", 401)
    st.audit(username, "login", username, "web")
    return _logged_in(request, issue_token(st, username, "web", COOKIE_DAYS).token, next_path)


@router.get("/logout")
def logout() -> Response:
    resp = RedirectResponse("/", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp
