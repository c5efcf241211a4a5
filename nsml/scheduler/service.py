"""The scheduling loop: starts queued sessions where placement puts them, stops sessions past
their time limit, and marks sessions lost whose supervisor stopped sending heartbeats."""

import logging
import os
import secrets
import socket
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import replace

from nsml.core.accounting import Credits, credit_balance
from nsml.core.entities import Session
from nsml.core.errors import NotFound, NsmlError
from nsml.core.inventory import Node
from nsml.core.states import SessionKind, Status

from .executor import Executor
from .placement import DEFAULT_POLICY, Plan, Policy, place, team_of
from .usage import UsageSampler, zombie_gpus

log = logging.getLogger("nsml.scheduler")
RECONCILE_EVERY = 2.0
LEASE = "scheduler"
LOST = ("The session's supervisor stopped reporting (no heartbeat for {timeout:.0f} s: killed, or its machine went away); "
        "what it shipped before (logs, metrics, checkpoints) is kept. Run it again from its last checkpoint with nsml resume {name}.")
LOST_NODE = ("The session was lost: {why}. What it shipped before (logs, metrics, checkpoints) is kept; "
             "run it again from its last checkpoint, on another node, with nsml resume {name}.")
DRIVE_EVERY = 1.0  # seconds between passes of the lease holder's other work (AutoML studies)…
DRIVE_SOON = 0.1  # …or this soon after a wake (a session ended: a study's next trial need not wait)
TIME_LIMIT = "[nsml] the session reached its time limit ({limit}) and was stopped by the platform."
CREDIT_EVERY = 5.0  # seconds a computation of credit balances is reused for


def runnable(sessions: Sequence[Session]) -> list[Session]:
    """Those with a process to place and watch: not an AutoML study's parent, which runs nothing
    itself and holds nothing (its trials are ordinary sessions); it ends when its study does."""
    return [s for s in sessions if s.kind != SessionKind.AUTOML]


