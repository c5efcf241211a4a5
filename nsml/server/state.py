"""The objects one server instance works with, handed to routes through request.app.state."""

import threading
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from nsml.core.resources import Resources
from nsml.scheduler.local import LocalExecutor
from nsml.scheduler.service import Scheduler
from nsml.store.blobs import BlobStore
from nsml.store.sql import SqlStore

from .settings import Settings


@dataclass
class ServerState:
    settings: Settings
    store: SqlStore
    blobs: BlobStore
    executor: LocalExecutor
    scheduler: Scheduler
    capacity: Resources
    gpus: list
    logs_dir: Path
    log_lock: threading.Lock

    def gc_blobs(self, candidates: set[str]) -> None:
        """Delete blobs no fileset refers to any more (after rm of a dataset, session, checkpoint)."""
        self.blobs.delete_unused(candidates)


def state(request: Request) -> ServerState:
    return request.app.state.nsml
