"""Which queued sessions start now, where, on which devices; which preemptible ones to stop for
them; and why the others wait.

Pure: a function of (queue, running sessions, nodes, policy, the time, credit left); no store,
no clock, no processes. The scheduler loop calls it each pass and carries out its decisions
through the executor; the API calls it to tell a queued session its position and reason;
bench/scheduler.py drives it in simulated time. The policy (docs/scheduler.md):

- **order**: regular sessions before preemptible ones (except those within their team's and
  user's fair share, which count as regular), then priority (high, normal, low; a
  low-priority session within its team's and user's fair share counts as normal, after its
  owner's own normal ones); within a priority, *fair share*: the next
  session is the oldest of the team, then the user, with the lowest weighted dominant share
  (dominant resource fairness: a holder's largest fraction of the cluster's GPUs, CPUs or
  memory, held now, divided by its weight). A session is charged to its team; a user in no team
  is a team of one. `order="priority"` is part 1's queue (priority, then first come first
  served); `order="fifo"` ignores priority too (the benchmark's baseline).
- **quotas**: at most `max_gpus` GPUs held at once per user and per team;
- **credits**: where a holder has a GPU-time budget (`credit`, GPU-seconds left), a session that
  would exceed it by its declared time limit waits; one without a time limit gets the time its
  holder's credit affords as its limit;
- a session runs on one node: N whole GPUs of that node (of the model asked for, if any), its
  CPUs and memory; **placement by end, then packing**: of the nodes that fit, the one whose
  release time (when all its sessions will have ended, by their declared limits) the session
  extends least, then the one with the fewest free GPUs left (then CPUs), so that nodes come
  free whole for large requests;
- **backfill behind reservations** (EASY, with a few heads): the first regular sessions that
  do not fit (at most `reservations`, 4 by default, each on a node of its own) get a
  reservation on the node and at the time their request will be free by the running sessions'
  declared time limits (started + time limit; none: never). A later session may start in a
  hole only if it delays none of them: it runs on another node, or it ends (by its
  own declared limit) before the reserved time, or it leaves enough at the reserved time. A
  session without a time limit is never backfilled past a reservation. When no time can be
  promised (the sessions in the way declared no limit), nothing is reserved;
- **preemption**: `preemptible` sessions fill idle GPUs; when a regular session at the head
  does not fit, preemptible ones on the node where the fewest GPUs must be freed are chosen to
  be paused (checkpointed and requeued by the scheduler), the youngest first, among those their
  team holds beyond its fair share (each active team's weighted share equal; a team's split
  among its active users); until they have gone their resources are promised to that session.
  Preemptible sessions never preempt for their own sake and get no reservation by time limits,
  but the first one that fits nowhere, when no regular one holds a reservation, may have others
  *moved*: pausable preemptible sessions that fit right now on other nodes are paused to make
  one node free for it (defragmentation).

Cost: one pass over the queue plus a heap of its holders. A request larger than what any node
has free is answered without looking at the nodes, so 10,000 waiting sessions on a full cluster
stay cheap (bench/scheduler.py measures it).
"""

import functools
import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from nsml.core.entities import Session
from nsml.core.inventory import Node, model_matches
from nsml.core.resources import Resources, format_duration, format_size

PRIORITIES = {"low": -1, "normal": 0, "high": 1}
PRIORITY_NAMES = {v: k for k, v in PRIORITIES.items()}
ORDERS = ("fair", "priority", "fifo")


