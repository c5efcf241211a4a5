"""Sessions and their checkpoints in SQL."""

import json
import time

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.exc import IntegrityError

from nsml.core import naming, params
from nsml.core.entities import Checkpoint, FileEntry, Session, SessionEvent
from nsml.core.errors import Conflict, NotFound, not_found
from nsml.core.policy import SessionScope
from nsml.core.resources import Resources
from nsml.core.states import RESUMABLE, SessionKind, Status, can_move

from .models import CheckpointRow, PointChunkRow, SeriesRow, SessionCounterRow, SessionEventRow, SessionParamRow, SessionRow, StudyTrialRow, UsageLedgerRow


def to_session(row: SessionRow) -> Session:
    return Session(
        id=row.id, owner=row.owner, dataset=row.dataset, number=row.number, entry=row.entry,
        args=row.args, status=Status(row.status),
        resources=Resources(row.cpus, row.memory, row.gpus), created=row.created, memo=row.memo,
        exit_code=row.exit_code, started=row.started, ended=row.ended, error=row.error, image=row.image,
        code_fileset_id=row.code_fileset_id, outputs_fileset_id=row.outputs_fileset_id,
        supervisor_pid=row.supervisor_pid, summary=json.loads(row.summary),
        last_values=json.loads(row.last_values), journal_offset=row.journal_offset,
        log_offset=row.log_offset, gpu_ids=row.gpu_ids, kind=SessionKind(row.kind), source=row.source,
        source_checkpoint=row.source_checkpoint, shm_size=row.shm_size, removed=row.removed,
        batch_size=row.batch_size, attempt=row.attempt, resumed_from=row.resumed_from,
        team=row.team, visibility=row.visibility, priority=row.priority, time_limit=row.time_limit,
        gpu_model=row.gpu_model, node=row.node, heartbeat=row.heartbeat, preemptible=bool(row.preemptible),
        pausable=bool(row.pausable), pause_requested=row.pause_requested or "", pause_requested_at=row.pause_requested_at,
        pause_checkpoint=row.pause_checkpoint or "", pause_error=row.pause_error or "",
    )


def _clear_pause(row: SessionRow, and_pausable: bool = False) -> None:
    """No stop-and-go request nor result on the row (and, with `and_pausable`, not pausable either)."""
    row.pause_requested, row.pause_requested_at, row.pause_checkpoint, row.pause_error = "", None, "", ""
    if and_pausable:
        row.pausable = False


def in_scope(scope: SessionScope | None) -> list:
    """The WHERE clauses that select the sessions `scope` (nsml.core.policy) may read."""
    if scope is None or scope.everything:
        return []
    team_visible = and_(SessionRow.visibility == "team", SessionRow.team != "", SessionRow.team.in_(sorted(scope.teams)))
    return [or_(SessionRow.owner == scope.owner, SessionRow.visibility == "public", team_visible)]


def to_checkpoint(row: CheckpointRow) -> Checkpoint:
    return Checkpoint(row.session_id, row.name, row.created, row.elapsed, row.size, json.loads(row.summary), row.fileset_id)


