"""create_app(settings): the whole server, with no import-time globals."""

import getpass
import os
import secrets
import threading
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from nsml import __version__
from nsml.core import credentials
from nsml.core.accounting import Credits
from nsml.scheduler.local import LocalExecutor
from nsml.scheduler import inventory
from nsml.scheduler.placement import DEFAULT_POLICY
from nsml.scheduler.policy_file import load_policy
from nsml.scheduler.service import Scheduler
from nsml.store.s3blobs import open_blobs
from nsml.store.sql import open_store

from . import errors, ingest, pausing, preemption, web_security
from . import relaunch as relaunch_flow
from .automl import service as automl
from .api import automl as automl_api
from .api import automl_web
from .api import boards, channel, clicks, credit, datasets, identity, metrics, relaunch, runs, runtime, sessions, system
from .api import web as web_api
from .web import router as web_pages
from .settings import Settings
from .state import ServerState
from .uploads import ReleaseLeases


def read_or_create_token(home: Path, name: str = "token") -> str:
    """The local user's token (or another secret), readable by this OS user only (0600).

    Written to a temporary file and linked into place, so a reader never sees it half written
    and two servers starting at once agree on one token.
    """
    path = home / name
    existing = _read_token(path)
    if existing:
        return existing
    token = secrets.token_urlsafe(32)
    tmp = home / f".{name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    try:
        if path.exists():  # empty: left by an older version that crashed while writing it
            os.replace(tmp, path)
            return token
        os.link(tmp, path)
        return token
    except FileExistsError:  # another process created it first: use theirs
        return _read_token(path) or token
    finally:
        tmp.unlink(missing_ok=True)


def _read_token(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def build_state(settings: Settings) -> ServerState:
    home = Path(settings.home)
    home.mkdir(parents=True, exist_ok=True)
    (home / "logs").mkdir(exist_ok=True)
    token = settings.token or read_or_create_token(home)
    store = open_store(settings.database_url)
    store.add_user(settings.user or getpass.getuser(), token, admin=True)  # the server's own user administers it
    blobs = open_blobs(settings.blobs, home)
    blobs.in_use = store.shas_in_use  # a blob is deleted only once no file row refers to it
    blobs.clean_tmp()
    feed = None
    if settings.inventory:
        nodes, feed_path = inventory.load_declared(settings.inventory)
        feed = inventory.UtilisationFeed(feed_path) if feed_path else inventory.NoReadings()
    else:
        nodes = inventory.this_machine(settings.cpus, settings.memory, settings.gpus)
    secret = read_or_create_token(home, "session.key").encode()
    isolation = settings.isolation
    if isolation is None:  # an app built directly (tests, embedding): the embedded default
        from .isolation import choose

        isolation = choose(settings.sandbox, team=False)[0]
    executor = make_executor(settings, home, blobs, nodes, isolation, lambda s: credentials.session_token(secret, s.id, s.attempt), secret)
    policy, credits = load_policy(settings.policy) if settings.policy else (DEFAULT_POLICY, Credits())
    scheduler = Scheduler(store, executor, executor.inventory(), settings.scheduler_interval, heartbeat_timeout=settings.heartbeat_timeout,
                          feed=feed, zombie_after=settings.zombie_after if settings.zombie_note else None,
                          lease_ttl=settings.lease_ttl, policy=policy, credits=credits)
    # One list, refreshed in place by the scheduler when a cluster's nodes change: the API's
    # admission checks see the same nodes placement does.
    return ServerState(settings, store, blobs, executor, scheduler, scheduler.nodes, home / "logs", threading.Lock(), secret,
                       ingest.for_store(store))


def make_executor(settings: Settings, home: Path, blobs, nodes, isolation, token_for, secret: bytes):
    """The local executor, or the Ray executor when --executor names a cluster (docs/cluster.md)."""
    heartbeat_every = min(5.0, settings.heartbeat_timeout / 4)
    if settings.executor in ("", "local"):
        return LocalExecutor(home, blobs, settings.public_url or settings.url, token_for, server_file=home / "server.json",
                             paused_timeout=settings.paused_timeout, isolation=isolation, network=settings.session_network,
                             nodes=nodes, heartbeat_every=heartbeat_every)
    from nsml.scheduler.ray_executor import RayExecutor

    # The nodes sandbox sessions exactly as this server would: a node that cannot runs none.
    sandbox = "none" if not isolation.sandboxed else "bwrap"
    import hashlib

    # Named by the key that signs session tokens: the same for servers sharing one database
    # (they must find each other's sessions), different for another platform on the cluster.
    instance = hashlib.sha256(b"ray-instance:" + secret).hexdigest()[:12]
    return RayExecutor(settings.executor, settings.public_url or settings.url, token_for, sandbox=sandbox,
                       network=settings.session_network, paused_timeout=settings.paused_timeout,
                       heartbeat_every=heartbeat_every, home=home, instance=instance)


def on_lead(st: ServerState) -> None:
    """What the server holding the scheduler's lease does on taking it (at start, or on taking
    over from one that died): sweep blobs nothing refers to, run again the evaluations that
    were cut short and fail submits whose session is gone."""
    threading.Thread(target=st.blobs.sweep, name="nsml-blob-sweep", daemon=True).start()
    relaunch_flow.fail_unfinished_submissions(st)


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        st = build_state(settings)
        app.state.nsml = st
        st.scheduler.on_lead = lambda: on_lead(st)
        st.scheduler.on_preempt = lambda victim, head: preemption.preempt(st, victim, head)
        st.scheduler.on_reconcile = lambda running, at_startup: pausing.watch(st, running, at_startup)
        st.scheduler.on_lost = lambda session: preemption.bring_back_lost(st, session)
        automl.attach(st)
        st.scheduler.start()
        st.prune_dataset_views()
        try:
            yield
        finally:
            st.scheduler.shutdown()
            st.journal.close()
            st.store.close()

    app = FastAPI(
        title="NSML",
        version=__version__,
        description="An open implementation of NSML: datasets, sessions, metrics, checkpoints.",
        lifespan=lifespan,
    )
    errors.install(app)

    app.add_middleware(ReleaseLeases)
    web_security.install(app)  # outermost: the Origin rule, the JSON body cap, the security headers
    for module in (system, credit, identity, datasets, boards, sessions, metrics, runs, relaunch, runtime, channel, automl_api, automl_web):
        app.include_router(module.router)
    app.include_router(web_api.router)
    app.include_router(clicks.router)
    app.include_router(web_pages)  # dashboard pages, /login and /static (Plotly.js included)
    return app
