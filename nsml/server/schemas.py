"""What the API returns (pydantic, the OpenAPI contract) and how entities become it."""

import math
from collections.abc import Sequence
from typing import Any

from nsml.core.tags import MAX_NOTE, MAX_TAGS
from pydantic import BaseModel, Field

from nsml.core.entities import Checkpoint, Dataset, Session, Submission
from nsml.scheduler.placement import PRIORITY_NAMES

from .bounds import MAX_MEMO, MAX_NAME, MAX_SECONDS, MAX_TAGS_GIVEN, MAX_TEXT


# The request body of an upload (dataset push, code upload): documented, so clients and fuzzers
# know to send an uncompressed tar (the routes read it as a stream, not through pydantic).
TAR_BODY = {"requestBody": {"required": True, "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}}}}


def finite(values: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN or Infinity: send them as strings so browsers and clients can parse."""
    out = {}
    for key, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        out[key] = value
    return out


class DatasetPublic(BaseModel):
    name: str
    owner: str
    description: str
    private: bool
    size: int
    file_count: int
    created: float
    updated: float
    has_test: bool
    metric: str  # '' when the dataset has no leaderboard
    order: str
    submit_interval: float
    tags: list[str] = []  # '#word' labels

    @classmethod
    def of(cls, d: Dataset) -> "DatasetPublic":
        return cls(**{k: list(v) if isinstance(v := getattr(d, k), tuple) else v for k in cls.model_fields})


class FilePublic(BaseModel):
    path: str
    size: int


class SessionPublic(BaseModel):
    name: str
    owner: str
    dataset: str
    number: int
    entry: str
    args: str
    command: str
    status: str
    exit_code: int | None
    created: float
    started: float | None
    ended: float | None
    memo: str
    error: str
    image: str
    cpus: float
    memory: int
    gpus: int
    gpu_ids: str
    summary: dict[str, Any]
    last_values: dict[str, Any]
    kind: str  # normal, fork, submit, submit_test, infer
    source: str  # the session a fork/submit/infer relaunched
    source_checkpoint: str
    shm_size: int = 0  # bytes asked for with run --shm-size (0: the default)
    removed: float | None = None  # when `rm -s` took it out of listings (its stored files are kept)
    attempt: int = 1  # nsml resume: 2, 3, … (the same session, run again)
    resumed_from: str = ""  # the checkpoint the latest resume restarted from
    team: str = ""  # the team it belongs to ('' for none)
    visibility: str = "team"  # private, team or public: who may read it (nsml.core.policy)
    priority: str = "normal"  # low, normal or high
    time_limit: float | None = None  # seconds after its start at which the platform stops it
    gpu_model: str = ""  # only GPUs whose model contains this
    node: str = ""  # the node it runs (or ran) on
    heartbeat: float | None = None  # when its supervisor last reported in
    preemptible: bool = False  # run --preemptible: paused and requeued when a regular session needs its GPUs
    # A queued session's place in the queue (1: next) and why it waits (nsml.scheduler.placement)
    queue_position: int | None = None
    queue_reason: str = ""
    zombie: list[int] = []  # allocated GPUs at 0 % utilisation past the server's zombie threshold
    # Stop-and-go (nsml pause; nsml.server.pausing): whether its script can be paused now, the
    # request under way ('', pause, preempt), the checkpoint it paused at, why its save failed.
    pausable: bool = False
    pause_requested: str = ""
    pause_checkpoint: str = ""
    pause_error: str = ""

    @classmethod
    def of(cls, s: Session, waiting=None, zombie: list[int] | None = None) -> "SessionPublic":
        return cls(
            name=s.name, owner=s.owner, dataset=s.dataset, number=s.number, entry=s.entry, args=s.args,
            command=s.command, status=s.status.value, exit_code=s.exit_code, created=s.created,
            started=s.started, ended=s.ended, memo=s.memo, error=s.error, image=s.image,
            cpus=s.resources.cpus, memory=s.resources.memory, gpus=s.resources.gpus, gpu_ids=s.gpu_ids,
            summary=finite(s.summary), last_values=finite(s.last_values), kind=s.kind, source=s.source,
            source_checkpoint=s.source_checkpoint, shm_size=s.shm_size, removed=s.removed,
            attempt=s.attempt, resumed_from=s.resumed_from, team=s.team, visibility=s.visibility,
            priority=PRIORITY_NAMES.get(s.priority, str(s.priority)), time_limit=s.time_limit, gpu_model=s.gpu_model,
            node=s.node, heartbeat=s.heartbeat, preemptible=s.preemptible, queue_position=waiting.position if waiting else None,
            queue_reason=waiting.reason if waiting else "", zombie=zombie or [],
            pausable=s.pausable, pause_requested=s.pause_requested, pause_checkpoint=s.pause_checkpoint,
            pause_error=s.pause_error,
        )


class CheckpointSubmission(BaseModel):
    """One `nsml submit` of a checkpoint, as its checkpoint list shows it."""
    id: int
    status: str  # running, evaluating, scored, failed
    score: float | None
    test: bool  # submit -t: scored, never ranked
    runner: str  # the submit session that ran it ('' once removed)
    created: float

    @classmethod
    def of(cls, s: Submission) -> "CheckpointSubmission":
        return cls(id=s.id, status=s.status.value, score=s.score, test=s.test, runner=s.runner, created=s.created)


class CheckpointPublic(BaseModel):
    name: str
    created: float
    elapsed: float
    size: int
    summary: dict[str, Any]
    submissions: list[CheckpointSubmission] = []  # its submits, oldest first

    @classmethod
    def of(cls, c: Checkpoint, submissions: Sequence[Submission] = ()) -> "CheckpointPublic":
        return cls(name=c.name, created=c.created, elapsed=c.elapsed, size=c.size, summary=finite(c.summary),
                   submissions=[CheckpointSubmission.of(s) for s in submissions])


class LogChunk(BaseModel):
    offset: int  # where the next read should start
    text: str
    status: str
    done: bool  # the session has ended and every byte of its log has been read


class Offset(BaseModel):
    offset: int


class JournalNote(BaseModel):
    about: str  # what it is about ("finite:train/loss"): the supervisor writes one note per about
    text: str   # the line for the session's log


class JournalOffset(Offset):
    notes: list[JournalNote] = []  # what the ingest refused


MAX_BYTES = 2**62  # a memory figure (a BIGINT column)
MAX_PERCENT = 1e6  # CPU % of one core: ten thousand cores busy


class FirstReading(BaseModel):
    """The supervisor's reading of the user's process group soon after its start."""
    ago: float = Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)  # seconds before the report was sent
    cpu: float = Field(ge=0, le=MAX_PERCENT, allow_inf_nan=False)  # % of one core, since the group started
    memory: int = Field(ge=0, le=MAX_BYTES)  # bytes resident


class RunUsage(BaseModel):
    """What the run used as a whole, from the kernel's accounting (nsml.scheduler.userproc.RunUsage)."""
    cpu_seconds: float = Field(ge=0, le=MAX_SECONDS * 1e4, allow_inf_nan=False)  # user + system
    wall_seconds: float = Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)
    peak_memory: int = Field(ge=0, le=MAX_BYTES)  # bytes: the largest process's peak resident set
    first: FirstReading | None = None


class ExitReport(BaseModel):
    exit_code: int
    stopped: bool = False
    relaunch: dict[str, Any] | None = None  # fork/submit/infer: the step nsml.paused() reached, and its error
    reason: str = Field("", max_length=200)  # what ended it, when the supervisor knows: "Out of memory", "disk full"
    usage: RunUsage | None = None  # for the run's end sample; absent from older supervisors


class MemoUpdate(BaseModel):
    memo: str = Field(max_length=MAX_MEMO, description=f"At most {MAX_MEMO} characters.")


class TagUpdate(BaseModel):
    add: list[str] = Field(default=[], max_length=MAX_TAGS, description="Tags to put on the session.")
    remove: list[str] = Field(default=[], max_length=MAX_TAGS, description="Tags to take off (absent ones are no error).")


class Tags(BaseModel):
    tags: list[str]


class NoteUpdate(BaseModel):
    note: str = Field(max_length=MAX_NOTE, description=f"Markdown, at most {MAX_NOTE} characters.")


class Note(BaseModel):
    note: str


class Removed(BaseModel):
    removed: list[str]


class StudyPublic(BaseModel):
    """An AutoML study as `nsml automl ps` and the web list it (named by its parent session)."""

    name: str
    status: str  # the parent session's: running, exited, stopped, failed
    study_status: str  # running, stopping (no new trials), stopped, exited
    memo: str
    error: str  # why it stopped, when it failed (a measure never reported)
    created: float
    ended: float | None
    owner: str
    dataset: str
    measure: str
    order: str  # descending: higher is better
    algorithm: str
    scheduler: str
    population: int
    max_trials: int | None
    trial_count: int
    running: int
    complete: int
    pruned: int
    fail: int
    best_value: float | None
    best_trial: int | None
    elapsed: float


class TrialPublic(BaseModel):
    number: int
    params: dict[str, Any]
    state: str  # running, complete, pruned, fail
    value: float | None  # the measure it ended with
    steps: dict[str, float]  # the measure at each compare step
    parent: int | None  # PBT: the trial it was forked from
    created: float
    session: str  # its child session ('' before it is created, or when one may not read it)
    session_status: str
    last_values: dict[str, Any]


class StudyDetail(StudyPublic):
    config: dict[str, Any]
    seed: int
    trials: list[TrialPublic] = []


class TrialModel(BaseModel):
    """`nsml automl rank`: a trial's best saved model."""

    trial: int
    session: str
    checkpoint: str
    value: float
    params: dict[str, Any]


class Whoami(BaseModel):
    user: str
    server: str
    version: str
    admin: bool = False  # an admin of this server (the web shows admin pages' links)
    teams: list[str] = []


class SubmissionPublic(BaseModel):
    id: int
    dataset: str
    owner: str
    session: str
    checkpoint: str
    test: bool
    runner: str  # the submit session that runs it: `nsml logs RUNNER` shows its output
    runner_status: str
    status: str  # running, evaluating, scored, failed
    step: str  # on failure: load, infer, write or evaluate
    error: str
    score: float | None  # never for a test submit (-t): it says only that the evaluator returned one
    created: float
    finished: float | None
    notice: str = ""  # e.g. that evaluation.py ran without a sandbox on this server

    @classmethod
    def of(cls, s: Submission, runner_status: str = "", notice: str = "") -> "SubmissionPublic":
        fields = {k: getattr(s, k) for k in cls.model_fields if k not in ("runner_status", "notice")}
        if s.test:  # also for a test submit scored before scores of test submits were withheld
            fields["score"] = None
        return cls(**fields, runner_status=runner_status, notice=notice)


class BoardRowPublic(BaseModel):
    rank: int
    owner: str
    score: float
    session: str
    checkpoint: str
    count: int
    created: float
    removed: bool = False  # the session was removed (rm): the row stays, without a link to it


class ArchivedRowPublic(BaseModel):
    """A submission scored another way than the board now scores (nsml.server.rescoring), which
    cannot be scored again: kept apart, never ranked."""

    owner: str
    score: float
    scored_with: str  # the metric its score was computed with ('' if unknown)
    reason: str
    session: str
    checkpoint: str
    created: float


class BoardPublic(BaseModel):
    dataset: str
    metric: str
    order: str
    all: bool  # every submission, or each owner's best
    rows: list[BoardRowPublic]
    rescoring: int = 0  # submissions scored another way, being scored again with this metric
    archived: list[ArchivedRowPublic] = []  # scored another way and not scorable again: not ranked


class DatasetChange(BaseModel):
    description: str | None = Field(None, max_length=MAX_TEXT)
    metric: str | None = Field(None, max_length=MAX_NAME)  # '' removes the leaderboard
    order: str | None = Field(None, max_length=MAX_NAME)
    submit_interval: float | None = Field(None, ge=0, le=MAX_SECONDS, allow_inf_nan=False)  # seconds; 0: no limit
    tags: list[str] | None = Field(None, max_length=MAX_TAGS_GIVEN)  # replaces the tags; [] removes them


class CreditBalance(BaseModel):
    holder: str  # a user's name, or team:NAME
    credit: float  # credits (GPU-minutes) left; below 0 when a session ran past what was left
    refill: float  # added at the start of each period
    cap: float  # the most it can hold
    committed: float  # what its running sessions may still use, by their time limits


class Credit(BaseModel):
    """A user's GPU credit (`nsml credit`): 1 credit = 1 GPU-minute (docs/scheduler.md). Off
    (`enabled` false, `credit` None) on a server whose policy has no credit rules for them."""

    user: str
    enabled: bool
    credit: float | None = None  # the user's own credits left, when a rule applies to them
    message: str = ""
    period: float | None = None  # seconds between refills
    next_refill: float | None = None  # when the next refill comes (epoch seconds)
    balances: list[CreditBalance] = []  # the user's and each of their teams' that have a rule


class UsageRow(BaseModel):
    holder: str  # a user's name, or team:NAME
    hours: list[float]  # GPU-hours on each day of `days`
    total: float


class UsageReport(BaseModel):
    """GPU-hours by day (UTC) per user and team (`nsml usage`), running sessions included."""

    days: list[str]  # ISO dates, oldest first
    rows: list[UsageRow]  # users first, then teams; the most used first


class InferRequest(BaseModel):
    data: Any  # passed to the bound infer function as it is (JSON)


class InferResponse(BaseModel):
    session: str
    output: Any
