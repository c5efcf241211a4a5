"""Which queued sessions start now, where, on which devices; and why the others wait.

Pure: a function of (queue, running sessions, nodes); no store, no clock, no processes. The
scheduler loop calls it each pass and carries out its decisions through the executor; the API
calls it to tell a queued session its position and reason. Policy (this issue's part):

- order: priority (high, normal, low), then first come first served;
- a session runs on one node: N whole GPUs of that node (of the model asked for, if any), its
  CPUs and memory;
- packing: of the nodes that fit, the one with the fewest free GPUs left (then CPUs), so that
  whole nodes stay free for large requests;
- backfill: a later, smaller session may start while an earlier one that does not fit waits,
  so a big request never idles the cluster. (Reservations by time limit come with fair share.)

Cost: one pass over the queue. A request larger than what any node has free is answered
without looking at the nodes, so 10,000 waiting sessions on a full cluster stay cheap
(bench/scheduler.py measures it).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

from nsml.core.entities import Session
from nsml.core.inventory import Node, model_matches
from nsml.core.resources import Resources, format_size

PRIORITIES = {"low": -1, "normal": 0, "high": 1}
PRIORITY_NAMES = {v: k for k, v in PRIORITIES.items()}


@dataclass(frozen=True)
class Decision:
    session: Session
    node: str
    gpu_ids: tuple[int, ...]


@dataclass(frozen=True)
class Waiting:
    session: Session
    position: int  # 1 for the next to start, in queue order
    reason: str  # "waiting for 2 GPUs; 3 ahead of you; alice holds 4"


@dataclass
class Plan:
    starts: list[Decision] = field(default_factory=list)
    waiting: list[Waiting] = field(default_factory=list)


def queue_order(queued: Sequence[Session]) -> list[Session]:
    return sorted(queued, key=lambda s: (-s.priority, s.created, s.id))


def gpu_ids_of(session: Session) -> tuple[int, ...]:
    return tuple(int(g) for g in session.gpu_ids.split(",") if g.strip().isdigit())


class _Free:
    """What one node has left while a plan is made."""

    __slots__ = ("node", "cpus", "memory", "gpus")

    def __init__(self, node: Node):
        self.node = node
        self.cpus = node.cpus
        self.memory = node.memory
        self.gpus = {g.index: g.model for g in node.gpus}  # free device id -> model

    def take(self, r: Resources, gpu_ids: Sequence[int]) -> None:
        self.cpus -= r.cpus
        self.memory -= r.memory
        for g in gpu_ids:
            self.gpus.pop(g, None)

    def matching(self, model: str) -> list[int]:
        return sorted(i for i, m in self.gpus.items() if model_matches(model, m))

    def fits(self, r: Resources, model: str) -> list[int] | None:
        if r.cpus > self.cpus + 1e-9 or r.memory > self.memory:
            return None
        if r.gpus == 0:
            return []
        free = self.matching(model) if model else sorted(self.gpus)
        return free[: r.gpus] if len(free) >= r.gpus else None


def place(queued: Sequence[Session], running: Sequence[Session], nodes: Sequence[Node], explain: bool = True) -> Plan:
    """The sessions to start now (with node and device ids) and, with `explain`, every other
    queued session's position and reason. Running sessions hold what they were given; one with
    no node recorded (before nodes existed) is on the first node."""
    free = {n.name: _Free(n) for n in nodes}
    first = nodes[0].name if nodes else ""
    holders: dict[str, int] = {}
    for s in running:
        spot = free.get(s.node or first)
        if spot is not None:
            spot.take(s.resources, gpu_ids_of(s))
        holders[s.owner] = holders.get(s.owner, 0) + s.resources.gpus
    plan = Plan()
    most = _most_free(free.values())
    # Within one pass free space only shrinks: a shape that did not fit once will not fit again.
    failed: set[tuple] = set()
    waiting: list[Session] = []
    for s in queue_order(queued):
        r = s.resources
        shape = (r.cpus, r.memory, r.gpus, s.gpu_model)
        choice = None
        if shape not in failed and r.gpus <= most.gpus and r.cpus <= most.cpus + 1e-9 and r.memory <= most.memory:
            choice = _best_fit(free.values(), r, s.gpu_model)
        if choice is None:
            failed.add(shape)
            waiting.append(s)
            continue
        spot, gpu_ids = choice
        spot.take(r, gpu_ids)
        plan.starts.append(Decision(s, spot.node.name, tuple(gpu_ids)))
        most = _most_free(free.values())
    if explain:
        why = _Reasons(list(free.values()), holders)
        plan.waiting = [Waiting(s, i + 1, why.of(s, i)) for i, s in enumerate(waiting)]
    return plan


def _most_free(spots) -> Resources:
    spots = list(spots)
    if not spots:
        return Resources()
    return Resources(max(f.cpus for f in spots), max(f.memory for f in spots), max(len(f.gpus) for f in spots))


def _best_fit(spots, r: Resources, model: str):
    best, best_key = None, None
    for spot in spots:
        gpu_ids = spot.fits(r, model)
        if gpu_ids is None:
            continue
        key = (len(spot.gpus) - r.gpus, spot.cpus - r.cpus)
        if best_key is None or key < best_key:
            best, best_key = (spot, gpu_ids), key
    return best


class _Reasons:
    """Why a session waits, from what is left once this pass's starts are taken (summaries
    computed once per pass, not once per waiting session)."""

    def __init__(self, spots: list[_Free], holders: dict[str, int]):
        self.spots = spots
        self.most = _most_free(spots)
        self._gpus_by_model: dict[str, int] = {"": self.most.gpus}
        top = sorted(((n, o) for o, n in holders.items() if n), reverse=True)[:3]
        self.holders = ", ".join(f"{o} holds {n}" for n, o in top)

    def free_gpus(self, model: str) -> int:
        if model not in self._gpus_by_model:
            self._gpus_by_model[model] = max((len(f.matching(model)) for f in self.spots), default=0)
        return self._gpus_by_model[model]

    def of(self, s: Session, ahead: int) -> str:
        r = s.resources
        model = f" {s.gpu_model}" if s.gpu_model else ""
        if r.gpus and self.free_gpus(s.gpu_model) < r.gpus:
            need = (f"waiting for {r.gpus}{model} GPU{'s' if r.gpus != 1 else ''} on one node "
                    f"(at most {self.free_gpus(s.gpu_model)} free)")
        elif r.cpus > self.most.cpus + 1e-9:
            need = f"waiting for {r.cpus:g} CPUs (at most {self.most.cpus:g} free on a node)"
        elif r.memory > self.most.memory:
            need = f"waiting for {format_size(r.memory)} of memory (at most {format_size(self.most.memory)} free on a node)"
        else:  # each part is free somewhere, never all on one node
            need = f"waiting for {r.describe()} together on one node"
        parts = [need, f"{ahead} ahead of you"]
        if r.gpus and self.holders:
            parts.append(self.holders)
        return "; ".join(parts)
