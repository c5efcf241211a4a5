"""ORM rows. They never leave nsml.store.sql: the store converts them to nsml.core entities."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class UserRow(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_sha256: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)  # unused since 0005: tokens
    created: Mapped[float] = mapped_column(Float)
    password_hash: Mapped[str] = mapped_column(String(256), default="")  # '' = token login only (0005)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    default_team: Mapped[str] = mapped_column(String(64), default="")


class TokenRow(Base):
    """An API token, stored as its SHA-256 (a token is 256 random bits: no salt needed)."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(64), default="")
    created: Mapped[float] = mapped_column(Float)
    expires: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: never
    last_used: Mapped[float | None] = mapped_column(Float, nullable=True)
    revoked: Mapped[float | None] = mapped_column(Float, nullable=True)


class TeamRow(Base):
    __tablename__ = "teams"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    owner: Mapped[str] = mapped_column(String(64))
    created: Mapped[float] = mapped_column(Float)


class TeamMemberRow(Base):
    __tablename__ = "team_members"
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)


class DatasetGrantRow(Base):
    """Who else may read a private dataset: grantee 'user:NAME' or 'team:NAME'."""

    __tablename__ = "dataset_grants"
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    grantee: Mapped[str] = mapped_column(String(72), primary_key=True)


class AuditRow(Base):
    """Who did what: stops, removals, submits, grants, logins, token use (`nsml audit`)."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[float] = mapped_column(Float, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(256), default="")
    detail: Mapped[str] = mapped_column(Text, default="")


class LeaseRow(Base):
    """Work that must run in one server at a time (scheduling, sweeping blobs): who holds it
    until when (0007). Taken and renewed by nsml.store.sql.leases."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires: Mapped[float] = mapped_column(Float)


class FilesetRow(Base):
    """A set of files stored as blobs: a dataset version, a code snapshot, a checkpoint, outputs."""

    __tablename__ = "filesets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    file_count: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[float] = mapped_column(Float)


class FileRow(Base):
    __tablename__ = "files"
    fileset_id: Mapped[int] = mapped_column(ForeignKey("filesets.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)


class DatasetRow(Base):
    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(32), unique=True)
    owner: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    private: Mapped[bool] = mapped_column(Boolean, default=False)
    fileset_id: Mapped[int] = mapped_column(ForeignKey("filesets.id"))
    has_test: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)
    # Leaderboard settings (issue 3): metric '' means no leaderboard.
    metric: Mapped[str] = mapped_column(String(16), default="")
    order: Mapped[str] = mapped_column(String(4), default="desc")
    submit_interval: Mapped[float] = mapped_column(Float, default=0.0)  # seconds between real submits per owner
    tags: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of '#word' tags (0004)


class SessionCounterRow(Base):
    """Last session number per (owner, dataset), so a deleted session's number is never reused."""

    __tablename__ = "session_counters"
    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    dataset: Mapped[str] = mapped_column(String(32), primary_key=True)
    last: Mapped[int] = mapped_column(Integer, default=0)