@dataclass(frozen=True)
class Policy:
    """The scheduler's knobs (docs/scheduler.md). Keys of `weights` and `max_gpus`: a user's
    name, `team:NAME`, or `user:*` / `team:*` for every user or team not named."""

    order: str = "fair"
    weights: Mapping[str, float] = field(default_factory=dict)
    max_gpus: Mapping[str, int] = field(default_factory=dict)
    reserve: bool = True  # backfill only where it does not delay the head's reservation
    reservations: int = 4  # how many blocked regular sessions get one, on distinct nodes (the first may preempt)
    preempt: bool = True  # stop preemptible sessions for regular ones that do not fit
    place_by_end: bool = True  # of the nodes that fit, the one whose release time a session extends least, then the fullest

    def weight(self, key: str) -> float:
        if key.startswith("team:~"):  # a user in no team is a team of one, weighted as that user
            return self.weight(key[6:])
        w = self.weights.get(key, self.weights.get("team:*" if key.startswith("team:") else "user:*", 1.0))
        return w if w > 0 else 1e-9

    def quota(self, key: str) -> int | None:
        if key.startswith("team:~"):
            return None  # the user's own quota already applies
        return self.max_gpus.get(key, self.max_gpus.get("team:*" if key.startswith("team:") else "user:*"))


DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class Decision:
    session: Session
    node: str
    gpu_ids: tuple[int, ...]
    time_limit: float | None = None  # set when credits give the session a limit it did not ask for


@dataclass(frozen=True)
class Waiting:
    session: Session
    position: int  # 1 for the next to start, in queue order
    reason: str  # "waiting for 2 GPUs; 3 ahead of you; alice holds 4"


@dataclass
class Plan:
    starts: list[Decision] = field(default_factory=list)
    waiting: list[Waiting] = field(default_factory=list)
    preempt: list[Session] = field(default_factory=list)  # running preemptible sessions to pause and requeue
    reservation: tuple[Session, str, float] | None = None  # (session, node, time) promised to the head
    reservations: list[tuple[Session, str, float]] = field(default_factory=list)  # the head's, then the next ones'
    shares: dict[str, float] = field(default_factory=dict)  # each holder's weighted dominant share after the pass


def standing(running: Sequence[Session], queued: Sequence[Session], nodes: Sequence[Node],
             policy: Policy = DEFAULT_POLICY) -> list[dict]:
    """Each user's and team's place in fair share now: weighted dominant share of what it holds,
    its weight, GPUs held and quota, sessions waiting; lowest share (next served) first."""
    shares = _Shares(nodes, policy)
    for s in running:
        shares.add(s)
    waiting: dict[str, int] = {}
    for s in queued:
        for key in (s.owner, team_of(s)):
            waiting[key] = waiting.get(key, 0) + 1
    keys = [k for k in {*shares.held, *waiting} if not k.startswith("team:~")]
    rows = [{"holder": k, "share": shares.share(k), "weight": policy.weight(k), "gpus": shares.gpus(k),
             "max_gpus": policy.quota(k), "queued": waiting.get(k, 0)} for k in keys]
    return sorted(rows, key=lambda r: (r["holder"].startswith("team:"), r["share"], r["holder"]))


def queue_order(queued: Sequence[Session]) -> list[Session]:
    """Part 1's order: priority, then first come first served."""
    return sorted(queued, key=lambda s: (-s.priority, s.created, s.id))


def gpu_ids_of(session: Session) -> tuple[int, ...]:
    return _parse_gpu_ids(session.gpu_ids)


@functools.lru_cache(maxsize=4096)
def _parse_gpu_ids(text: str) -> tuple[int, ...]:  # cached: reservations read every running session's
    return tuple(int(g) for g in text.split(",") if g.strip().isdigit())


def team_of(s: Session) -> str:
    """The holder a session is charged to above its owner: its team, or the owner alone."""
    return _team_key(s.team, s.owner)


@functools.lru_cache(maxsize=4096)
def _team_key(team: str, owner: str) -> str:  # cached: a pass asks it for every queued session
    return f"team:{team}" if team else f"team:~{owner}"


def declared_end(s: Session, started: float | None = None) -> float:
    """When a running session (or one started at `started`) will have ended at the latest, by
    its declared limit (inf: never said)."""
    return ((s.started or 0.0) if started is None else started) + s.time_limit if s.time_limit else math.inf


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


