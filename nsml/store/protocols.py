"""The store as small protocols, one per capability: what the server, the scheduler and the
supervisor may ask of the metadata store, and what each call promises.

One implementation today, nsml.store.sql.SqlStore, on SQLite (the embedded default) and on
PostgreSQL (a team server). tests/store is the contract suite: every test there runs against
every implementation (tests/store/conftest.py's `store`), and tests/store/test_protocols.py checks
that each implementation has every method here with the same parameters.

Shared promises: records are frozen dataclasses of nsml.core.entities, never ORM rows; a missing
name raises nsml.core.errors.NotFound (with "did you mean" where names are listed); a disk that
fills up raises StorageFull and keeps nothing of the failed call; every method is safe to call
from several threads (and, on PostgreSQL, from several server processes).
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from nsml.core.accounting import Span
from nsml.core.entities import (
    AuditEntry, BoardRow, Checkpoint, Dataset, FileEntry, MetricPoint, Session, SessionEvent, Study, Submission, Team, Token,
    Trial, UsageSample, User,
)
from nsml.core.params import Column, RunRow
from nsml.core.policy import Actor, SessionScope
from nsml.core.resources import Resources
from nsml.core.states import SessionKind, Status


@runtime_checkable
class FileStore(Protocol):
    """Filesets: the file lists (path, size, sha256) of datasets, code, outputs and checkpoints;
    the bytes are in the blob store."""

    def files(self, fileset_id: int) -> list[FileEntry]:
        """Sorted by path."""

    def fileset_shas(self, *fileset_ids: int | None) -> set[str]:
        """The blobs the given filesets refer to (None ids are skipped): what a removal may free."""

    def shas_in_use(self, shas: Iterable[str]) -> set[str]:
        """Those of `shas` that any fileset still refers to: a blob is deleted only when not."""


@runtime_checkable
class DatasetStore(Protocol):
    def put_dataset(self, name: str, owner: str, description: str, private: bool, entries: list[FileEntry], force: bool,
                    metric: str = "", order: str = "desc", submit_interval: float = 0.0,
                    tags: Iterable[str] | None = None) -> Dataset:
        """Register a fully stored dataset in one transaction. An existing name is AlreadyExists
        unless `force`, which replaces it (its sessions and board stay)."""

    def change_dataset(self, name: str, **fields) -> Dataset:
        """Set description, metric, order, submit_interval or tags; any other field is InvalidInput."""

    def get_dataset(self, name: str) -> Dataset: ...

    def list_datasets(self, pattern: str | None = None) -> list[Dataset]:
        """By name; `pattern` a glob."""

    def delete_dataset(self, name: str) -> None:
        """Its record and fileset; sessions that read it keep their records."""


@runtime_checkable
class SessionStore(Protocol):
    def create_session(self, owner: str, dataset: str, entry: str, args: str, resources: Resources, memo: str, image: str,
                       code: list[FileEntry] | int, kind: SessionKind = SessionKind.NORMAL, source: str = "",
                       source_checkpoint: str = "", shm_size: int = 0, batch_size: int = 0, team: str = "",
                       visibility: str = "team", priority: int = 0, time_limit: float | None = None,
                       gpu_model: str = "", preemptible: bool = False, trial_id: int | None = None) -> Session:
        """A new queued session, numbered N+1 of OWNER/DATASET (numbers are never reused, even
        after removals). `code`: the uploaded files, or a relaunch's source code fileset (shared)."""

    def get_session(self, name: str) -> Session: ...

    def session_by_id(self, session_id: int) -> Session: ...

    def list_sessions(self, statuses: set[Status] | None = None, dataset: str | None = None, owner: str | None = None,
                      limit: int | None = None, removed: bool = False, scope: SessionScope | None = None,
                      kinds: set[SessionKind] | None = None) -> list[Session]:
        """Newest first; hidden ones (rm -s) only with `removed`; only those `scope` may read;
        of `kinds` only, when given."""

    def match_sessions(self, pattern: str, scope: SessionScope | None = None) -> list[Session]:
        """Sessions whose name matches a glob; a plain name must exist (NotFound otherwise)."""

    def search_sessions(self, q: str = "", dataset: str | None = None, statuses: set[str] | None = None,
                        owner: str | None = None, offset: int = 0, limit: int = 50,
                        scope=None, where_tree: Any = None) -> tuple[int, list[Session]]:
        """(how many match, one page newest first); `q` matches name, memo and arguments, case
        aside; `where_tree`, a query (nsml.core.query.parse's tree), narrows them further."""

    def move_session(self, session_id: int, new: Status, note: str | None = None, **fields) -> Session | None:
        """Change status when nsml.core.states allows it from the current one (fields set with
        it, one event recorded, its note `note` or else the error); None when it does not: a
        late report never revives a session."""

    def start_attempt(self, session_id: int, resumed_from: str, log_offset: int, note: str) -> Session | None:
        """`nsml resume`: queue a resumable session again as its next attempt, same name; None
        if its status does not allow it (any more). The stop-and-go fields start afresh."""

    def request_pause(self, session_id: int, kind: str, at: float, note: str) -> Session | None:
        """Stop-and-go: record a pause or preemption (PauseRequest) of a running session, `note`
        in its history; None if it is not running. A pending request is kept as it is (so
        `pause_requested_at == at` tells a new one), except that 'pause' outranks 'preempt'."""

    def clear_pause_request(self, session_id: int, note: str = "") -> Session:
        """Forget the pending request (the library's report of it stays), `note` in the history."""

    def pause_queued(self, session_id: int, note: str) -> Session | None:
        """Pause a session that has not started; None if it is not queued (any more)."""

    def requeue_paused(self, session_id: int, note: str) -> Session | None:
        """Queue again a session paused before it started, as the same attempt; None otherwise."""

    def requeue_unlaunched(self, session_id: int, note: str) -> Session | None:
        """Queue again, as the same attempt, a running session whose supervisor was never
        recorded (the server stopped while preparing it); None otherwise."""

    def set_memo(self, session_id: int, memo: str) -> Session: ...

    def hide_session(self, session_id: int, at: float) -> Session:
        """`rm -s`: out of listings; records and files kept."""

    def record_launch(self, session_id: int, handle: int, gpu_ids: str | None = None, node: str | None = None) -> Session:
        """What the executor reported for a session it started; devices and node only when it chose them."""

    def record_heartbeat(self, session_id: int, at: float) -> Session: ...

    def record_exit_code(self, session_id: int, exit_code: int, ended: float) -> Session:
        """The exit code of a session whose end was recorded first (a stop); status unchanged."""

    def set_error(self, session_id: int, error: str) -> Session: ...

    def put_outputs(self, session_id: int, files: list[FileEntry]) -> Session:
        """The files a session wrote, replacing an earlier upload's in one transaction."""

    def session_events(self, session_id: int) -> list[SessionEvent]:
        """Its status history, oldest first."""

    def delete_session(self, session_id: int) -> list[int]:
        """The session and all it owns (metrics, checkpoints, events, usage); returns the
        fileset ids dropped, whose blobs may then be freed."""