class Scheduler:
    def __init__(self, store, executor: Executor, nodes: Sequence[Node], interval: float = 0.2,
                 heartbeat_timeout: float = 30.0, feed=None, zombie_after: float | None = None,
                 lease_ttl: float = 5.0, holder: str | None = None, policy: Policy = DEFAULT_POLICY,
                 credits: Credits | None = None):
        self.store = store
        self.policy = policy  # fair share, quotas, reservations, preemption (nsml.scheduler.placement)
        self.credits = credits or Credits()  # GPU-time budgets (nsml.core.accounting); off without rules
        self._credit_cache: tuple[float, frozenset, dict[str, float]] | None = None
        # Called with each running preemptible session placement chose to make way for the head
        # of the queue (the server pauses it through its bound save and requeues it); None: nobody.
        self.on_preempt = None
        self._preempting: set[int] = set()
        self.executor = executor
        self.nodes = list(nodes)
        self.interval = interval
        self.heartbeat_timeout = heartbeat_timeout
        self.started_at = time.time()  # heartbeats that stopped while the server itself was away get a new chance
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._launching: set[int] = set()
        # When each launch returned: a cluster may take minutes to start a session's process
        # (Ray starting workers), and its heartbeat clock starts then, not at placement.
        self._launched_at: dict[int, float] = {}
        self._last_reconcile = 0.0
        self._last_reconcile_wall = time.time()
        self._time_limited: set[int] = set()  # stopped for their time limit, not yet ended
        # A GPU idle this long is a zombie; its owner is told once, in the session's log (None: not told).
        self.zombie_after = zombie_after
        self._zombies_told: set[int] = set()
        self.usage = UsageSampler(store, executor, gpus=feed)  # samples running sessions every few seconds
        # Several servers may share one database: only the one holding the scheduler's lease
        # schedules (and reconciles, samples, stops); another takes over once it expires.
        self.lease_ttl = lease_ttl
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.leading = False
        self._renewed = 0.0
        self.on_lead = None  # called whenever this server becomes the one that schedules
        # Called on each reconcile with the running sessions and whether this server just took
        # the lease: the server's watch over pending pauses (nsml.server.pausing.watch).
        self.on_reconcile = None
        # Called about once a second on the lease holder, before placement: the AutoML driver
        # (nsml.server.automl.service), whose new trials are then placed in the same pass.
        self.on_tick = None
        self._last_drive = 0.0
        # Called with each session just marked lost (the server brings preemptible ones back).
        self.on_lost = None

    def start(self) -> None:
        self.lead()
        self._thread = threading.Thread(target=self._loop, name="nsml-scheduler", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=5)
        if self.leading:
            try:
                self.store.release_lease(LEASE, self.holder)  # the other server takes over at once
            except Exception:
                log.debug("could not release the scheduler's lease", exc_info=True)

    def lead(self) -> bool:
        """Take or renew the scheduler's lease (renewed every fifth of its term); True while this
        server holds it. On taking it over, sessions the previous holder was preparing are
        nobody's any more, and every running one gets a whole heartbeat timeout to report in."""
        if self.leading and time.monotonic() - self._renewed < self.lease_ttl / 5:
            return True
        had = self.leading
        try:
            self.leading = self.store.take_lease(LEASE, self.holder, self.lease_ttl)
        except Exception:  # the database is away: stop scheduling rather than act on stale state
            log.exception("could not renew the scheduler's lease")
            self.leading = False
        if self.leading:
            self._renewed = time.monotonic()
            if not had:
                log.info("this server (%s) schedules now", self.holder)
                self.started_at = time.time()
                self.reconcile(at_startup=True)
                if self.on_lead is not None:
                    try:
                        self.on_lead()
                    except Exception:
                        log.exception("starting the lease holder's work failed")
        return self.leading

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            woken = self._wake.wait(self.interval)
            self._wake.clear()
            try:
                if self.lead():
                    self.tick(woken)
            except Exception:  # keep scheduling whatever one bad session does
                log.exception("scheduler tick failed")

    def tick(self, woken: bool = False) -> None:
        if getattr(self.executor, "dynamic_inventory", False):
            # A cluster's nodes come and go (nsml.scheduler.ray_executor): placement works on
            # what it has now. In place: the server's admission checks hold the same list.
            self.nodes[:] = self.executor.inventory()
        if time.monotonic() - self._last_reconcile > RECONCILE_EVERY:
            self.reconcile()
        self.usage.maybe_sample()  # when due; never raises
        since = time.monotonic() - self._last_drive
        if self.on_tick is not None and (since >= DRIVE_EVERY or (woken and since >= DRIVE_SOON)):
            self._last_drive = time.monotonic()
            try:
                self.on_tick()
            except Exception:  # a study's bad pass must not stop the scheduling of everyone's work
                log.exception("the lease holder's periodic work failed")
        queued = runnable(self.store.list_sessions({Status.QUEUED}))
        if not queued:
            return
        running = self.store.list_sessions({Status.RUNNING})
        now = time.time()
        plan = place(queued, running, self.nodes, explain=False, policy=self.policy, now=now,
                     credit=self.credit_left(queued, running, now))
        for decision in plan.starts:
            limit = {"time_limit": decision.time_limit} if decision.time_limit else {}  # what its credit affords
            session = self.store.move_session(
                decision.session.id, Status.RUNNING, started=time.time(), node=decision.node,
                gpu_ids=",".join(map(str, decision.gpu_ids)), heartbeat=None, **limit,
            )
            if session is None:
                continue  # stopped or removed meanwhile
            self._launching.add(session.id)
            threading.Thread(target=self._launch, args=(session, decision.gpu_ids), daemon=True).start()
        self._preempting &= {s.id for s in running}
        for victim in plan.preempt:
            if victim.id in self._preempting or self.on_preempt is None:
                continue
            self._preempting.add(victim.id)
            head = plan.reservation[0].name if plan.reservation else "a regular session"
            try:
                self.on_preempt(victim, head)
            except Exception:  # the next pass asks again
                self._preempting.discard(victim.id)
                log.exception("preempting %s failed", victim.name)

    def plan(self) -> Plan:
        """This moment's plan with every queued session's position and reason (for ps and the web)."""
        queued, running, now = runnable(self.store.list_sessions({Status.QUEUED})), self.store.list_sessions({Status.RUNNING}), time.time()
        return place(queued, running, self.nodes, policy=self.policy, now=now, credit=self.credit_left(queued, running, now))

    def credit_left(self, queued: Sequence[Session], running: Sequence[Session], now: float) -> dict[str, float] | None:
        """GPU-seconds each holder of a queued session may still commit, where credits apply:
        its balance (nsml.core.accounting, from the usage ledger) less what its running sessions
        may still use by their time limits. None when the server has no credit rules."""
        if not self.credits.enabled:
            return None
        # A user in no team is charged as themselves only: their team:~NAME holder has no budget.
        holders = frozenset(k for s in queued for k in (s.owner, team_of(s))
                            if not k.startswith("team:~") and self.credits.rule(k) is not None)
        cached = self._credit_cache
        if cached and now - cached[0] < CREDIT_EVERY and holders <= cached[1]:
            left = dict(cached[2])
        else:
            left = self.balances(holders, now)
            self._credit_cache = (now, holders, dict(left))
        for key, ahead in self.committed(left, now, running).items():
            left[key] -= ahead
        return left

    def committed(self, holders, now: float, running: Sequence[Session] | None = None) -> dict[str, float]:
        """GPU-seconds the holders' running sessions may still use, by their time limits."""
        wanted, out = set(holders), {}
        for s in running if running is not None else self.store.list_sessions({Status.RUNNING}):
            if s.resources.gpus and s.time_limit and s.started:
                ahead = s.resources.gpus * max(0.0, s.started + s.time_limit - now)
                for key in (s.owner, team_of(s)):
                    if key in wanted:
                        out[key] = out.get(key, 0.0) + ahead
        return out

    def balances(self, holders, now: float, history: float = 366 * 86400.0) -> dict[str, float]:
        """Each holder's credit balance in GPU-seconds (users, `team:NAME`)."""
        holders = list(holders)
        if not holders:
            return {}
        spans = self.store.usage_spans(now - history, holders)
        out = {}
        for key in holders:
            rule = self.credits.rule(key)
            mine = [sp for sp in spans if key in sp.holders()]
            out[key] = 60.0 * credit_balance(mine, rule, self.credits.period, now, history)
        return out

    def _launch(self, session: Session, gpu_ids: tuple[int, ...]) -> None:
        try:
            code = self.store.files(session.code_fileset_id)
            try:  # a session run without -d has none: nothing is mounted, HAS_DATASET is false
                dataset = self.store.get_dataset(session.dataset) if session.has_dataset else None
                dataset_files = self.store.files(dataset.fileset_id) if dataset else []
            except NotFound:
                self.fail(session, f"Dataset '{session.dataset}' was removed before the session started.")
                return
            # A resumed session finds the files its earlier attempts wrote in its working directory.
            outputs = self.store.files(session.outputs_fileset_id) if session.resumed_from and session.outputs_fileset_id else []
            launched = self.executor.launch(session, gpu_ids, code, dataset, dataset_files, outputs)
            # Devices or a node the executor chose itself are what is recorded.
            chosen = ",".join(map(str, launched.gpu_ids)) if launched.gpu_ids is not None else None
            self._launched_at[session.id] = time.time()
            try:
                session = self.store.record_launch(session.id, launched.handle, chosen, launched.node)
            except NotFound:  # removed while it was being prepared
                self.executor.kill(replace(session, supervisor_pid=launched.handle))
                self.executor.remove(session)
                return
            if session.status != Status.RUNNING:  # stopped while it was being prepared
                self.executor.stop(session)
        except Exception as exc:
            message = str(exc) if isinstance(exc, NsmlError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, NsmlError):
                log.error("launching %s failed:\n%s", session.name, traceback.format_exc())
            self.fail(session, f"The session could not start: {message}")
        finally:
            self._launching.discard(session.id)

    def fail(self, session: Session, message: str) -> None:
        self.store.move_session(session.id, Status.FAILED, ended=time.time(), error=message)
        self.wake()

    def reconcile(self, at_startup: bool = False) -> None:
        """Running sessions: past their time limit, stopped; silent past the heartbeat timeout, lost.

        A running session without a supervisor is one being prepared (environment build); at
        startup nobody is preparing it any more, so it queues again as the same attempt. One
        still without a supervisor a minute after it was placed, and not being launched by this
        server, fails.
        """
        now = time.time()
        if now - self._last_reconcile_wall > max(self.heartbeat_timeout / 3, 3 * RECONCILE_EVERY):
            # The server itself was not running its loop (the machine slept, the process was
            # stopped or starved): the silence was ours, so every session gets a new chance.
            self.started_at = now
        self._last_reconcile, self._last_reconcile_wall = time.monotonic(), now
        sessions = runnable(self.store.list_sessions({Status.RUNNING}))
        if self.on_reconcile is not None:
            try:
                self.on_reconcile(sessions, at_startup)
            except Exception:  # the rest of the reconcile must still happen
                log.exception("watching pending pauses failed")
        self._time_limited &= {s.id for s in sessions}
        self._zombies_told &= {s.id for s in sessions}
        running = {s.id for s in sessions}
        self._launched_at = {k: v for k, v in self._launched_at.items() if k in running or k in self._launching}
        vanished = getattr(self.executor, "vanished", None)
        gone = vanished(sessions) if vanished is not None else {}
        for session in sessions:
            if session.id in gone:  # its node left the cluster: no need to wait out the heartbeat
                self._lose(session, LOST_NODE.format(why=gone[session.id], name=session.name), recent_ok=True)
                continue
            if session.id in self._launching:
                continue
            if session.supervisor_pid is None:
                if at_startup:
                    self._requeue_unlaunched(session)
                elif now - (session.started or 0) > 60:
                    self.fail(session, "The session never started: the server stopped while preparing it. Run it again.")
                continue
            if session.time_limit and session.started and now - session.started > session.time_limit:
                self._stop_for_time_limit(session)
            last = max(session.heartbeat or session.started or 0, self.started_at, self._launched_at.get(session.id, 0.0))
            if now - last > self.heartbeat_timeout:
                self._lose(session)
            elif self.zombie_after and session.resources.gpus and session.id not in self._zombies_told \
                    and now - (session.started or now) >= self.zombie_after:
                self._tell_if_zombie(session, now)

    def _requeue_unlaunched(self, session: Session) -> None:
        """A session the stopped server (or the lease's last holder) was preparing: nothing of
        it ran, so it queues again as the same attempt rather than failing. Whatever the
        preparing got as far as starting is killed first, so it cannot run twice."""
        self.executor.kill(session)
        if self.store.requeue_unlaunched(session.id, "queued again: the server stopped while preparing it") is not None:
            log.info("queued %s again: the server stopped while preparing it", session.name)
            self.wake()

    def _tell_if_zombie(self, session: Session, now: float) -> None:
        idle = zombie_gpus(self.store.usage(session.id, now - self.zombie_after - 60), self.zombie_after, now)
        if idle:
            self._zombies_told.add(session.id)
            from nsml.core.resources import format_duration

            gpus = ", ".join(map(str, idle))
            self.executor.note(session, f"[nsml] GPU {gpus} has been at 0 % utilisation for {format_duration(self.zombie_after)} "
                                        f"while this session holds it (a zombie?); stop the session to free it for others.")

    def _stop_for_time_limit(self, session: Session) -> None:
        if session.id in self._time_limited:
            return
        self._time_limited.add(session.id)
        from nsml.core.resources import format_duration

        self.executor.note(session, TIME_LIMIT.format(limit=format_duration(session.time_limit)))
        self.executor.stop(session)

    def _lose(self, session: Session, message: str | None = None, recent_ok: bool = False) -> None:
        """Mark the session lost. `recent_ok`: even if it reported in meanwhile (a heartbeat
        in flight from a node that is gone proves nothing)."""
        try:
            fresh = self.store.session_by_id(session.id)
        except NotFound:  # removed meanwhile
            return
        if fresh.status != Status.RUNNING or (not recent_ok and (fresh.heartbeat or 0) > (session.heartbeat or 0)):
            return  # it ended or reported in meanwhile
        self.executor.kill(fresh)  # whatever is left of it must not run on unsupervised
        message = message or LOST.format(timeout=self.heartbeat_timeout, name=fresh.name)
        lost = self.store.move_session(fresh.id, Status.LOST, ended=time.time(), error=message)
        if lost is not None and self.on_lost is not None:
            try:
                self.on_lost(lost)
            except Exception:
                log.exception("bringing back lost session %s failed", fresh.name)
        self.wake()
