"""Fork, submit, infer and resume: relaunch a session's code at one of its checkpoints."""

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from nsml.core.entities import Session
from nsml.core.errors import NotFound
from nsml.core.policy import Actor
from nsml.core.resources import Resources, parse_size
from nsml.core.states import SessionKind
from nsml.scheduler import admission, evaluator

from .. import relaunch
from ..access import controlled_session, dataset_for
from ..auth import current_actor, current_user
from ..bounds import BatchSize, Cpus, Gpus, Name, OptArgs, OptName, RowId, SessionNumber, Size
from ..schemas import InferRequest, InferResponse, SessionPublic, SubmissionPublic
from ..state import state
from .sessions import SESSION, check_args

router = APIRouter(prefix="/api", tags=["fork, submit, infer, resume"])
INFER_WAIT = 30.0  # seconds one request waits for a model that is still loading


def _resources(st, source, gpus: int | None, cpus: float | None, memory: str | None) -> Resources | None:
    if gpus is None and cpus is None and memory is None:
        return None  # the source session's
    return admission.like(source.resources, st.nodes, cpus, parse_size(memory) if memory else None, gpus)


@router.post("/sessions" + SESSION + "/fork", response_model=SessionPublic, status_code=201)
def fork(
    owner: str, dataset: str, number: SessionNumber, request: Request, checkpoint: OptName = None, args: OptArgs = None,
    gpus: Gpus = None, cpus: Cpus = None, memory: Size = None,
    source: Session = Depends(controlled_session), user: str = Depends(current_user),
) -> SessionPublic:
    """A new session with the source's code and arguments (or `args`), relaunched with
    `--pause 1 --iteration CHECKPOINT` (default: the latest checkpoint), which goes on training."""
    st = state(request)
    ckpt = relaunch.pick_checkpoint(st, source, checkpoint)
    if args is not None:
        check_args(args)
    session = relaunch.relaunch(st, source, SessionKind.FORK, ckpt.name, user, args=args, resources=_resources(st, source, gpus, cpus, memory))
    st.audit(user, "fork", source.name, f"checkpoint {ckpt.name} → {session.name}")
    return SessionPublic.of(session)


@router.post("/sessions" + SESSION + "/resume", response_model=SessionPublic)
def resume(owner: str, dataset: str, number: SessionNumber, request: Request, session: Session = Depends(controlled_session)) -> SessionPublic:
    """Restart a stopped or failed session from its latest checkpoint, under the same name, as its
    next attempt: relaunched with its arguments plus `--pause 1 --iteration CHECKPOINT`. Owner only."""
    return SessionPublic.of(relaunch.resume_session(state(request), session))


@router.post("/sessions" + SESSION + "/submit", response_model=SubmissionPublic, status_code=201)
def submit(
    owner: str, dataset: str, number: SessionNumber, checkpoint: Name, request: Request, test: bool = False,
    batch_size: BatchSize = None, source: Session = Depends(controlled_session), user: str = Depends(current_user),
) -> SubmissionPublic:
    """Score a checkpoint on the dataset's hidden test split (`test`: the same, never ranked).
    `batch_size`: passed as batch_size= to the dataset's data loader and the bound infer where
    they take one. Poll GET /api/submissions/{id} for its progress and score (a test submit's
    score is never shown: `status` scored says the evaluator returned one). Test submits have a
    rate limit of their own (settings.test_submits_per_hour)."""
    st = state(request)
    submission = relaunch.start_submit(st, source, checkpoint, test, user, batch_size)
    st.audit(user, "submit -t" if test else "submit", source.name, f"checkpoint {checkpoint} → {submission.dataset}")
    return _public(st, submission)


@router.get("/submissions/{submission_id}", response_model=SubmissionPublic)
def get_submission(submission_id: RowId, request: Request, actor: Actor = Depends(current_actor)) -> SubmissionPublic:
    """A submission, for those who may read its dataset (its board shows the same)."""
    st = state(request)
    try:
        submission = st.store.get_submission(submission_id)
        dataset_for(st, actor, submission.dataset)
    except NotFound:
        raise NotFound(f"Submission {submission_id} was not found.") from None
    return _public(st, submission)


def _public(st, submission) -> SubmissionPublic:
    status = ""
    if submission.runner_id is not None:
        try:
            status = st.store.session_by_id(submission.runner_id).status.value
        except Exception:  # removed meanwhile
            status = ""
    return SubmissionPublic.of(submission, status, notice=_notice(st, submission))


def _notice(st, submission) -> str:
    """Where a dataset's evaluation.py runs unsandboxed here, each of its submits says so."""
    if not (note := evaluator.sandbox_note()):
        return ""
    try:
        return note if st.store.get_dataset(submission.dataset).metric == "custom" else ""
    except Exception:  # the dataset was removed meanwhile
        return ""


@router.post("/sessions" + SESSION + "/infer-session", response_model=SessionPublic)
def infer_session(
    owner: str, dataset: str, number: SessionNumber, request: Request, checkpoint: OptName = None, feed: OptName = None,
    gpus: Gpus = None, cpus: Cpus = None, memory: Size = None,
    source: Session = Depends(controlled_session), actor: Actor = Depends(current_actor),
) -> SessionPublic:
    """Your running infer session for this checkpoint (default: the latest), started if there is
    none. It loads the model once and answers POST …/infer until stopped. `feed`: another
    dataset to mount instead of the source's."""
    st = state(request)
    if feed:
        dataset_for(st, actor, feed)
    session = relaunch.find_or_start_infer(st, source, checkpoint, actor.name, feed, _resources(st, source, gpus, cpus, memory))
    return SessionPublic.of(session)


@router.post("/sessions" + SESSION + "/infer", response_model=InferResponse)
async def infer(owner: str, dataset: str, number: SessionNumber, body: InferRequest, request: Request,
                session: Session = Depends(controlled_session)) -> InferResponse:
    """Run the loaded model of infer session OWNER/DATASET/N on `data`; waits up to 30 s for a
    model that is still loading (409 after that: try again)."""
    st = state(request)
    output = await run_in_threadpool(relaunch.infer_request, st, session, body.data, INFER_WAIT)
    return InferResponse(session=session.name, output=output)