@runtime_checkable
class CheckpointStore(Protocol):
    def put_checkpoint(self, session_id: int, name: str, walltime: float, files: list[FileEntry]) -> Checkpoint:
        """A checkpoint of fully stored files, its summary the last reported values; saving a
        name again replaces it."""

    def list_checkpoints(self, session_id: int) -> list[Checkpoint]:
        """Oldest first."""

    def get_checkpoint(self, session: Session, name: str) -> Checkpoint:
        """NotFound names the checkpoints there are."""

    def delete_checkpoint(self, session_id: int, name: str) -> None: ...


@runtime_checkable
class MetricStore(Protocol):
    def ingest_journal(self, session_id: int, offset: int, data: bytes, notes: list | None = None) -> int:
        """Journal bytes from `offset` (whole lines): stored once however often they are resent
        (offset idempotence); a mismatched offset is Conflict. Returns the new offset. What is
        refused (non-finite values, over-long keys) is appended to `notes`, never stored."""

    def ingest_journals(self, posts: list) -> list:
        """Several JournalPosts (nsml.store.sql.metrics) in one transaction: for each, its new
        offset or the exception it met (Conflict, NotFound), the others unaffected; a post's
        `heartbeat` is recorded as its session's heartbeat."""

    def skip_journal(self, session_id: int, offset: int, length: int) -> int:
        """Move past `length` bytes at `offset` (an over-long line the supervisor did not send)."""

    def series_keys(self, session_id: int) -> dict[str, int]:
        """{key: number of points} of one session, by key."""

    def keys_of_sessions(self, session_ids: Iterable[int]) -> dict[int, list[str]]:
        """{session id: sorted keys} for every id asked for ([] when none)."""

    def read_series(self, session_id: int, key: str) -> Any:
        """A reader of the whole series (None without such a key), a snapshot as of the call:
        `.count`; `.columns(*names)` yields, per group of chunks, float64 arrays of steps, walls
        or vals (NaN: no step / not a number) in the order metric_points gives; `.extras()`
        yields, per group likewise, {position: value} of the values that are not numbers.
        Memory is bounded by a group (one chunk when steps came in order), never the series."""

    def series_summaries(self, session_ids: list[int]) -> dict[int, dict[str, Any]]:
        """{session id: {key: summary}} with count, numeric, last_value/last_step (the newest
        number), min_value/min_step and max_value/max_step (the first of equal extremes):
        what a recomputation from the points gives, kept up to date by every ingest (sessions
        without metrics left out)."""

    def metric_points(self, session_id: int, key: str) -> list[MetricPoint]:
        """Every point, by step (points without a step first), then as reported; for short
        series (one object a point): long ones are read with read_series."""

    def count_points(self, session_id: int) -> int: ...

    def downsampled_series(self, session_id: int, key: str, x: str = "step", xmin: float | None = None,
                           xmax: float | None = None, buckets: int = 1000) -> dict:
        """At most about `buckets` points over [xmin, xmax], in x order, keeping each interval's
        extremes (a spike is never smoothed away); exact when the range holds fewer."""

    def sessions_named(self, names: Iterable[str]) -> dict[str, Session]:
        """{name: session} of those names that are sessions, in one query (an overlaid graph's)."""

    def downsampled_many(self, series: Sequence[tuple[int, str]], x: str = "step", xmin: float | None = None,
                         xmax: float | None = None, buckets: int = 1000) -> list[dict]:
        """downsampled_series of each (session id, key), in their order, with x and y as float64
        numpy arrays: what an overlaid chart of many series reads in one call."""


