"""The objects one server instance works with, handed to routes through request.app.state."""

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from nsml.core.inventory import Node
from nsml.core.states import ACTIVE
from nsml.scheduler.local import LocalExecutor
from nsml.scheduler.service import Scheduler
from nsml.store.blobs import BlobStore
from nsml.core.errors import StorageFull
from nsml.store.sql import SqlStore

from .ingest import JournalIngest
from .settings import Settings


@dataclass
class ServerState:
    settings: Settings
    store: SqlStore
    blobs: BlobStore
    executor: LocalExecutor
    scheduler: Scheduler
    nodes: list[Node]  # what the executor's inventory has (nsml.scheduler.inventory)
    logs_dir: Path
    log_lock: threading.Lock
    session_secret: bytes = b""  # signs session-scoped credentials (nsml.core.credentials)
    journal: JournalIngest | None = None  # the supervisors' journal posts, stored together (ingest.py)

    def audit(self, actor: str, action: str, target: str = "", detail: str = "") -> None:
        """Record what `actor` did. Best effort where the disk is full: a stop or a removal (what
        frees space) must not be refused because its record cannot be written; the entry goes to
        the server's log instead."""
        try:
            self.store.audit(actor, action, target, detail)
        except StorageFull:
            logging.getLogger("nsml.audit").warning("disk full, not in the audit table: %s %s %s %s", actor, action, target, detail)

    def log_note(self, session_id: int, line: str) -> None:
        """A `[nsml] …` line at the end of a session's stored log, written by the server itself:
        for a session whose supervisor has shipped its last log (an exit being settled) or that
        has none (an AutoML study's parent). Best effort: a full disk loses the line, not the call."""
        path = self.logs_dir / f"{session_id}.log"
        with self.log_lock:
            try:
                size = path.stat().st_size if path.exists() else 0
                with open(path, "ab") as out:
                    if size:
                        with open(path, "rb") as f:
                            f.seek(size - 1)
                            if f.read(1) != b"\n":
                                out.write(b"\n")
                    out.write(line.rstrip("\n").encode() + b"\n")
            except OSError:
                logging.getLogger("nsml.server").warning("could not write to the log of session #%s: %s", session_id, line)

    def prune_dataset_views(self) -> None:
        """Drop the read-only views of dataset versions no longer stored (see LocalExecutor)."""
        current = {d.fileset_id for d in self.store.list_datasets()}
        in_use = {s.dataset for s in self.store.list_sessions(set(ACTIVE))}
        self.executor.prune_views(current, in_use)


def state(request: Request) -> ServerState:
    return request.app.state.nsml
