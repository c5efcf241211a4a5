"""Which queued sessions start now: first come, first served, with backfill.

Pure: takes the queue, what runs and what the machine has; returns decisions. The next issue
replaces it with priorities, fair share and quotas behind the same function.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from nsml.core.entities import Session
from nsml.core.resources import Resources


@dataclass(frozen=True)
class Placement:
    session: Session
    gpu_ids: tuple[int, ...]


def place(queued: Sequence[Session], running: Sequence[Session], capacity: Resources, gpu_ids: Sequence[int]) -> list[Placement]:
    """Start every queued session (oldest first) that fits in what is left; later small ones may
    pass an earlier large one that has to wait (backfill), so a big request never idles the machine."""
    used = Resources()
    busy: set[int] = set()
    for s in running:
        used = used + s.resources
        busy.update(int(g) for g in s.gpu_ids.split(",") if g)
    free_gpus = [g for g in gpu_ids if g not in busy]
    decisions = []
    for s in sorted(queued, key=lambda s: (s.created, s.id)):
        if (used + s.resources).fits_within(capacity) and s.resources.gpus <= len(free_gpus):
            chosen, free_gpus = tuple(free_gpus[: s.resources.gpus]), free_gpus[s.resources.gpus :]
            used = used + s.resources
            decisions.append(Placement(s, chosen))
    return decisions