@runtime_checkable
class RunsStore(Protocol):
    """Sessions' typed parameters (nsml.core.params) and the runs table over them and the
    metric summaries: sorted and paged in the database, whatever the number of sessions."""

    def set_params(self, session_id: int, params: Mapping[str, Any]) -> dict[str, Any]:
        """Merge `params` into the session's (create_session stores those of its arguments);
        returns them all. Out of bounds (a name's length, a value's size, how many) is
        InvalidInput, with nothing changed."""

    def session_params(self, session_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """{session id: {key: value}} for every id asked for ({} for one without any)."""

    def runs_table(self, params: Sequence[str] = (), metrics: Sequence[tuple[str, str]] = (), sort: Column | None = None,
                   order: str = "desc", limit: int = 50, offset: int = 0,
                   scope: SessionScope | None = None, where_tree: Any = None) -> tuple[int, list[RunRow]]:
        """(how many sessions `scope` may read, not hidden by rm -s, that the query
        `where_tree` (nsml.core.query.parse's tree; None: all) selects; one page of them sorted
        by `sort`, default created, `order` asc or desc, nulls last either way, ties by id):
        each row the values of the parameter columns and of the (metric key, last|min|max)
        columns, from the per-series summaries (never points), and its tags. At most 1000
        rows; a bad column, order or page is InvalidInput."""

    def runs_keys(self, scope: SessionScope | None = None, where_tree: Any = None, limit: int = 500,
                  recent: int = 50) -> dict[str, Any]:
        """The columns the runs table can offer for the sessions `scope` may read that
        `where_tree` selects: {"params": [(key, sessions, distinct values)], "metrics": [(key,
        sessions)], "summary": [summary keys of the `recent` newest]}, most common first."""

    def sessions_by_ids(self, session_ids: Iterable[int]) -> dict[int, Session]:
        """{id: Session} of the ids that exist."""

    def tag_session(self, session_id: int, add: Iterable[str] = (), remove: Iterable[str] = ()) -> list[str]:
        """Add and remove tags (nsml.core.tags.check_tag; removing an absent one is no error);
        the session's tags after, sorted. Over MAX_TAGS: InvalidInput, nothing changed."""

    def session_tags(self, session_ids: Iterable[int]) -> dict[int, list[str]]:
        """{session id: its tags, sorted} for every id asked for."""

    def set_note(self, session_id: int, note: str) -> None:
        """Replace the session's markdown note (at most tags.MAX_NOTE characters)."""

    def session_note(self, session_id: int) -> str:
        """The session's note ('' before any); NotFound for no such session."""


@runtime_checkable
class StudyStore(Protocol):
    """AutoML studies and their trials (issue 16)."""

    def create_study(self, session_id: int, config: dict, seed: int) -> Study: ...

    def get_study(self, study_id: int) -> Study: ...

    def study_of_session(self, session_id: int) -> Study:
        """The study whose parent session this is; NotFound otherwise."""

    def studies(self, statuses: tuple[str, ...] = ("running", "stopping")) -> list[Study]: ...

    def set_study_status(self, study_id: int, status: str) -> Study: ...

    def add_trial(self, study_id: int, number: int, params: dict, parent: int | None = None) -> Trial:
        """Trial `number`, running; Conflict if the study has it already."""

    def update_trial(self, trial_id: int, *, session_id: int | None = None, state: str | None = None,
                     value: float | None = None, step: tuple[int, float] | None = None) -> Trial:
        """Link its child, record a compare step's measure, or end it (once)."""

    def trials(self, study_id: int) -> list[Trial]: ...


@runtime_checkable
class AccountingStore(Protocol):
    def usage_spans(self, since: float, holders: Iterable[str] | None = None) -> list[Span]:
        """Attempts that held GPUs and ended after `since`, and the running ones (ended None);
        with `holders` (user names, `team:NAME`), only those charged to one of them."""


@runtime_checkable
class BoardStore(Protocol):
    def create_submission(self, dataset: str, owner: str, session: str, checkpoint: str, test: bool,
                          runner_id: int) -> Submission: ...

    def get_submission(self, submission_id: int) -> Submission: ...

    def submission_of_runner(self, runner_id: int) -> Submission | None: ...

    def finish_submission(self, submission_id: int, status: str, **fields) -> Submission | None:
        """Move it on when nsml.core.states allows; a scored or failed one never changes again (None)."""

    def unfinished_submissions(self) -> list[Submission]: ...

    def rescore_submission(self, submission_id: int, scoring: str, score: float | None = None, error: str = "") -> None:
        """Its score under a changed evaluator (`scoring`), or why it could not be computed."""

    def scored_otherwise(self, dataset: str, scoring: str) -> list[Submission]:
        """Ranked scored submissions whose score was computed another way than `scoring`."""

    def last_ranked_submit(self, dataset: str, owner: str) -> float | None: ...

    def test_submit_times(self, dataset: str, owner: str, since: float) -> list[float]: ...

    def list_submissions(self, dataset: str, owner: str | None = None, limit: int = 100) -> list[Submission]: ...

    def submissions_of(self, sessions: Iterable[str] = (), runner_ids: Iterable[int] = ()) -> list[Submission]:
        """Those of these sessions' checkpoints and those these submit sessions ran, oldest first."""

    def board(self, dataset: str, order: str, every: bool = False, scoring: str | None = None) -> list[BoardRow]:
        """Ranked: each owner's best (ties: the earlier), or every one; never a test submit."""


@runtime_checkable
class IdentityStore(Protocol):
    """Users, their API tokens (only hashes stored), teams and dataset grants."""

    def add_user(self, name: str, token: str | None = None, *, password_hash: str = "", admin: bool = False,
                 exist_ok: bool = True) -> User: ...

    def get_user(self, name: str) -> User: ...

    def list_users(self) -> list[User]: ...

    def user_count(self) -> int: ...

    def remove_user(self, name: str) -> None:
        """Their tokens and memberships go at once; what they own stays, under their name."""

    def password_hash(self, name: str) -> str | None: ...

    def set_password_hash(self, name: str, password_hash: str) -> None: ...

    def user_for_token(self, token: str) -> str | None: ...

    def actor_for_token(self, token: str, now: float | None = None) -> tuple[Actor, int] | None:
        """(who holds it, the token's id) while it is neither revoked nor expired; else None."""

    def actor(self, name: str) -> Actor: ...

    def add_token(self, user: str, token: str, label: str, expires: float | None) -> Token: ...

    def list_tokens(self, user: str) -> list[Token]: ...

    def revoke_token(self, user: str, token_id: int) -> Token:
        """Only the user's own; NotFound otherwise."""

    def touch_token(self, token_id: int, audit_every: float = 3600.0) -> None: ...

    def add_team(self, name: str, owner: str) -> Team: ...

    def join_team(self, team: str, user: str) -> Team: ...

    def get_team(self, name: str) -> Team: ...

    def list_teams(self) -> list[Team]: ...

    def grant_dataset(self, name: str, grantee: str, grant: bool = True) -> None:
        """Let 'user:NAME' or 'team:NAME' read a private dataset (grant=False: no longer)."""


@runtime_checkable
class AuditStore(Protocol):
    def audit(self, actor: str, action: str, target: str = "", detail: str = "") -> None:
        """One row; fields are cut to their column's length, never refused."""

    def audit_log(self, limit: int = 100, actor: str | None = None, action: str | None = None) -> list[AuditEntry]:
        """Newest first."""


@runtime_checkable
class UsageStore(Protocol):
    def add_usage(self, session_id: int, at: float, cpu: float, memory: int, gpus: list[dict[str, Any]],
                  final: bool = False) -> None:
        """`final`: the run's end summary (UsageSample.final), not a reading of one moment."""

    def usage(self, session_id: int, since: float = 0.0) -> list[UsageSample]:
        """Oldest first."""

    def latest_usage(self, session_ids: list[int], since: float = 0.0) -> dict[int, UsageSample]:
        """Each session's newest sample after `since`; sessions without one are left out."""

    def drop_usage(self, session_id: int) -> None: ...

    def thin_usage(self, before: float, spacing: float) -> int:
        """Of samples before `before`, keep the first of each `spacing` seconds and every final
        one; returns how many went."""


@runtime_checkable
class LeaseStore(Protocol):
    """Work that must run in exactly one of several servers sharing the store (scheduling,
    sweeping blobs) runs in the one holding its lease; another takes it over once it expires."""

    def take_lease(self, name: str, holder: str, ttl: float, now: float | None = None) -> bool:
        """Take or renew it for `ttl` seconds; True when `holder` has it now. Two holders never
        both get True for overlapping terms."""

    def release_lease(self, name: str, holder: str) -> None:
        """Give it up at once (clean shutdown), if `holder` has it."""

    def lease_holder(self, name: str, now: float | None = None) -> str | None: ...


@runtime_checkable
class ClickStore(Protocol):
    """The dashboard's own usage events (nsml.core.clicks), for a server that opted in."""

    def add_ui_events(self, user: str, at: float, events: list[tuple[str, str, int | None]]) -> None:
        """Store checked (page, action, ms) events of `user` at time `at`, in their order."""

    def ui_events(self, since: float) -> list[tuple[float, str, str, str, int | None]]:
        """(at, user, page, action, ms) since `since`, oldest first; at most the newest 200,000."""

    def forget_ui_events(self, before: float) -> int:
        """Delete the events older than `before`; returns how many."""


CAPABILITIES = (FileStore, DatasetStore, SessionStore, CheckpointStore, MetricStore, RunsStore, BoardStore,
                IdentityStore, AuditStore, UsageStore, LeaseStore, ClickStore, AccountingStore, StudyStore)


@runtime_checkable
class Store(FileStore, DatasetStore, SessionStore, CheckpointStore, MetricStore, RunsStore, BoardStore, IdentityStore,
            AuditStore, UsageStore, LeaseStore, ClickStore, AccountingStore, StudyStore, Protocol):
    """Everything the server needs of its metadata store."""

    def close(self) -> None: ...
