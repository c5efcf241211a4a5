"""What the API returns (pydantic, the OpenAPI contract) and how entities become it."""

import math
from typing import Any

from pydantic import BaseModel

from nsml.core.entities import Checkpoint, Dataset, Session, Submission


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

    @classmethod
    def of(cls, d: Dataset) -> "DatasetPublic":
        return cls(**{k: getattr(d, k) for k in cls.model_fields})


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

    @classmethod
    def of(cls, s: Session) -> "SessionPublic":
        return cls(
            name=s.name, owner=s.owner, dataset=s.dataset, number=s.number, entry=s.entry, args=s.args,
            command=s.command, status=s.status.value, exit_code=s.exit_code, created=s.created,
            started=s.started, ended=s.ended, memo=s.memo, error=s.error, image=s.image,
            cpus=s.resources.cpus, memory=s.resources.memory, gpus=s.resources.gpus, gpu_ids=s.gpu_ids,
            summary=finite(s.summary), last_values=finite(s.last_values), kind=s.kind, source=s.source,
            source_checkpoint=s.source_checkpoint,
        )


class CheckpointPublic(BaseModel):
    name: str
    created: float
    elapsed: float
    size: int
    summary: dict[str, Any]

    @classmethod
    def of(cls, c: Checkpoint) -> "CheckpointPublic":
        return cls(name=c.name, created=c.created, elapsed=c.elapsed, size=c.size, summary=finite(c.summary))


class LogChunk(BaseModel):
    offset: int  # where the next read should start
    text: str
    status: str
    done: bool  # the session has ended and every byte of its log has been read


class Offset(BaseModel):
    offset: int


class ExitReport(BaseModel):
    exit_code: int
    stopped: bool = False
    relaunch: dict[str, Any] | None = None  # fork/submit/infer: the step nsml.paused() reached, and its error


class MemoUpdate(BaseModel):
    memo: str


class Removed(BaseModel):
    removed: list[str]


class Whoami(BaseModel):
    user: str
    server: str
    version: str


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
    score: float | None
    created: float
    finished: float | None

    @classmethod
    def of(cls, s: Submission, runner_status: str = "") -> "SubmissionPublic":
        fields = {k: getattr(s, k) for k in cls.model_fields if k != "runner_status"}
        return cls(**fields, runner_status=runner_status)


class BoardRowPublic(BaseModel):
    rank: int
    owner: str
    score: float
    session: str
    checkpoint: str
    count: int
    created: float


class BoardPublic(BaseModel):
    dataset: str
    metric: str
    order: str
    all: bool  # every submission, or each owner's best
    rows: list[BoardRowPublic]


class DatasetChange(BaseModel):
    description: str | None = None
    metric: str | None = None  # '' removes the leaderboard
    order: str | None = None
    submit_interval: float | None = None


class InferRequest(BaseModel):
    data: Any  # passed to the bound infer function as it is (JSON)


class InferResponse(BaseModel):
    session: str
    output: Any