class SessionRow(Base):
    __tablename__ = "sessions"
    __table_args__ = (
        UniqueConstraint("owner", "dataset", "number"),
        Index("ix_sessions_status", "status"),
        Index("ix_sessions_created", "created", "id"),  # the newest-first session list (0003)
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(32))
    number: Mapped[int] = mapped_column(Integer)
    entry: Mapped[str] = mapped_column(String(1024))
    args: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16))
    cpus: Mapped[float] = mapped_column(Float)
    memory: Mapped[int] = mapped_column(BigInteger)
    gpus: Mapped[int] = mapped_column(Integer)
    gpu_ids: Mapped[str] = mapped_column(String(256), default="")
    created: Mapped[float] = mapped_column(Float)
    started: Mapped[float | None] = mapped_column(Float, nullable=True)
    ended: Mapped[float | None] = mapped_column(Float, nullable=True)
    memo: Mapped[str] = mapped_column(Text, default="")
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    image: Mapped[str] = mapped_column(String(256), default="")
    code_fileset_id: Mapped[int | None] = mapped_column(ForeignKey("filesets.id"), nullable=True)
    outputs_fileset_id: Mapped[int | None] = mapped_column(ForeignKey("filesets.id"), nullable=True)
    supervisor_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    summary: Mapped[str] = mapped_column(Text, default="{}")
    last_values: Mapped[str] = mapped_column(Text, default="{}")
    journal_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    log_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    report_count: Mapped[int] = mapped_column(BigInteger, default=0)
    # How the session came to be: normal (run), fork, submit, submit_test, infer; the session and
    # checkpoint it was relaunched from, for the other kinds.
    kind: Mapped[str] = mapped_column(String(16), default="normal")
    source: Mapped[str] = mapped_column(String(160), default="")
    source_checkpoint: Mapped[str] = mapped_column(String(256), default="")
    # run --shm-size in bytes (0: the default); when `rm -s` took it out of listings, its
    # stored code, outputs and checkpoints kept (0004).
    shm_size: Mapped[int] = mapped_column(BigInteger, default=0)
    batch_size: Mapped[int] = mapped_column(Integer, default=0)  # submit -b (0: not given) (0004)
    removed: Mapped[float | None] = mapped_column(Float, nullable=True)
    # `nsml resume`: the attempt now running or last run (1 for the first), and the checkpoint
    # the latest resume restarted from ('' before any) (0004).
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    resumed_from: Mapped[str] = mapped_column(String(256), default="")
    team: Mapped[str] = mapped_column(String(64), default="")  # (0005)
    preemptible: Mapped[bool] = mapped_column(Boolean, default=False)  # run --preemptible (0014)
    visibility: Mapped[str] = mapped_column(String(8), default="team")
    # The scheduler's part (0006): run --priority/--time-limit/--gpu-model, the node it was
    # placed on, and its supervisor's last heartbeat.
    priority: Mapped[int] = mapped_column(Integer, default=0)
    time_limit: Mapped[float | None] = mapped_column(Float, nullable=True)
    gpu_model: Mapped[str] = mapped_column(String(64), default="")
    node: Mapped[str] = mapped_column(String(64), default="")
    heartbeat: Mapped[float | None] = mapped_column(Float, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")  # markdown, beside the memo (0010)
    # Stop-and-go (0013; core Session's fields of the same names): whether this attempt's
    # script can be paused, the pending request ('', 'pause', 'preempt') and when it was made,
    # and what the library reported of it (the checkpoint it saved, or why its save failed).
    # Kept on the row, not in memory, so a pending request survives a server restart.
    pausable: Mapped[bool] = mapped_column(Boolean, default=False)
    pause_requested: Mapped[str] = mapped_column(String(8), default="")
    pause_requested_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    pause_checkpoint: Mapped[str] = mapped_column(String(256), default="")
    pause_error: Mapped[str] = mapped_column(Text, default="")


class SessionParamRow(Base):
    """One parameter of a session (nsml.core.params): parsed from its arguments at creation,
    merged with its effective configuration later. `text` is the value as written, `num` its
    number when it is one; (key, num) is indexed for the runs table's filters (0009)."""

    __tablename__ = "session_params"
    __table_args__ = (Index("ix_session_params_key_num", "key", "num"),)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    num: Mapped[float | None] = mapped_column(Float, nullable=True)
    text: Mapped[str | None] = mapped_column(Text, nullable=True)


class SessionTagRow(Base):
    """A tag on a session (`nsml tag S +x -y`, the web); by tag for `tag:x` queries (0010)."""

    __tablename__ = "session_tags"
    __table_args__ = (Index("ix_session_tags_tag", "tag"),)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)


