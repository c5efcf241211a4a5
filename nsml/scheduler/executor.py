"""The executor seam: everything the server and the scheduler do to a session's processes goes
through this protocol, and everything a session tells the server comes over HTTP from its
supervisor (journal, logs, checkpoints, outputs, heartbeats, exit). No server module reads a run
directory, a spool file or a socket, or looks at /proc: that is the executor's business, so a
cluster executor (Ray) fills the same seam.

The local executor (nsml.scheduler.local.LocalExecutor) implements it for this machine; its
contract is tested in tests/scheduler/test_executor_contract.py.
"""

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from nsml.core.entities import Dataset, FileEntry, Session
from nsml.core.inventory import Node


@dataclass(frozen=True)
class Launched:
    """What a launch reports back. `handle`: how the executor finds the session again (the
    local executor: its supervisor's pid). `gpu_ids` and `node`: set by an executor that assigns
    devices or nodes itself (Ray); then they, not placement's choice, are what is recorded."""

    handle: int
    gpu_ids: tuple[int, ...] | None = None
    node: str | None = None


@runtime_checkable
class Executor(Protocol):
    paused_timeout: float  # how long a relaunched script may take to reach nsml.paused()

    def inventory(self) -> list[Node]:
        """The nodes sessions can be placed on, with their CPUs, memory and GPUs."""

    def launch(self, session: Session, gpu_ids: tuple[int, ...], code: list[FileEntry], dataset: Dataset | None,
               dataset_files: list[FileEntry], outputs: list[FileEntry] = ()) -> Launched:
        """Prepare and start the session on its node (session.node) with exactly the devices
        `gpu_ids` visible. Its supervisor then reports over HTTP with the session's scoped token
        (heartbeats every few seconds: its liveness)."""

    def stop(self, session: Session) -> bool:
        """Ask the session to end (the supervisor gives the user process a grace period, then
        kills it, ships what is left and reports the exit); False when nothing is there to stop."""

    def signal(self, session: Session, signum: int) -> bool:
        """Send a signal to the session's user process (SIGUSR1: checkpoint now); False if gone."""

    def kill(self, session: Session) -> None:
        """End whatever is left of the session at once, without waiting for a report."""

    def remove(self, session: Session) -> None:
        """Delete what the session left on its node (run directory, sockets)."""

    def release_workdir(self, session: Session) -> None:
        """Drop an ended session's working copy once the server has stored its outputs."""

    def note(self, session: Session, line: str) -> None:
        """Append a `[nsml] …` line to the session's log (shipped like its own output)."""

    def live_outputs(self, session: Session, code: dict[str, str]) -> list[tuple[str, str, int]]:
        """(relative path, readable path, size) of files a running session wrote so far."""

    def infer(self, session: Session, data, wait: float) -> object:
        """One request to an infer session's loaded model (waits up to `wait` s for it to load)."""

    def prune_views(self, current_filesets: set[int], datasets_in_use: set[str]) -> None:
        """Forget cached dataset views of versions that are gone."""