class _Shares:
    """Held resources per holder (users and teams) and their weighted dominant shares."""

    def __init__(self, nodes: Sequence[Node], policy: Policy):
        self.policy = policy
        self.total = (sum(len(n.gpus) for n in nodes) or 1, sum(n.cpus for n in nodes) or 1.0, sum(n.memory for n in nodes) or 1)
        self.held: dict[str, list[float]] = {}  # key -> [gpus, cpus, memory]
        self._share: dict[str, float] = {}  # computed shares, until the holder's next start

    def add(self, s: Session) -> None:
        r = s.resources
        for key in (s.owner, team_of(s)):
            h = self.held.setdefault(key, [0, 0.0, 0])
            h[0] += r.gpus
            h[1] += r.cpus
            h[2] += r.memory
            self._share.pop(key, None)

    def gpus(self, key: str) -> int:
        return int(self.held.get(key, (0,))[0])

    def share(self, key: str) -> float:
        found = self._share.get(key)
        if found is None:
            h = self.held.get(key)
            dominant = max(h[0] / self.total[0], h[1] / self.total[1], h[2] / self.total[2]) if h else 0.0
            found = self._share[key] = dominant / self.policy.weight(key)
        return found

    def key_of(self, s: Session) -> tuple:
        # Preemptible sessions after every regular one, whatever their priority (otherwise one
        # preempted for a regular head is queued again ahead of it and takes its GPUs back:
        # bench/scheduler.py --trace measured thousands of preemptions of a few sessions), but
        # for those within their team's and owner's fair share: those are owed their GPUs as
        # much as a regular session (bench --trace: Jain 0.890 -> 0.934), and no regular session
        # preempts what a team holds within its share (`spare`), so no take-back loop either.
        # Low priority, likewise, marks what a holder asks for beyond its fair share: within it a
        # low-priority session queues at normal priority (after its owner's own normal ones, by
        # the last -priority), so a user or team that chose `low` for some work is not starved
        # of the share it is owed while others' normal work beyond theirs goes first (bench
        # --trace: Jain 0.934 -> 0.979). High priority (admins only) stays ahead of everything.
        within = self.within(s) if s.preemptible or s.priority < 0 else True
        spare = s.preemptible and not within
        rank = max(s.priority, 0) if within else s.priority
        return (spare, -rank, self.share(team_of(s)), self.share(s.owner), -s.priority, s.created, s.id)

    def set_levels(self, running: Sequence[Session], queued: Sequence[Session]) -> None:
        """The fair share of each team and user wanting resources now: every active team's
        weighted share equal (1 / the active teams' weights), a team's split among its active
        users by their weights. A lower bound: teams that want less leave more to the others."""
        users: dict[str, set[str]] = {}
        for s in (*running, *queued):
            users.setdefault(team_of(s), set()).add(s.owner)
        self.level = 1.0 / (sum(self.policy.weight(t) for t in users) or 1.0)
        self.user_level = {u: self.level * self.policy.weight(t) / sum(self.policy.weight(v) for v in mates)
                           for t, mates in users.items() for u in mates}

    def share_with(self, key: str, r: Resources, sign: int = 1) -> float:
        h = self.held.get(key, (0, 0.0, 0))
        g, c, m = h[0] + sign * r.gpus, h[1] + sign * r.cpus, h[2] + sign * r.memory
        return max(g / self.total[0], c / self.total[1], m / self.total[2]) / self.policy.weight(key)

    def within(self, s: Session) -> bool:
        """Whether starting `s` keeps its team and its owner within their fair shares."""
        return (self.share_with(team_of(s), s.resources) <= self.level + 1e-9
                and self.share_with(s.owner, s.resources) <= self.user_level.get(s.owner, 0.0) + 1e-9)

    def spare(self, running: Sequence[Session]) -> set[int]:
        """The running preemptible sessions a regular one may preempt: those its team holds beyond
        its fair share, the youngest first, while the team is above it. Queued again, such a
        session is beyond its team's share too, so it queues after the regular one it made way
        for instead of taking its GPUs back."""
        out, removed = set(), {}
        for s in sorted((s for s in running if s.preemptible), key=lambda s: -(s.started or 0.0)):
            team = team_of(s)
            gone = removed.get(team, Resources())
            if self.share_with(team, gone, -1) > self.level + 1e-9:
                out.add(s.id)
                removed[team] = Resources(gone.cpus + s.resources.cpus, gone.memory + s.resources.memory, gone.gpus + s.resources.gpus)
        return out


