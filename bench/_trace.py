"""A synthetic GPU-cluster trace and an event-driven simulation of it through the real placement
code (nsml.scheduler.placement.place), for bench/scheduler.py --trace (issue 15's benchmark).

The trace (seeded, so every run of one seed sees the same jobs):
- 20 users in 5 teams; team weights 3, 2, 2, 1, 1 and user weights 1, 2, 1, 3 within each
  team, so a user is entitled to (its team's weight share) x (its weight share in the team):
  from 1.6 % of the cluster (8 GPUs) to 14 % (73 GPUs).
- Jobs come in bursts (a sweep: one user, one size, one preemptible flag, durations around
  one base), burst sizes geometric with mean 4, seconds apart. Burst times
  follow a diurnal Poisson process (rate 1 +- 0.5 over a day) spread so that the offered GPU
  time is `load` x the cluster over the arrival span.
- Sizes 1, 2, 4, 8 GPUs (55, 15, 15, 15 %), with 8 CPUs and 96G per GPU on nodes of 8 GPUs,
  96 CPUs and 1 TiB: GPUs are the bottleneck, never CPUs or memory.
- True durations are heavy-tailed like Philly's and Helios's (most jobs short, a tail of
  multi-hour and multi-day ones): a burst's base is lognormal with median 30 min and sigma 1.8
  (mean ~2-3 h, p99 ~30-40 h), each job that times lognormal(0, 0.3), within 1 min .. 5 days.
- Demand follows shares: the GPU-hours a user submits are its entitlement times a
  lognormal(0, 0.5) factor (bursts are dealt out, largest first, to the user furthest below
  that), so some users ask for more than their share and some for less. With demand unrelated
  to shares, the heavy-weight users would rarely want their share, and fairness between users
  that want more (the case fair share is for) could not be measured.
- Declared time limits over-estimate as people do: the true duration x U(1.5, 5), rounded up
  to a whole hour; 4 of the 20 users never declare one.
- Priority per session: 10 % high, 10 % low; 20 % of bursts are preemptible.

The simulation advances from event to event (an arrival, a completion, the end of a
preempted session's grace period) and calls place() at each event time with the queue and the
running sessions, as the scheduler loop does every 0.2 s: place() is pure, so nothing changes
between events. The policy sees sessions as the store holds them (declared limits, never the
true durations, which stay in this module's tables).
"""

import heapq
import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace

from nsml.core.entities import Session
from nsml.core.inventory import GpuDevice, Node
from nsml.core.resources import Resources
from nsml.core.states import PauseRequest, Status
from nsml.scheduler.placement import Policy, gpu_ids_of, place

G = 1 << 30
HOUR = 3600.0
DAY = 24 * HOUR
T0 = 1_700_000_000.0  # simulated clock start (an epoch time, as `created` and `started` are)
SIZES, SIZE_WEIGHTS = (1, 2, 4, 8), (55, 15, 15, 15)
CPUS_PER_GPU, MEMORY_PER_GPU = 8.0, 96 * G
NODE_GPUS, NODE_CPUS, NODE_MEMORY = 8, 96.0, 1024 * G
TEAM_WEIGHTS = (3.0, 2.0, 2.0, 1.0, 1.0)
USER_WEIGHTS = (1.0, 2.0, 1.0, 3.0)  # within each team, cycled


@dataclass(frozen=True)
class Job:
    id: int
    user: str
    team: str
    submit: float  # seconds after the trace's start
    gpus: int
    duration: float  # true run time in seconds: never shown to the policy
    time_limit: float | None  # what the user declared
    priority: int
    preemptible: bool


