"""Frozen records the store hands out; ORM rows never leave nsml.store.sql."""

from dataclasses import dataclass, field
from typing import Any

from .resources import Resources
from .states import SessionKind, Status, SubmissionStatus


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative, '/'-separated
    size: int
    sha256: str


@dataclass(frozen=True)
class Dataset:
    name: str
    owner: str
    description: str
    private: bool
    size: int
    file_count: int
    created: float
    updated: float
    fileset_id: int
    has_test: bool
    metric: str = ""  # '' = no leaderboard; accuracy, mse, f1, roc-auc or custom (evaluation.py)
    order: str = "desc"  # which scores rank first: desc (higher is better) or asc
    submit_interval: float = 0.0  # minimum seconds between an owner's ranked submits; 0 = no limit
    tags: tuple[str, ...] = ()  # '#word' labels shown by `dataset ls` (at most 7)
    grants: tuple[str, ...] = ()  # who else reads a private one: 'user:NAME', 'team:NAME' (policy)

    @property
    def has_leaderboard(self) -> bool:
        return bool(self.metric)


@dataclass(frozen=True)
class Session:
    id: int
    owner: str
    dataset: str
    number: int
    entry: str
    args: str
    status: Status
    resources: Resources
    created: float
    memo: str = ""
    exit_code: int | None = None
    started: float | None = None
    ended: float | None = None
    error: str = ""
    image: str = ""
    code_fileset_id: int | None = None
    outputs_fileset_id: int | None = None
    supervisor_pid: int | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    last_values: dict[str, Any] = field(default_factory=dict)
    journal_offset: int = 0
    log_offset: int = 0
    gpu_ids: str = ""  # comma-separated, as handed to CUDA_VISIBLE_DEVICES
    kind: SessionKind = SessionKind.NORMAL
    source: str = ""  # for fork/submit/infer: the session whose code and checkpoint it relaunched
    source_checkpoint: str = ""
    shm_size: int = 0  # bytes of shared memory asked for with run --shm-size; 0 = the default
    batch_size: int = 0  # submit -b N: passed to the data loader / infer that take one; 0 = not given
    removed: float | None = None  # when `rm -s` took it out of listings (its stored files kept)
    attempt: int = 1  # `nsml resume` runs the session again as attempt 2, 3, …, under the same name
    resumed_from: str = ""  # the checkpoint the latest resume restarted from ('' for attempt 1)
    team: str = ""  # the one team it belongs to ('' for none): who may read it, and later quotas
    visibility: str = "team"  # private, team or public (nsml.core.policy)
    priority: int = 0  # run --priority: -1 low, 0 normal, 1 high (admins only)
    time_limit: float | None = None  # run --time-limit, in seconds: stopped by the platform once reached
    gpu_model: str = ""  # run --gpu-model: only GPUs whose model contains this
    node: str = ""  # where it runs (or ran): a node of the executor's inventory
    heartbeat: float | None = None  # when its supervisor last reported in: liveness
    # Stop-and-go (nsml.server.pausing). `pausable`: this attempt's script bound a save and the
    # library handles SIGUSR1 (its journal said so). `pause_requested`: a pause or preemption
    # under way (PauseRequest: placement must not pick the session again), asked at
    # `pause_requested_at`; `pause_checkpoint`: the checkpoint the library saved for it;
    # `pause_error`: why that save failed. Reset when the next attempt is queued.
    pausable: bool = False
    pause_requested: str = ""
    pause_requested_at: float | None = None
    pause_checkpoint: str = ""
    pause_error: str = ""
    preemptible: bool = False  # run --preemptible: fills idle GPUs, paused and requeued when a regular session needs them

    @property
    def name(self) -> str:
        return f"{self.owner}/{self.dataset}/{self.number}"

    @property
    def has_dataset(self) -> bool:
        from .naming import NO_DATASET

        return self.dataset != NO_DATASET

    @property
    def command(self) -> str:
        return f"python {self.entry} {self.args}".rstrip()


@dataclass(frozen=True)
class Checkpoint:
    session_id: int
    name: str
    created: float
    elapsed: float  # seconds since the previous checkpoint of the session (or its start)
    size: int
    summary: dict[str, Any]
    fileset_id: int


@dataclass(frozen=True)
class MetricPoint:
    key: str
    step: float | None
    walltime: float
    value: Any


@dataclass(frozen=True)
class SessionEvent:
    at: float
    status: str
    note: str = ""


@dataclass(frozen=True)
class UsageSample:
    at: float
    cpu: float  # percent of one core, summed over the session's processes
    memory: int  # bytes resident
    gpus: list[dict[str, Any]] = field(default_factory=list)  # [{"index", "util", "memory"}]
    # The summary of a whole run taken at its end (nsml.scheduler.usage: cpu is then the average
    # over the run, memory the peak of its largest process), not a reading of one moment.
    final: bool = False


@dataclass(frozen=True)
class Submission:
    id: int
    dataset: str
    owner: str
    session: str  # the submitted session
    checkpoint: str
    test: bool  # submit -t: the whole pipeline, never ranked
    runner: str  # the submit session that ran it ('' once removed)
    runner_id: int | None
    status: SubmissionStatus
    step: str  # where it failed: load, infer, write, evaluate
    error: str
    score: float | None
    created: float
    finished: float | None
    scoring: str = ""  # how the score was computed (nsml.core.scoring.scoring_key)
    prediction_format: str = ""  # what wrote the predictions (nsml.client.predict's *_FORMAT)
    rescore_error: str = ""  # "KEY\tmessage": re-scoring it under KEY failed


@dataclass(frozen=True)
class BoardRow:
    rank: int
    owner: str
    score: float
    session: str
    checkpoint: str
    count: int  # the owner's ranked submissions on this board
    created: float


@dataclass(frozen=True)
class User:
    name: str
    admin: bool
    default_team: str  # the team `nsml run` puts a session in without --team ('' for none)
    teams: tuple[str, ...]
    created: float
    has_password: bool  # False: logs in with an API token only


@dataclass(frozen=True)
class Team:
    name: str
    owner: str
    members: tuple[str, ...]
    created: float


@dataclass(frozen=True)
class Token:
    """An API token as listed: never the token itself, which only its holder has."""

    id: int
    label: str
    created: float
    expires: float | None
    last_used: float | None
    revoked: float | None


@dataclass(frozen=True)
class AuditEntry:
    at: float
    actor: str
    action: str   # stop, rm, submit, grant, login, token, user, team, …
    target: str   # the session, dataset, user or team acted on
    detail: str = ""


@dataclass(frozen=True)
class Study:
    """An AutoML study (issue 16): its parent session (kind automl) and the config it runs."""

    id: int
    session_id: int
    config: dict[str, Any]  # as given (nsml.core.automl_config reads it)
    seed: int
    status: str  # running, stopping, stopped, exited
    created: float


@dataclass(frozen=True)
class Trial:
    """One trial of a study: numbered once, its parameters, its child session, its measure."""

    id: int
    study_id: int
    number: int
    params: dict[str, Any]
    session_id: int | None  # the child session, once created
    state: str  # running, complete, pruned, fail
    value: float | None  # the final measure, once complete
    steps: dict[int, float]  # the measure at each compare step
    parent: int | None  # PBT: the trial number it was forked from
    created: float