class _Reservation:
    """The head's promise: `node` at `at`, and what that node may still give away meanwhile
    (`extra`: what will be free at `at` beyond the head's request)."""

    def __init__(self, session: Session, node: str, at: float, extra: list[float]):
        self.session, self.node, self.at, self.extra = session, node, at, extra  # extra: [gpus, cpus, memory]

    def allows(self, s: Session, node: str, now: float) -> bool:
        if node != self.node:
            return True
        if s.time_limit and now + s.time_limit <= self.at:
            return True  # gone, by its own declared limit, before the head starts
        r = s.resources
        return r.gpus <= self.extra[0] and r.cpus <= self.extra[1] + 1e-9 and r.memory <= self.extra[2]

    def take(self, s: Session, node: str, now: float) -> None:
        if node == self.node and not (s.time_limit and now + s.time_limit <= self.at):
            self.extra[0] -= s.resources.gpus
            self.extra[1] -= s.resources.cpus
            self.extra[2] -= s.resources.memory


def place(queued: Sequence[Session], running: Sequence[Session], nodes: Sequence[Node], explain: bool = True,
          policy: Policy = DEFAULT_POLICY, now: float = 0.0, credit: Mapping[str, float] | None = None) -> Plan:
    """The sessions to start now (with node and device ids), the preemptible ones to stop for
    the head of the queue, and, with `explain`, every other queued session's position and
    reason. Running sessions hold what they were given; one with no node recorded (before nodes
    existed) is on the first node. `credit`: GPU-seconds left per user or team that has a
    budget (absent: unlimited). `now`: the time, for reservations by declared time limits."""
    free = {n.name: _Free(n) for n in nodes}
    first = nodes[0].name if nodes else ""
    shares = _Shares(nodes, policy)
    by_node: dict[str, list[Session]] = {}
    release: dict[str, float] = {}  # node -> when its sessions will all have ended, by their declared limits
    for s in running:
        spot = free.get(s.node or first)
        if spot is not None:
            spot.take(s.resources, gpu_ids_of(s))
            by_node.setdefault(spot.node.name, []).append(s)
            if policy.place_by_end:
                release[spot.node.name] = max(release.get(spot.node.name, 0.0), declared_end(s))
        shares.add(s)
    shares.set_levels(running, queued)
    spare = shares.spare(running) if policy.preempt else set()
    budget = dict(credit or {})
    plan = Plan()
    most = _most_free(free.values())
    # Within one pass free space only shrinks: a shape that did not fit once will not fit again.
    failed: set[tuple] = set()
    waiting: list[tuple[Session, str]] = []  # (session, why) in queue order
    reservations: list[_Reservation] = []
    # Running sessions already being paused or preempted promise their resources to the head.
    leaving = {s.id for s in running if s.pause_requested}
    tries = 0  # reservations tried this pass: at most policy.reservations, so a pass stays one pass
    defragged = False  # one defragmentation try a pass, for the first preemptible session that does not fit
    for s in _fair_order(queued, shares, policy):
        r = s.resources
        held_back = (_over_quota(s, shares, policy) if policy.max_gpus else "") or (_over_credit(s, budget) if budget else "")
        if held_back:
            waiting.append((s, held_back))
            continue
        shape = (r.cpus, r.memory, r.gpus, s.gpu_model)
        choice, fits = None, False
        if shape not in failed and r.gpus <= most.gpus and r.cpus <= most.cpus + 1e-9 and r.memory <= most.memory:
            choice, fits = _best_fit(free.values(), r, s.gpu_model, s, reservations, now,
                                     release if policy.place_by_end else None)
        if choice is None:
            if not fits:  # (a fit refused only for the reservation may suit another session's time limit)
                failed.add(shape)
            waiting.append((s, ""))
            if policy.reserve and not s.preemptible and tries < policy.reservations:
                tries += 1
                got = _reserve(s, free, by_node, leaving, now, policy, plan, taken={x.node for x in reservations},
                               spare=spare if not reservations else set())
                if got is not None:
                    reservations.append(got)
            elif s.preemptible and policy.reserve and policy.preempt and not reservations and not defragged:
                defragged = True  # once a pass: one more try made things worse (bench --trace)
                got = _defragment(s, free, by_node, leaving, now, plan)
                if got is not None:
                    reservations.append(got)
            continue
        spot, gpu_ids = choice
        spot.take(r, gpu_ids)
        if policy.place_by_end:
            release[spot.node.name] = max(release.get(spot.node.name, 0.0), declared_end(s, started=now))
        for reserved in reservations:
            reserved.take(s, spot.node.name, now)
        limit = _credit_limit(s, budget)
        plan.starts.append(Decision(s, spot.node.name, tuple(gpu_ids), limit))
        shares.add(s)
        most = _most_free(free.values())
    plan.reservations = [(x.session, x.node, x.at) for x in reservations]
    plan.reservation = plan.reservations[0] if plan.reservations else None
    plan.shares = {k: shares.share(k) for k in shares.held}
    if explain:
        why = _Reasons(list(free.values()), shares, plan, now)
        plan.waiting = [Waiting(s, i + 1, held or why.of(s, i)) for i, (s, held) in enumerate(waiting)]
    return plan


