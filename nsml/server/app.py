"""create_app(settings): the whole server, with no import-time globals."""

import getpass
import os
import secrets
import threading
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from nsml import __version__
from nsml.scheduler.local import LocalExecutor
from nsml.scheduler.machine import capacity as machine_capacity
from nsml.scheduler.service import Scheduler
from nsml.store.blobs import BlobStore
from nsml.store.sql import open_store

from . import errors
from .api import datasets, runtime, sessions, system
from .settings import Settings
from .state import ServerState


def read_or_create_token(home: Path) -> str:
    """The local user's token, readable by this OS user only (0600)."""
    path = home / "token"
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return token


def build_state(settings: Settings) -> ServerState:
    home = Path(settings.home)
    home.mkdir(parents=True, exist_ok=True)
    (home / "logs").mkdir(exist_ok=True)
    token = settings.token or read_or_create_token(home)
    store = open_store(settings.database_url)
    store.add_user(settings.user or getpass.getuser(), token)
    blobs = BlobStore(home / "blobs")
    cap, gpus = machine_capacity(settings.cpus, settings.memory, settings.gpus)
    executor = LocalExecutor(home, blobs, settings.url, token, server_file=home / "server.json")
    scheduler = Scheduler(store, executor, cap, [g.index for g in gpus][: cap.gpus] or list(range(cap.gpus)), settings.scheduler_interval)
    return ServerState(settings, store, blobs, executor, scheduler, cap, gpus, home / "logs", threading.Lock())


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        st = build_state(settings)
        app.state.nsml = st
        st.scheduler.start()
        try:
            yield
        finally:
            st.scheduler.shutdown()
            st.store.close()

    app = FastAPI(
        title="NSML",
        version=__version__,
        description="An open implementation of NSML: datasets, sessions, metrics, checkpoints.",
        lifespan=lifespan,
    )
    errors.install(app)
    for module in (system, datasets, sessions, runtime):
        app.include_router(module.router)
    return app