class UiEventRow(Base):
    """One dashboard interaction, recorded only when the server opted in (nsml.core.clicks):
    the kind of page, the action, its time; never a URL or a name (0011)."""

    __tablename__ = "ui_events"
    __table_args__ = (Index("ix_ui_events_at", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[float] = mapped_column(Float)
    user: Mapped[str] = mapped_column(String(64))
    page: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    ms: Mapped[int | None] = mapped_column(Integer, nullable=True)


class SessionEventRow(Base):
    """Status history: one row per status change, for the web's Info tab."""

    __tablename__ = "session_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    at: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")


class UsageRow(Base):
    """Resource usage samples of a running session (CPU %, resident memory, per-GPU figures)."""

    __tablename__ = "usage"
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True)
    at: Mapped[float] = mapped_column(Float, primary_key=True)
    cpu: Mapped[float] = mapped_column(Float)  # percent of one core, summed over the process group
    memory: Mapped[int] = mapped_column(BigInteger)  # bytes resident
    gpus: Mapped[str] = mapped_column(Text, default="[]")  # [{"index", "util", "memory"}]
    final: Mapped[bool] = mapped_column(Boolean, default=False)  # a run's end summary (UsageSample.final)


class SubmissionRow(Base):
    """One `nsml submit`: a checkpoint scored on a dataset's hidden test split."""

    __tablename__ = "submissions"
    __table_args__ = (Index("ix_submissions_board", "dataset", "test", "status"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str] = mapped_column(String(64))
    session: Mapped[str] = mapped_column(String(160))  # the submitted session's name
    checkpoint: Mapped[str] = mapped_column(String(256))
    test: Mapped[bool] = mapped_column(Boolean, default=False)  # submit -t: never ranked
    runner_id: Mapped[int | None] = mapped_column(ForeignKey("sessions.id", ondelete="SET NULL"), nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # running, evaluating, scored, failed
    step: Mapped[str] = mapped_column(String(16), default="")  # where it failed: load, infer, write, evaluate
    error: Mapped[str] = mapped_column(Text, default="")
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    created: Mapped[float] = mapped_column(Float)
    finished: Mapped[float | None] = mapped_column(Float, nullable=True)
    # How the score was computed (nsml.core.scoring.scoring_key; '' before 0004), the format of
    # the prediction file (nsml.client.predict), why re-scoring under a newer key failed ("KEY\tmessage").
    scoring: Mapped[str] = mapped_column(String(96), default="")
    prediction_format: Mapped[str] = mapped_column(String(8), default="")
    rescore_error: Mapped[str] = mapped_column(Text, default="")


class CheckpointRow(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("session_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    created: Mapped[float] = mapped_column(Float)
    elapsed: Mapped[float] = mapped_column(Float)
    size: Mapped[int] = mapped_column(BigInteger)
    summary: Mapped[str] = mapped_column(Text, default="{}")
    fileset_id: Mapped[int] = mapped_column(ForeignKey("filesets.id"))


class SeriesRow(Base):
    """One metric key of one session, with a summary of its points kept up to date by every
    ingest (the runs table's metric columns read it, never the points): how many, the extremes
    and the last of its numbers. Its points are in point_chunks (nsml/store/packed.py)."""

    __tablename__ = "series"
    # By key (0009): the runs table sorts and filters every session by one key's summary (a
    # plain index: written once per series, never by the summary updates).
    __table_args__ = (UniqueConstraint("session_id", "key"), Index("ix_series_key", "key"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(256))
    count: Mapped[int] = mapped_column(BigInteger, default=0)  # points, numbers or not
    numeric: Mapped[int] = mapped_column(BigInteger, default=0)  # points whose value is a number
    chunks: Mapped[int] = mapped_column(Integer, default=0)  # point_chunks rows: seq 0 .. chunks - 1
    # Whether the points, in the order they came, are already in step order (no step counts as
    # lowest): reads then stream chunks as they are, without merging (nearly every series).
    ordered: Mapped[bool] = mapped_column(Boolean, default=True)
    tail_step: Mapped[float | None] = mapped_column(Float, nullable=True)  # the newest point's step
    first_wall: Mapped[float | None] = mapped_column(Float, nullable=True)  # of the first number
    last_value: Mapped[float | None] = mapped_column(Float, nullable=True)  # the newest number
    last_step: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_wall: Mapped[float | None] = mapped_column(Float, nullable=True)
    min_value: Mapped[float | None] = mapped_column(Float, nullable=True)  # the first of equal lows
    min_step: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_value: Mapped[float | None] = mapped_column(Float, nullable=True)  # the first of equal highs
    max_step: Mapped[float | None] = mapped_column(Float, nullable=True)


class PointChunkRow(Base):
    """Up to CHUNK consecutive points of a series, packed (nsml/store/packed.py says how).

    Only a series' last chunk (seq = chunks - 1) is ever rewritten, and only to grow. Small
    columns come first so that SQLite reads the blobs (overflow pages) only when asked for.
    """

    __tablename__ = "point_chunks"
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(Integer)
    nnum: Mapped[int] = mapped_column(Integer)  # points whose value is a number
    nnum_step: Mapped[int] = mapped_column(Integer)  # ... and that have a step
    nulls: Mapped[int] = mapped_column(Integer)  # points without a step
    step0: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: no point has a step
    step1: Mapped[float | None] = mapped_column(Float, nullable=True)
    wall0: Mapped[float] = mapped_column(Float)
    wall1: Mapped[float] = mapped_column(Float)
    lo_value: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: no number
    lo_step: Mapped[float | None] = mapped_column(Float, nullable=True)
    lo_wall: Mapped[float | None] = mapped_column(Float, nullable=True)
    hi_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    hi_step: Mapped[float | None] = mapped_column(Float, nullable=True)
    hi_wall: Mapped[float | None] = mapped_column(Float, nullable=True)
    blocks: Mapped[bytes] = mapped_column(LargeBinary)
    extra: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON: position -> JSON of a non-number
    steps: Mapped[bytes] = mapped_column(LargeBinary)
    walls: Mapped[bytes] = mapped_column(LargeBinary)
    vals: Mapped[bytes] = mapped_column(LargeBinary)  # the values ("values" is an SQL keyword)


class UsageLedgerRow(Base):
    """One attempt of a session that held resources, written when it ends (0014): GPU-time
    accounting and credits read it. Not tied to the session row, so removing a session does
    not erase what it used."""

    __tablename__ = "usage_ledger"
    __table_args__ = (Index("ix_usage_ledger_ended", "ended"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(Integer)
    owner: Mapped[str] = mapped_column(String(64))
    team: Mapped[str] = mapped_column(String(64), default="")
    gpus: Mapped[int] = mapped_column(Integer)
    cpus: Mapped[float] = mapped_column(Float)
    memory: Mapped[int] = mapped_column(BigInteger)
    started: Mapped[float] = mapped_column(Float)
    ended: Mapped[float] = mapped_column(Float)


class StudyRow(Base):
    """An AutoML study (0015): its parent session (kind automl), the config it was started
    with (JSON), its sampler's seed and where it stands."""

    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), unique=True)
    config: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # running, stopping, stopped, exited
    created: Mapped[float] = mapped_column(Float)


class StudyTrialRow(Base):
    """One trial of a study (0015): numbered once (unique per study, so a restarted server
    cannot start a trial twice), its parameters, its child session, what the sampler was told."""

    __tablename__ = "study_trials"
    __table_args__ = (UniqueConstraint("study_id", "number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    params: Mapped[str] = mapped_column(Text)  # JSON {name: value}
    session_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the child, once created
    state: Mapped[str] = mapped_column(String(16))  # running, complete, pruned, fail
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    steps: Mapped[str] = mapped_column(Text, default="{}")  # JSON {step: measure} at each compare step
    parent: Mapped[int | None] = mapped_column(Integer, nullable=True)  # PBT: the trial it was forked from
    created: Mapped[float] = mapped_column(Float)