def _fair_order(queued: Sequence[Session], shares: _Shares, policy: Policy):
    """The queue in the policy's order, computed as sessions start (a start raises its
    holders' shares): a heap of each user's oldest waiting session, keyed by priority, team
    share, user share, age. Keys only grow during a pass, so a stale key is refreshed on pop."""
    if policy.order == "fifo":
        yield from sorted(queued, key=lambda s: (s.created, s.id))
        return
    if policy.order == "priority":
        yield from queue_order(queued)
        return
    per_user: dict[tuple[bool, int, str], list[Session]] = {}
    for s in sorted(queued, key=lambda s: (s.created, s.id), reverse=True):  # popped from the end: oldest first
        per_user.setdefault((s.preemptible, s.priority, s.owner), []).append(s)
    heap = [(shares.key_of(line[-1]), user) for user, line in per_user.items()]
    heapq.heapify(heap)
    while heap:
        key, user = heapq.heappop(heap)
        line = per_user[user]
        current = shares.key_of(line[-1])
        if current != key:  # its holders' shares grew since it was pushed
            heapq.heappush(heap, (current, user))
            continue
        yield line.pop()
        if line:
            heapq.heappush(heap, (shares.key_of(line[-1]), user))


def _over_quota(s: Session, shares: _Shares, policy: Policy) -> str:
    if not s.resources.gpus:
        return ""
    for key in (s.owner, team_of(s)):
        quota = policy.quota(key)
        if quota is not None and shares.gpus(key) + s.resources.gpus > quota:
            who = f"team {key[5:]}" if not key.startswith("team:~") and key.startswith("team:") else s.owner
            return f"over {who}'s GPU quota ({shares.gpus(key)} of {quota} in use, this asks for {s.resources.gpus})"
    return ""