class SessionsMixin:
    # -- sessions -------------------------------------------------------------------------
    def create_session(
        self, owner: str, dataset: str, entry: str, args: str, resources: Resources,
        memo: str, image: str, code: list[FileEntry] | int,
        kind: SessionKind = SessionKind.NORMAL, source: str = "", source_checkpoint: str = "", shm_size: int = 0,
        batch_size: int = 0, team: str = "", visibility: str = "team", priority: int = 0,
        time_limit: float | None = None, gpu_model: str = "", preemptible: bool = False, trial_id: int | None = None,
    ) -> Session:
        """A queued session; `code` is the uploaded files, or the code fileset of the session a
        fork/submit/infer relaunches (shared, not copied). `trial_id`: the AutoML trial it runs,
        linked in the same transaction (a server killed between the two leaves no orphan child)."""
        self._ensure_counter(owner, dataset)
        with self._write() as orm:
            counter = orm.get(SessionCounterRow, (owner, dataset), with_for_update=True)  # numbers never collide
            counter.last += 1
            code_id = code if isinstance(code, int) else self._add_fileset("code", code, orm)
            row = SessionRow(
                owner=owner, dataset=dataset, number=counter.last, entry=entry, args=args,
                status=Status.QUEUED.value, cpus=resources.cpus, memory=resources.memory, gpus=resources.gpus,
                created=time.time(), memo=memo, image=image, code_fileset_id=code_id,
                summary="{}", last_values="{}", error="", gpu_ids="",
                kind=kind, source=source, source_checkpoint=source_checkpoint, shm_size=shm_size,
                batch_size=batch_size, team=team, visibility=visibility, priority=priority,
                time_limit=time_limit, gpu_model=gpu_model, node="", preemptible=preemptible,
            )
            orm.add(row)
            orm.flush()
            orm.add(SessionEventRow(session_id=row.id, at=row.created, status=row.status, note=""))
            if trial_id is not None:
                trial = orm.get(StudyTrialRow, trial_id, with_for_update=True)
                if trial is None or trial.session_id is not None:
                    raise Conflict(f"Trial #{trial_id} does not exist or has its session already.")
                trial.session_id = row.id
            # Its parameters, typed, for the runs table (its arguments are kept whole besides).
            orm.add_all(SessionParamRow(session_id=row.id, key=k, num=num, text=text)
                        for k, (num, text) in params.storable(params.parse_args(args)).items())
            return to_session(row)

    def _ensure_counter(self, owner: str, dataset: str) -> None:
        """The numbering row of OWNER/DATASET exists (two servers making the first at once: one wins)."""
        with self._read() as orm:
            if orm.get(SessionCounterRow, (owner, dataset)) is not None:
                return
        try:
            with self._write() as orm:
                orm.add(SessionCounterRow(owner=owner, dataset=dataset, last=0))
        except IntegrityError:
            pass  # made meanwhile by another writer

    def _session_row(self, orm, name: str) -> SessionRow:
        owner, dataset, number = naming.parse_session_name(name)
        row = orm.scalar(
            select(SessionRow).where(
                SessionRow.owner == owner, SessionRow.dataset == dataset, SessionRow.number == number
            )
        )
        if row is None:
            known = [f"{o}/{d}/{n}" for o, d, n in orm.execute(select(SessionRow.owner, SessionRow.dataset, SessionRow.number))]
            raise not_found("Session", name, known)
        return row

    def get_session(self, name: str) -> Session:
        with self._read() as orm:
            return to_session(self._session_row(orm, name))

    def session_by_id(self, session_id: int) -> Session:
        with self._read() as orm:
            row = orm.get(SessionRow, session_id)
            if row is None:
                raise NotFound(f"Session #{session_id} does not exist.")
            return to_session(row)

    def list_sessions(
        self, statuses: set[Status] | None = None, dataset: str | None = None,
        owner: str | None = None, limit: int | None = None, removed: bool = False,
        scope: SessionScope | None = None, kinds: set[SessionKind] | None = None,
    ) -> list[Session]:
        """Newest first; sessions taken out of listings by `rm -s` only with removed=True; only
        those `scope` may read (None: all); of `kinds` only, when given."""
        query = select(SessionRow).where(*in_scope(scope)).order_by(SessionRow.created.desc(), SessionRow.id.desc())
        if not removed:
            query = query.where(SessionRow.removed.is_(None))
        if statuses:
            query = query.where(SessionRow.status.in_([s.value for s in statuses]))
        if dataset:
            query = query.where(SessionRow.dataset == dataset)
        if owner:
            query = query.where(SessionRow.owner == owner)
        if kinds:
            query = query.where(SessionRow.kind.in_([k.value for k in kinds]))
        if limit:
            query = query.limit(limit)
        with self._read() as orm:
            return [to_session(r) for r in orm.scalars(query)]

    def match_sessions(self, pattern: str, scope: SessionScope | None = None) -> list[Session]:
        """Sessions whose name matches a glob; a plain name must exist (clear error otherwise)."""
        if not naming.is_pattern(pattern):
            return [self.get_session(pattern)]
        return [s for s in self.list_sessions(scope=scope) if naming.matches(pattern, s.name)]

    # What changes on a session besides its status (move_session), each its own method: a
    # caller can set only what it is meant to set. Each raises NotFound for a removed session.
    def set_memo(self, session_id: int, memo: str) -> Session:
        return self._set(session_id, memo=memo)

    def hide_session(self, session_id: int, at: float) -> Session:
        """`rm -s`: out of listings from `at` on; its stored files and records are kept."""
        return self._set(session_id, removed=at)

    def record_launch(self, session_id: int, handle: int, gpu_ids: str | None = None, node: str | None = None) -> Session:
        """What the executor reported for a session it started: its handle (the supervisor's pid
        locally) and, when the executor chose them itself, the devices and node."""
        fields = {"supervisor_pid": handle}
        fields.update({k: v for k, v in {"gpu_ids": gpu_ids, "node": node}.items() if v is not None})
        return self._set(session_id, **fields)

    def record_heartbeat(self, session_id: int, at: float) -> Session:
        """Its supervisor reported in at `at` (the scheduler's liveness)."""
        return self._set(session_id, heartbeat=at)

    def record_exit_code(self, session_id: int, exit_code: int, ended: float) -> Session:
        """The exit code of a session whose end was recorded first (a stop), status unchanged."""
        return self._set(session_id, exit_code=exit_code, ended=ended)

    def set_error(self, session_id: int, error: str) -> Session:
        """The one line `ps` shows for what went wrong (a relaunch that did not do its job)."""
        return self._set(session_id, error=error)

    def _set(self, session_id: int, **fields) -> Session:
        with self._write() as orm:
            row = orm.get(SessionRow, session_id, with_for_update=True)
            if row is None:
                raise NotFound(f"Session #{session_id} does not exist.")
            for key, value in fields.items():
                setattr(row, key, value)
            return to_session(row)

    def put_outputs(self, session_id: int, files: list[FileEntry]) -> Session:
        """Store the files a session wrote, replacing those of an earlier upload in one
        transaction (a supervisor that lost the answer sends them again)."""
        with self._write() as orm:
            row = orm.get(SessionRow, session_id, with_for_update=True)
            if row is None:
                raise NotFound(f"Session #{session_id} does not exist.")
            old = row.outputs_fileset_id
            row.outputs_fileset_id = self._add_fileset("outputs", files, orm)
            orm.flush()
            self._drop_fileset(orm, old)
            return to_session(row)

    def move_session(self, session_id: int, new: Status, note: str | None = None, **fields) -> Session | None:
        """Change status if allowed from the current one; returns None when it was not.
        `note`: the status history's note for the move (default: the error, if one is set)."""
        with self._write() as orm:
            row = orm.get(SessionRow, session_id, with_for_update=True)
            if row is None or not can_move(Status(row.status), new):
                return None
            was_running = row.status == Status.RUNNING.value
            row.status = new.value
            for key, value in fields.items():
                setattr(row, key, value)
            now = time.time()
            orm.add(SessionEventRow(session_id=row.id, at=now, status=new.value,
                                    note=fields.get("error", "") if note is None else note))
            if was_running and row.started is not None:  # an attempt ended: what it held, for how long
                orm.add(UsageLedgerRow(session_id=row.id, owner=row.owner, team=row.team, gpus=row.gpus, cpus=row.cpus,
                                       memory=row.memory, started=row.started, ended=max(row.started, row.ended or now)))
            return to_session(row)

    def start_attempt(self, session_id: int, resumed_from: str, log_offset: int, note: str) -> Session | None:
        """Queue a stopped or failed session again as its next attempt (`nsml resume`), keeping
        its name, metrics, checkpoints, outputs and status history; None if its status does
        not allow it (any more). `log_offset`: the server's log size where the new attempt's
        log begins."""
        with self._write() as orm:
            row = orm.get(SessionRow, session_id, with_for_update=True)
            if row is None or Status(row.status) not in RESUMABLE:
                return None
            row.status = Status.QUEUED.value
            row.attempt += 1
            row.resumed_from = resumed_from
            row.log_offset = log_offset
            row.started = row.ended = row.exit_code = row.supervisor_pid = None
            row.error = row.gpu_ids = row.node = ""
            row.heartbeat = None
            _clear_pause(row, and_pausable=True)  # the new attempt's script says again whether it can pause
            orm.add(SessionEventRow(session_id=row.id, at=time.time(), status=row.status, note=note))
            return to_session(row)

    # -- stop-and-go (nsml.server.pausing) ------------------------------------------------
    def request_pause(self, session_id: int, kind: str, at: float, note: str) -> Session | None:
        """Record a pause (kind 'pause') or preemption ('preempt') of a running session, with
        `note` in its status history; None if it is not running (any more).

        A request already pending is kept, with its time and anything the library reported of
        it, so `pause_requested_at == at` on the answer tells a new request from a repeated one.
        Only its kind may change, and only towards 'pause': a person's pause outranks a
        preemption (the session then stays paused instead of being queued again)."""
        with self._write() as orm:
            row = orm.get(SessionRow, session_id, with_for_update=True)
            if row is None or row.status != Status.RUNNING.value:
                return None
            if row.pause_requested:
                if row.pause_requested == kind or kind != "pause":
                    return to_session(row)
                row.pause_requested = kind
            else:
                row.pause_requested, row.pause_requested_at = kind, at
                row.pause_checkpoint = row.pause_error = ""
            orm.add(SessionEventRow(session_id=row.id, at=at, status=row.status, note=note))
            return to_session(row)

    def clear_pause_request(self, session_id: int, note: str = "") -> Session:
        """Forget the session's pending request (it failed, or the session ended without
        pausing), with `note` in its status history if given; what the library reported stays
        readable until the next request. NotFound for a removed session."""
        with self._write() as orm:
            row = orm.get(SessionRow, session_id, with_for_update=True)
            if row is None:
                raise NotFound(f"Session #{session_id} does not exist.")
            row.pause_requested, row.pause_requested_at = "", None
            if note:
                orm.add(SessionEventRow(session_id=row.id, at=time.time(), status=row.status, note=note))
            return to_session(row)

    def pause_queued(self, session_id: int, note: str) -> Session | None:
        """`nsml pause` of a session that has not started: paused at once, nothing to save;
        None if it is not queued (any more: the scheduler may have just started it)."""
        with self._write() as orm:
            row = orm.get(SessionRow, session_id, with_for_update=True)
            if row is None or row.status != Status.QUEUED.value:
                return None
            row.status = Status.PAUSED.value
            row.ended = time.time()
            orm.add(SessionEventRow(session_id=row.id, at=row.ended, status=row.status, note=note))
            return to_session(row)

    def requeue_paused(self, session_id: int, note: str) -> Session | None:
        """Queue again a session paused before it started (its attempt never ran, so it is
        the same attempt, from the same checkpoint); None if it is not such a session."""
        with self._write() as orm:
            row = orm.get(SessionRow, session_id, with_for_update=True)
            if row is None or row.status != Status.PAUSED.value or row.started is not None:
                return None
            row.status = Status.QUEUED.value
            row.ended = None
            _clear_pause(row, and_pausable=True)
            orm.add(SessionEventRow(session_id=row.id, at=time.time(), status=row.status, note=note))
            return to_session(row)

    def requeue_unlaunched(self, session_id: int, note: str) -> Session | None:
        """Queue again a running session whose supervisor was never recorded: the server that
        was preparing it stopped, so its attempt never ran (the same attempt, nothing charged
        for the preparing); None if it is not such a session (any more)."""
        with self._write() as orm:
            row = orm.get(SessionRow, session_id, with_for_update=True)
            if row is None or row.status != Status.RUNNING.value or row.supervisor_pid is not None:
                return None
            row.status = Status.QUEUED.value
            row.started = row.heartbeat = None
            row.gpu_ids = row.node = ""
            _clear_pause(row)
            orm.add(SessionEventRow(session_id=row.id, at=time.time(), status=row.status, note=note))
            return to_session(row)

    def session_events(self, session_id: int) -> list[SessionEvent]:
        with self._read() as orm:
            rows = orm.scalars(select(SessionEventRow).where(SessionEventRow.session_id == session_id).order_by(SessionEventRow.id))
            return [SessionEvent(r.at, r.status, r.note) for r in rows]

    def delete_session(self, session_id: int) -> list[int]:
        """Delete a session and everything it owns; returns the fileset ids that were dropped."""
        with self._write() as orm:
            row = orm.get(SessionRow, session_id, with_for_update=True)
            if row is None:
                return []
            # Forks, submits and infer sessions share the code of the session they relaunched.
            shared = orm.scalar(select(func.count()).select_from(SessionRow).where(
                SessionRow.code_fileset_id == row.code_fileset_id, SessionRow.id != row.id))
            filesets = [None if shared else row.code_fileset_id, row.outputs_fileset_id]
            filesets += list(orm.scalars(select(CheckpointRow.fileset_id).where(CheckpointRow.session_id == session_id)))
            series_ids = list(orm.scalars(select(SeriesRow.id).where(SeriesRow.session_id == session_id)))
            if series_ids:
                orm.execute(delete(PointChunkRow).where(PointChunkRow.series_id.in_(series_ids)))
                orm.execute(delete(SeriesRow).where(SeriesRow.id.in_(series_ids)))
            orm.execute(delete(CheckpointRow).where(CheckpointRow.session_id == session_id))
            orm.delete(row)
            orm.flush()
            for fs in filesets:
                self._drop_fileset(orm, fs)
            return [f for f in filesets if f is not None]

    # -- checkpoints ----------------------------------------------------------------------
    def put_checkpoint(self, session_id: int, name: str, walltime: float, files: list[FileEntry]) -> Checkpoint:
        naming.check_checkpoint_name(name)
        with self._write() as orm:
            session = orm.get(SessionRow, session_id, with_for_update=True)
            if session is None:
                raise NotFound(f"Session #{session_id} does not exist.")
            previous = orm.scalar(
                select(func.max(CheckpointRow.created)).where(CheckpointRow.session_id == session_id)
            )
            since = previous or session.started or session.created
            summary = session.summary if session.summary != "{}" else session.last_values
            old = orm.scalar(select(CheckpointRow).where(CheckpointRow.session_id == session_id, CheckpointRow.name == name))
            fileset_id = self._add_fileset("checkpoint", files, orm)
            if old is not None:  # same name overwrites, as in NSML
                old_fileset = old.fileset_id
                orm.delete(old)
                orm.flush()
                self._drop_fileset(orm, old_fileset)
            row = CheckpointRow(
                session_id=session_id, name=name, created=walltime, elapsed=max(0.0, walltime - since),
                size=sum(f.size for f in files), summary=summary, fileset_id=fileset_id,
            )
            orm.add(row)
            orm.flush()
            return to_checkpoint(row)

    def list_checkpoints(self, session_id: int) -> list[Checkpoint]:
        with self._read() as orm:
            rows = orm.scalars(select(CheckpointRow).where(CheckpointRow.session_id == session_id).order_by(CheckpointRow.created))
            return [to_checkpoint(r) for r in rows]

    def get_checkpoint(self, session: Session, name: str) -> Checkpoint:
        ckpts = self.list_checkpoints(session.id)
        for ckpt in ckpts:
            if ckpt.name == name:
                return ckpt
        names = [c.name for c in ckpts]
        listing = ", ".join(names) if names else "none yet"
        raise NotFound(f"Session {session.name} has no checkpoint '{name}'. Its checkpoints: {listing}.")

    def delete_checkpoint(self, session_id: int, name: str) -> None:
        with self._write() as orm:
            row = orm.scalar(select(CheckpointRow).where(CheckpointRow.session_id == session_id, CheckpointRow.name == name))
            if row is not None:
                fs = row.fileset_id
                orm.delete(row)
                orm.flush()
                self._drop_fileset(orm, fs)