@dataclass
class Trace:
    jobs: list[Job]
    weights: dict[str, float]  # user -> weight, "team:NAME" -> weight (Policy's keys)
    team_of: dict[str, str]  # user -> team
    nodes: list[Node]

    def entitled(self, user: str) -> float:
        """A user's share of the cluster when every user wants more than its share."""
        team = self.team_of[user]
        teams = set(self.team_of.values())
        mates = [u for u, t in self.team_of.items() if t == team]
        return (self.weights[f"team:{team}"] / sum(self.weights[f"team:{t}"] for t in teams)
                * self.weights[user] / sum(self.weights[u] for u in mates))


def make_trace(sessions: int = 10_000, gpus: int = 512, users: int = 20, seed: int = 1, load: float = 1.1) -> Trace:
    rng = random.Random(seed)
    nodes = [Node(f"node-{i:02d}", NODE_CPUS, NODE_MEMORY, tuple(GpuDevice(g, "NVIDIA A100-SXM4-80GB", 80 * G)
                                                                    for g in range(NODE_GPUS)))
             for i in range(gpus // NODE_GPUS)]
    teams = [f"t{i + 1}" for i in range(min(5, users))]
    names = [f"u{i + 1:02d}" for i in range(users)]
    team_of = {u: teams[i % len(teams)] for i, u in enumerate(names)}
    weights = {f"team:{t}": TEAM_WEIGHTS[i % len(TEAM_WEIGHTS)] for i, t in enumerate(teams)}
    for i, u in enumerate(names):
        weights[u] = USER_WEIGHTS[(i // len(teams)) % len(USER_WEIGHTS)]
    trace = Trace([], weights, team_of, nodes)
    no_limit = set(names[3::5][:max(1, users // 5)])  # 4 of 20 users never declare a time limit
    want = {u: trace.entitled(u) * rng.lognormvariate(0, 0.5) for u in names}

    # The bursts first (what, how long), then whose, then when: the span follows from the work.
    bursts, n = [], 0
    while n < sessions:
        size = min(sessions - n, 1 + int(math.log(1 - rng.random()) / math.log(0.75)))  # geometric, mean 4
        gpus_each = rng.choices(SIZES, weights=SIZE_WEIGHTS)[0]
        base = rng.lognormvariate(math.log(30 * 60), 1.8)
        durations = [min(5 * DAY, max(60.0, base * rng.lognormvariate(0, 0.3))) for _ in range(size)]
        bursts.append((gpus_each, durations, rng.random() < 0.2))
        n += size
    work = sum(g * sum(d) for g, d, _ in bursts)
    # Whose: the largest bursts first, each to the user furthest below its target GPU-hours, so
    # that what each user asks for is close to its `want` (a random pick would let one user's
    # few multi-day sweeps be a third of all the work, and measure that user, not the policy).
    target = {u: work * w / sum(want.values()) for u, w in want.items()}
    owner = {}
    for i in sorted(range(len(bursts)), key=lambda i: -bursts[i][0] * sum(bursts[i][1])):
        user = max(names, key=lambda u: target[u])
        owner[i] = user
        target[user] -= bursts[i][0] * sum(bursts[i][1])
    order = list(range(len(bursts)))
    rng.shuffle(order)  # when does not depend on how big
    span = work / (gpus * load)
    times = sorted(_diurnal(rng, span) for _ in bursts)
    jid = 0
    for at, i in zip(times, order):
        gpus_each, durations, preemptible = bursts[i]
        user = owner[i]
        for d in durations:
            limit = None if user in no_limit else math.ceil(d * rng.uniform(1.5, 5) / HOUR) * HOUR
            priority = rng.choices([1, 0, -1], weights=[10, 80, 10])[0]
            trace.jobs.append(Job(jid, user, team_of[user], at, gpus_each, d, limit, priority, preemptible))
            at += rng.uniform(1, 3)  # a script submitting a sweep: seconds apart
            jid += 1
    trace.jobs.sort(key=lambda j: (j.submit, j.id))
    return trace


def _diurnal(rng: random.Random, span: float) -> float:
    """A time in [0, span) with density proportional to 1 + 0.5 sin(2 pi t / day) (thinning)."""
    while True:
        t = rng.uniform(0, span)
        if rng.random() * 1.5 <= 1 + 0.5 * math.sin(2 * math.pi * t / DAY):
            return t


def water_fill(capacity: float, demand: dict[str, float], weight: dict[str, float]) -> dict[str, float]:
    """Weighted max-min shares of `capacity`, nobody given more than it demands."""
    out, active, left = {}, {k for k, d in demand.items() if d > 0}, capacity
    while active:
        unit = left / sum(weight[k] for k in active)
        capped = {k for k in active if demand[k] <= unit * weight[k]}
        if not capped:
            out.update((k, unit * weight[k]) for k in active)
            break
        for k in capped:
            out[k] = demand[k]
            left -= demand[k]
        active -= capped
    return out


@dataclass
class Result:
    policy: str
    wall: float = 0.0
    passes: int = 0
    makespan: float = 0.0
    jct: list[float] = field(default_factory=list)
    wait: list[float] = field(default_factory=list)  # first start - submit
    wait_by_size: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    gpu_seconds: float = 0.0
    backlog_time: float = 0.0  # the queue holds a session
    backlog_gpu_seconds: float = 0.0
    held_back_time: float = 0.0  # backlog while some queued request would fit a node's free GPUs now
    held_back_idle: float = 0.0  # idle GPU-seconds then
    idle_by_smallest: dict[int, float] = field(default_factory=lambda: defaultdict(float))  # under backlog, by the smallest queued request
    longest: dict[int, tuple[float, str]] = field(default_factory=dict)  # size -> (longest wait, whose)
    received: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # under backlog
    entitled: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # demand-capped, under backlog
    all_time: float = 0.0  # every user has a session queued
    all_received: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    preemptions: int = 0
    preempted_jobs: int = 0
    most_preemptions: int = 0
    lost_gpu_seconds: float = 0.0
    grace_gpu_seconds: float = 0.0
    reserved: int = 0  # sessions ever promised a reservation
    kept: int = 0  # of those, started by their first promised time (+ the grace period)
    late: list[float] = field(default_factory=list)  # seconds past the first promise, when late
    second_pass_starts: int = 0
    preempted_for: list[tuple[float, int]] = field(default_factory=list)  # (when, the head it was for)
    served: int = 0  # preemptions whose head started by the end of the grace period

    def jain(self, x: list[float]) -> float:
        return sum(x) ** 2 / (len(x) * sum(v * v for v in x)) if x and any(x) else float("nan")


class Simulation:
    """One policy over one trace. `strict`: no backfill at all (start in order, stop at the
    first session that does not fit), the textbook FIFO baseline; done by cutting place()'s
    starts at the first queued session it did not start, which leaves the earlier placements
    as they were (each depends only on the sessions before it)."""

    def __init__(self, trace: Trace, policy: Policy, label: str, strict: bool = False,
                 grace: float = 60.0, checkpoint: float = 600.0, check=None):
        self.trace, self.policy, self.strict = trace, policy, strict
        self.grace, self.checkpoint = grace, checkpoint
        self.check = check or (lambda ok, what: ok)
        self.r = Result(label)
        self.queued: dict[int, Session] = {}
        self.running: dict[int, Session] = {}
        self.remaining: dict[int, float] = {}  # true run time left at the last (re)start
        self.first_start: dict[int, float] = {}
        self.preempted: dict[int, int] = defaultdict(int)
        self.promised: dict[int, float] = {}
        self.done = 0
        self.events: list[tuple] = []  # (time, kind order, seq, kind, id, attempt)
        self.seq = 0
        self.jobs = {j.id: j for j in trace.jobs}
        # The independent ledger the invariants are checked against.
        self.gpu_holder: dict[tuple[str, int], int] = {}
        self.node_used = {n.name: [0.0, 0, 0] for n in trace.nodes}  # CPUs, memory, GPUs
        self.node = {n.name: n for n in trace.nodes}
        self.user_held: dict[str, int] = defaultdict(int)
        self.user_queued: dict[str, int] = defaultdict(int)  # GPUs queued
        self.user_queued_n: dict[str, int] = defaultdict(int)
        self.queued_by_size: dict[int, int] = defaultdict(int)
        self.held = 0

    def push(self, t: float, kind: str, sid: int, attempt: int = 0) -> None:
        order = {"end": 0, "stop": 1, "arrive": 2}[kind]  # at one instant: releases before arrivals
        heapq.heappush(self.events, (t, order, self.seq, kind, sid, attempt))
        self.seq += 1

    def run(self) -> Result:
        t_wall = time.perf_counter()
        for j in self.trace.jobs:
            self.push(T0 + j.submit, "arrive", j.id)
        now = T0
        while self.events:
            t = self.events[0][0]
            self.account(now, t)
            now = t
            while self.events and self.events[0][0] == t:
                _, _, _, kind, sid, attempt = heapq.heappop(self.events)
                getattr(self, kind)(sid, attempt, t)
            self.schedule(t)
        r = self.r
        r.makespan = now - T0
        r.served = sum(1 for at, head in r.preempted_for if self.first_start.get(head, math.inf) <= at + self.grace + 1)
        r.wall = time.perf_counter() - t_wall
        self.check(self.done == len(self.jobs), f"{r.policy}: {self.done} of {len(self.jobs)} jobs finished "
                   f"({len(self.queued)} still queued, {len(self.running)} running)")
        self.check(not self.gpu_holder and self.held == 0, f"{r.policy}: GPUs still held at the end")
        return r

    # -- events -----------------------------------------------------------------------------
    def arrive(self, sid: int, _attempt: int, t: float) -> None:
        j = self.jobs[sid]
        s = Session(id=j.id, owner=j.user, dataset="trace", number=j.id, entry="main.py", args="",
                       status=Status.QUEUED, resources=Resources(CPUS_PER_GPU * j.gpus, MEMORY_PER_GPU * j.gpus, j.gpus),
                       created=t, team=j.team, priority=j.priority, time_limit=j.time_limit, preemptible=j.preemptible)
        self.enqueue(s)
        self.remaining[sid] = j.duration

    def end(self, sid: int, attempt: int, t: float) -> None:
        s = self.running.get(sid)
        if s is None or s.attempt != attempt:
            return  # it was preempted and requeued since this end was planned
        self.check(not s.time_limit or t - s.started <= s.time_limit + 1e-6,
                   f"{s.id} ran {t - s.started:.0f} s past its declared {s.time_limit or 0:.0f} s")
        self.release(s)
        self.done += 1
        j = self.jobs[sid]
        self.r.jct.append(t - (T0 + j.submit))
        if s.pause_requested == PauseRequest.PREEMPT:  # it finished within its grace period
            self.r.grace_gpu_seconds += (t - s.pause_requested_at) * s.resources.gpus

    def stop(self, sid: int, attempt: int, t: float) -> None:
        """A preempted session's grace period is over: it stops, loses what it did since its last
        checkpoint (every `checkpoint` seconds of run time since it (re)started), and is queued
        again as the same session (same created time: its place in line), with that work to redo."""
        s = self.running.get(sid)
        if s is None or s.attempt != attempt:
            return  # it finished within its grace period
        ran = t - s.started
        lost = ran % self.checkpoint
        self.remaining[sid] -= ran - lost
        self.r.lost_gpu_seconds += lost * s.resources.gpus
        self.r.grace_gpu_seconds += (t - s.pause_requested_at) * s.resources.gpus
        self.release(s)
        self.enqueue(replace(s, status=Status.QUEUED, started=None, node="", gpu_ids="", pause_requested="",
                             pause_requested_at=None, attempt=s.attempt + 1))

    def enqueue(self, s: Session) -> None:
        self.queued[s.id] = s
        self.user_queued[s.owner] += s.resources.gpus
        self.user_queued_n[s.owner] += 1
        self.queued_by_size[s.resources.gpus] += 1

    def release(self, s: Session) -> None:
        del self.running[s.id]
        for g in gpu_ids_of(s):
            self.check(self.gpu_holder.get((s.node, g)) == s.id, f"{s.node}:{g} released by {s.id}, not its holder")
            self.gpu_holder.pop((s.node, g), None)
        used = self.node_used[s.node]
        used[0] -= s.resources.cpus
        used[1] -= s.resources.memory
        used[2] -= s.resources.gpus
        self.user_held[s.owner] -= s.resources.gpus
        self.held -= s.resources.gpus

    # -- placement --------------------------------------------------------------------------
    def schedule(self, t: float) -> None:
        """place() until it has nothing more to do at this instant. The loop's next pass would
        come 0.2 s later on the same state; without a reservation it can start nothing new (free
        space only shrinks within a pass), with one the head, and so what may backfill, can
        differ once this pass's starts are counted."""
        for attempt in range(4):
            plan = place(list(self.queued.values()), list(self.running.values()), self.trace.nodes,
                         explain=False, policy=self.policy, now=t)
            self.r.passes += 1
            starts = plan.starts
            if self.strict:
                started = {d.session.id for d in starts}
                cut = 0
                # The queue dict is in arrival order, (created, id), unless a preemption requeued
                # a session at its end: sort only then.
                line = self.queued.values() if not self.r.preemptions else sorted(self.queued.values(), key=lambda s: (s.created, s.id))
                for s in line:
                    if s.id not in started:
                        break
                    cut += 1
                starts = starts[:cut]
            if plan.reservation:
                head, _node, at = plan.reservation
                self.promised.setdefault(head.id, at)
            for d in starts:
                self.start(d, t)
            for v in plan.preempt:
                self.preempt(v, t)
                self.r.preempted_for.append((t, plan.reservation[0].id if plan.reservation else -1))
            if attempt:
                self.r.second_pass_starts += len(starts)
            if not (self.policy.reserve and (starts or plan.preempt)):
                break

    def start(self, d, t: float) -> None:
        s = self.queued.get(d.session.id)
        if not self.check(s is not None, f"{d.session.id} started but not queued"):
            return
        r, node = s.resources, self.node.get(d.node)
        ok = self.check(node is not None, f"{s.id} started on unknown node {d.node}")
        ok = ok and self.check(len(set(d.gpu_ids)) == r.gpus, f"{s.id} asked for {r.gpus} GPUs, got {d.gpu_ids}")
        ok = ok and self.check(t >= s.created, f"{s.id} started at {t - T0:.0f} before its submission {s.created - T0:.0f}")
        for g in d.gpu_ids:
            ok = ok and self.check(0 <= g < len(node.gpus) and (d.node, g) not in self.gpu_holder,
                                   f"GPU {d.node}:{g} given to {s.id} while {self.gpu_holder.get((d.node, g))} holds it")
        used = self.node_used[d.node]
        ok = ok and self.check(used[0] + r.cpus <= node.cpus + 1e-9 and used[1] + r.memory <= node.memory,
                               f"{d.node} over capacity starting {s.id}")
        if not ok:
            return
        for g in d.gpu_ids:
            self.gpu_holder[(d.node, g)] = s.id
        used[0] += r.cpus
        used[1] += r.memory
        used[2] += r.gpus
        del self.queued[s.id]
        self.user_queued[s.owner] -= r.gpus
        self.user_queued_n[s.owner] -= 1
        self.queued_by_size[r.gpus] -= 1
        self.user_held[s.owner] += r.gpus
        self.held += r.gpus
        # pausable: every preempted session is queued again here, as the server does with one
        # whose script bound a save (placement moves only those to defragment a node).
        s = replace(s, status=Status.RUNNING, started=t, node=d.node, gpu_ids=",".join(map(str, d.gpu_ids)), pausable=True)
        self.running[s.id] = s
        self.push(t + self.remaining[s.id], "end", s.id, s.attempt)
        if s.id not in self.first_start:
            self.first_start[s.id] = t
            wait = t - s.created
            self.r.wait.append(wait)
            self.r.wait_by_size[r.gpus].append(wait)
            if wait > self.r.longest.get(r.gpus, (-1.0, ""))[0]:
                self.r.longest[r.gpus] = (wait, s.owner)
        if s.id in self.promised:
            promised = self.promised.pop(s.id)
            self.r.reserved += 1
            if t <= promised + self.grace + 1:
                self.r.kept += 1
            else:
                self.r.late.append(t - promised)

    def preempt(self, v: Session, t: float) -> None:
        s = self.running.get(v.id)
        if not self.check(s is not None and s.preemptible and not s.pause_requested,
                          f"preempting {v.id}: not a running preemptible session, or already leaving"):
            return
        self.running[s.id] = replace(s, pause_requested=PauseRequest.PREEMPT, pause_requested_at=t)
        self.push(t + self.grace, "stop", s.id, s.attempt)
        self.preempted[s.id] += 1
        self.r.preemptions += 1
        self.r.preempted_jobs = len(self.preempted)
        self.r.most_preemptions = max(self.r.most_preemptions, self.preempted[s.id])

    # -- accounting ---------------------------------------------------------------------------
    def account(self, t0: float, t1: float) -> None:
        """Integrate the state that held over [t0, t1)."""
        dt = t1 - t0
        if dt <= 0:
            return
        r = self.r
        r.gpu_seconds += self.held * dt
        if not self.queued:
            return
        r.backlog_time += dt
        r.backlog_gpu_seconds += self.held * dt
        # Idle GPUs while some queued request would fit a node now: held back by the policy
        # (a reservation, a strict order), not by fragmentation.
        most = NODE_GPUS - min(used[2] for used in self.node_used.values())
        smallest = min(g for g, n in self.queued_by_size.items() if n)
        r.idle_by_smallest[smallest] += (len(self.trace.nodes) * NODE_GPUS - self.held) * dt
        if smallest <= most:
            r.held_back_time += dt
            r.held_back_idle += (len(self.trace.nodes) * NODE_GPUS - self.held) * dt
        # Fairness: what each user received against its weighted max-min share of the cluster
        # capped at what it asked for (held + queued), teams first, then users within a team.
        users = self.trace.team_of
        demand = {u: self.user_held[u] + self.user_queued[u] for u in users}
        w = self.trace.weights
        team_demand = defaultdict(float)
        for u, d in demand.items():
            team_demand[users[u]] += d
        team_share = water_fill(len(self.trace.nodes) * NODE_GPUS, team_demand, {k: w[f"team:{k}"] for k in team_demand})
        for team, share in team_share.items():
            mates = {u: demand[u] for u in users if users[u] == team}
            for u, e in water_fill(share, mates, w).items():
                r.entitled[u] += e * dt
        for u in users:
            r.received[u] += self.user_held[u] * dt
        if all(self.user_queued_n[u] for u in users):
            r.all_time += dt
            for u in users:
                r.all_received[u] += self.user_held[u] * dt


def fairness(trace: Trace, r: Result) -> tuple[float, float]:
    """Jain's index of received / entitled per user: (demand-capped over all backlog, plain
    weighted share over the time every user had a session queued)."""
    users = list(trace.team_of)
    capped = [r.received[u] / r.entitled[u] for u in users if r.entitled[u] > 0]
    plain = [r.all_received[u] / (trace.entitled(u) * r.all_time) for u in users] if r.all_time else []
    return r.jain(capped), r.jain(plain)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))] if xs else float("nan")


def summary(trace: Trace, r: Result) -> dict:
    """The figures of one run, in hours where they are times."""
    capped, plain = fairness(trace, r)
    x = {u: r.received[u] / r.entitled[u] for u in trace.team_of if r.entitled[u] > 0}
    return {
        "util": r.backlog_gpu_seconds / (len(trace.nodes) * NODE_GPUS * r.backlog_time) if r.backlog_time else float("nan"),
        "util_all": r.gpu_seconds / (len(trace.nodes) * NODE_GPUS * r.makespan),
        "backlog_h": r.backlog_time / HOUR,
        "held_back_h": r.held_back_time / HOUR,
        "held_back_idle_gpu_h": r.held_back_idle / HOUR,
        "jct_mean": sum(r.jct) / len(r.jct) / HOUR, "jct_p95": pct(r.jct, 0.95) / HOUR,
        "wait_mean": sum(r.wait) / len(r.wait) / HOUR, "wait_p95": pct(r.wait, 0.95) / HOUR,
        "wait_by_size": {g: (sum(w) / len(w) / HOUR, pct(w, 0.95) / HOUR, max(w) / HOUR)
                         for g, w in sorted(r.wait_by_size.items())},
        "jain": capped, "jain_all": plain, "all_h": r.all_time / HOUR,
        "share_lo": min(x.items(), key=lambda kv: kv[1]), "share_hi": max(x.items(), key=lambda kv: kv[1]),
        "x": x,
        "idle_by_smallest": {g: v / HOUR for g, v in sorted(r.idle_by_smallest.items())},
        "longest": {g: (w / HOUR, u) for g, (w, u) in sorted(r.longest.items())},
        "max_wait_1": max(r.wait_by_size[1], default=0) / HOUR,
        "preemptions": r.preemptions, "served": r.served, "preempted_jobs": r.preempted_jobs, "most_preemptions": r.most_preemptions,
        "lost_gpu_h": r.lost_gpu_seconds / HOUR, "grace_gpu_h": r.grace_gpu_seconds / HOUR,
        "reserved": r.reserved, "kept": r.kept, "late_median_h": pct(r.late, 0.5) / HOUR if r.late else 0.0,
        "makespan_h": r.makespan / HOUR, "passes": r.passes, "second_pass_starts": r.second_pass_starts, "wall": r.wall,
    }


def describe(trace: Trace) -> list[str]:
    """What the trace holds, for the report's header."""
    jobs = trace.jobs
    n = len(jobs)
    sizes = defaultdict(int)
    for j in jobs:
        sizes[j.gpus] += 1
    d = [j.duration for j in jobs]
    declared = [j for j in jobs if j.time_limit]
    over = sorted(j.time_limit / j.duration for j in declared)
    work = sum(j.gpus * j.duration for j in jobs)
    span = max(j.submit for j in jobs)
    gpus = len(trace.nodes) * NODE_GPUS
    return [
        "sizes " + ", ".join(f"{sizes[g] / n:.0%} x {g}" for g in sorted(sizes)) +
        f" GPUs; true durations median {pct(d, 0.5) / 60:.0f} min, mean {sum(d) / n / HOUR:.1f} h, "
        f"p99 {pct(d, 0.99) / HOUR:.0f} h, max {max(d) / HOUR:.0f} h",
        f"{work / HOUR:,.0f} GPU-hours submitted over {span / HOUR:.0f} h "
        f"(offered load {work / (gpus * span):.2f} of the cluster over that span), in bursts of a few seconds",
        f"time limits declared by {len(declared) / n:.0%} of sessions (median {pct(over, 0.5):.1f}x, "
        f"p95 {pct(over, 0.95):.1f}x the true duration); priority high {sum(j.priority > 0 for j in jobs) / n:.0%}, "
        f"low {sum(j.priority < 0 for j in jobs) / n:.0%}; preemptible {sum(j.preemptible for j in jobs) / n:.0%}",
    ]