def _over_credit(s: Session, budget: dict[str, float]) -> str:
    if not s.resources.gpus:
        return ""
    for key in (s.owner, team_of(s)):
        left = budget.get(key)
        if left is None:
            continue
        who = s.owner if key == s.owner else f"team {key[5:]}"
        if left < 60 * s.resources.gpus:  # not one GPU-minute each
            return f"no GPU credit left for {who} ({left / 60:.0f} credits; 1 credit = 1 GPU-minute; nsml credit)"
        if s.time_limit and s.resources.gpus * s.time_limit > left + 1e-6:
            return (f"{who}'s GPU credit ({left / 60:.0f}) does not cover this session's "
                    f"{s.resources.gpus * s.time_limit / 60:.0f} GPU-minutes (its time limit); nsml credit")
    return ""


def _credit_limit(s: Session, budget: dict[str, float]) -> float | None:
    """Charge the session's GPU time to its budgets; the limit credits impose on it (None: none)."""
    keys = [k for k in (s.owner, team_of(s)) if k in budget]
    if not keys or not s.resources.gpus:
        return None
    affordable = min(budget[k] for k in keys) / s.resources.gpus
    limit = s.time_limit if s.time_limit else affordable
    for k in keys:
        budget[k] -= s.resources.gpus * limit
    return None if s.time_limit else limit


def _reserve(head: Session, free: dict[str, _Free], by_node: dict[str, list[Session]], leaving: set[int],
             now: float, policy: Policy, plan: Plan, taken: set[str], spare: set[int]) -> "_Reservation | None":
    """The earliest (node, time), on a node no other reservation has, at which the session's
    request will be free by declared time limits; the preemptible sessions in `spare` count as
    gone, and the ones in the way are put in plan.preempt. None when no time can be promised."""
    r, best = head.resources, None
    for name, spot in free.items():
        if name in taken:
            continue
        node = spot.node
        if r.gpus > _matching_count(head.gpu_model, node) or r.cpus > node.cpus + 1e-9 or r.memory > node.memory:
            continue
        have = [len(spot.matching(head.gpu_model)), spot.cpus, spot.memory]
        for s in by_node.get(name, []):
            if s.id in leaving:
                _give(have, s, head.gpu_model, node)
        soon = list(have)  # free once the sessions already leaving have gone
        victims, ends = [], []
        for s in by_node.get(name, []):
            if s.id in leaving:
                continue
            if s.id in spare:
                victims.append(s)
                _give(have, s, head.gpu_model, node)
            else:
                ends.append((declared_end(s), s))
        at = now
        if not _covers(have, r):
            at = math.inf
            for end, s in sorted(ends, key=lambda e: e[0]):
                if end == math.inf:
                    break
                _give(have, s, head.gpu_model, node)
                if _covers(have, r):
                    at = end
                    break
        if at == math.inf:
            continue
        victims = _fewest_victims(victims, r, soon, head.gpu_model, node) if at == now else []
        key = (at, sum(v.resources.gpus for v in victims), len(spot.gpus))
        if best is None or key < best[0]:
            best = (key, name, at, have, victims)
    if best is None:
        return None
    _, name, at, have, victims = best
    plan.preempt.extend(victims)
    return _Reservation(head, name, at, [have[0] - r.gpus, have[1] - r.cpus, have[2] - r.memory])


def _defragment(head: Session, free: dict[str, _Free], by_node: dict[str, list[Session]], leaving: set[int],
                now: float, plan: Plan) -> "_Reservation | None":
    """Make a node free for a preemptible session that fits nowhere by moving preemptible
    sessions out of it: only ones that fit right now in what other nodes have free, so the moved
    lose the work since their last checkpoint but wait for nothing (only ones whose script can
    pause: the others would be stopped, not queued again), and the GPUs they leave
    become one block. Without it, long regular sessions scattered one or two to a node keep
    every node from being whole while 8-GPU requests wait (the end of bench --trace's backlog:
    hundreds of GPUs idle for days). The node needing the fewest GPUs moved wins; it is
    reserved for the session now, so no later session in the queue takes it meanwhile (regular
    ones come earlier in the queue and still may)."""
    r, best = head.resources, None
    for name, spot in free.items():
        node = spot.node
        if r.gpus > _matching_count(head.gpu_model, node) or r.cpus > node.cpus + 1e-9 or r.memory > node.memory:
            continue
        have = [len(spot.matching(head.gpu_model)), spot.cpus, spot.memory]
        movable = []
        for s in by_node.get(name, []):
            if s.id in leaving:
                _give(have, s, head.gpu_model, node)
            elif s.preemptible and s.pausable:  # one that cannot pause would be stopped, not moved
                movable.append(s)
        if sum(s.resources.gpus for s in movable) + have[0] < r.gpus:
            continue
        victims = _fewest_victims(movable, r, list(have), head.gpu_model, node)
        moved = sum(v.resources.gpus for v in victims)
        if best is not None and moved >= best[0]:
            continue
        after = list(have)
        for v in victims:
            _give(after, v, head.gpu_model, node)
        if not _covers(after, r) or not _refit(victims, [f for n, f in free.items() if n != name]):
            continue
        best = (moved, name, after, victims)
    if best is None:
        return None
    _, name, have, victims = best
    plan.preempt.extend(victims)
    return _Reservation(head, name, now, [have[0] - r.gpus, have[1] - r.cpus, have[2] - r.memory])


def _refit(sessions: list[Session], spots: list[_Free]) -> bool:
    """Whether all of `sessions` fit at once in what `spots` have free, each on the fullest
    spot that fits, biggest first (a node of mixed models is counted as if each took its own)."""
    taken = {id(f): [0, 0.0, 0] for f in spots}  # GPUs, CPUs, memory given out by this check
    for s in sorted(sessions, key=lambda s: -s.resources.gpus):
        r, best, best_left = s.resources, None, None
        for f in spots:
            t = taken[id(f)]
            left = len(f.matching(s.gpu_model) if s.gpu_model else f.gpus) - t[0]
            if left >= r.gpus and f.cpus - t[1] + 1e-9 >= r.cpus and f.memory - t[2] >= r.memory and \
                    (best_left is None or left < best_left):
                best, best_left = t, left
        if best is None:
            return False
        best[0] += r.gpus
        best[1] += r.cpus
        best[2] += r.memory
    return True


def _give(have: list[float], s: Session, model: str, node: Node) -> None:
    """Add what a running session holds to `have` (GPUs only where they match the model)."""
    if model:
        models = {g.index: g.model for g in node.gpus}
        have[0] += sum(1 for g in gpu_ids_of(s) if model_matches(model, models.get(g, "")))
    else:
        have[0] += len(gpu_ids_of(s))
    have[1] += s.resources.cpus
    have[2] += s.resources.memory


def _matching_count(model: str, node: Node) -> int:
    return sum(model_matches(model, g.model) for g in node.gpus) if model else len(node.gpus)


def _covers(have: list[float], r: Resources) -> bool:
    return have[0] >= r.gpus and have[1] + 1e-9 >= r.cpus and have[2] >= r.memory


def _fewest_victims(candidates: list[Session], r: Resources, soon: list[float], model: str, node: Node) -> list[Session]:
    """The preemptible sessions to stop on this node so `r` fits in what will be free (`soon`):
    the youngest first (the least work lost), only as many as needed."""
    have = list(soon)
    chosen = []
    for s in sorted(candidates, key=lambda s: -(s.started or 0.0)):
        if _covers(have, r):
            break
        chosen.append(s)
        _give(have, s, model, node)
    return chosen


def _most_free(spots) -> Resources:
    spots = list(spots)
    if not spots:
        return Resources()
    return Resources(max(f.cpus for f in spots), max(f.memory for f in spots), max(len(f.gpus) for f in spots))


def _best_fit(spots, r: Resources, model: str, s: Session, reservations: "list[_Reservation]", now: float,
              release: Mapping[str, float] | None):
    """((spot, gpu ids) of the node that fits, the reservations allow, and whose release time
    the session extends least, then the fullest; or None; whether any node fits at all).

    The release time is when a node's sessions will all have ended by their declared limits:
    a session that ends (by its own limit) before the node's others adds nothing to it, and one
    without a limit goes where another without a limit already keeps the node from being whole.
    Packing by free GPUs alone scattered long sessions one or two a node, so that at the end of
    a backlog no node came free for 8-GPU requests for days (bench --trace: utilisation under
    backlog 89.7 -> 94.5 %). `release` None: the fullest alone (`place_by_end: false`)."""
    best, best_key, fits = None, None, False
    end = declared_end(s, started=now)
    extends = 0.0
    for spot in spots:
        gpu_ids = spot.fits(r, model)
        if gpu_ids is None:
            continue
        fits = True
        if any(not x.allows(s, spot.node.name, now) for x in reservations):
            continue
        if release is not None:
            held_until = release.get(spot.node.name, 0.0)
            if end <= held_until:
                extends = 0.0
            elif end == math.inf:
                extends = math.inf
            else:
                extends = end - max(held_until, now)
        key = (extends, len(spot.gpus) - r.gpus, spot.cpus - r.cpus)
        if best_key is None or key < best_key:
            best, best_key = (spot, gpu_ids), key
    return best, fits


class _Reasons:
    """Why a session waits, from what is left once this pass's starts are taken (summaries
    computed once per pass, not once per waiting session)."""

    def __init__(self, spots: list[_Free], shares: _Shares, plan: Plan, now: float):
        self.spots = spots
        self.now = now
        self.most = _most_free(spots)
        self.plan = plan
        self._gpus_by_model: dict[str, int] = {"": self.most.gpus}
        holders = {k: shares.gpus(k) for k in shares.held if not k.startswith("team:")}
        top = sorted(((n, o) for o, n in holders.items() if n), reverse=True)[:3]
        self.holders = ", ".join(f"{o} holds {n}" for n, o in top)

    def free_gpus(self, model: str) -> int:
        if model not in self._gpus_by_model:
            self._gpus_by_model[model] = max((len(f.matching(model)) for f in self.spots), default=0)
        return self._gpus_by_model[model]

    def of(self, s: Session, ahead: int) -> str:
        r = s.resources
        model = f" {s.gpu_model}" if s.gpu_model else ""
        mine = next((x for x in self.plan.reservations if x[0].id == s.id), None)
        reserved = self.plan.reservation
        if mine:
            reserved = mine
            wait = reserved[2] - self.now
            when = "once the sessions being preempted have checkpointed" if wait <= 0 else \
                f"free in {format_duration(wait)} at the latest, by the running sessions' time limits"
            first = self.plan.reservation is mine
            need = f"{'next to start: ' if first else ''}{r.describe()} reserved {'' if first else 'for it '}on {reserved[1]}, {when}"
        elif r.gpus and self.free_gpus(s.gpu_model) < r.gpus:
            need = (f"waiting for {r.gpus}{model} GPU{'s' if r.gpus != 1 else ''} on one node "
                    f"(at most {self.free_gpus(s.gpu_model)} free)")
        elif r.cpus > self.most.cpus + 1e-9:
            need = f"waiting for {r.cpus:g} CPUs (at most {self.most.cpus:g} free on a node)"
        elif r.memory > self.most.memory:
            need = f"waiting for {format_size(r.memory)} of memory (at most {format_size(self.most.memory)} free on a node)"
        elif reserved:
            need = (f"it would delay {reserved[0].name}'s reservation on {reserved[1]}"
                    + ("" if s.time_limit else " (a session without --time-limit is never backfilled past one)"))
        else:  # each part is free somewhere, never all on one node
            need = f"waiting for {r.describe()} together on one node"
        parts = [need, f"{ahead} ahead of you"]
        if r.gpus and self.holders:
            parts.append(self.holders)
        return "; ".join(parts)
