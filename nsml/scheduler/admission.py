"""Admission: a session request's defaults, and its check against what the cluster could ever
hold, in one place (runs, forks, resumes, submits and infers all come through here).

A request no node could ever hold is refused at once with what to lower, instead of queueing
forever; one that fits some node when it is empty is admitted and waits its turn.
"""

from collections.abc import Sequence

from nsml.core.errors import Forbidden, InsufficientResources, InvalidInput
from nsml.core.inventory import Node, model_matches
from nsml.core.resources import Resources

from .placement import PRIORITIES

DEFAULT_CPUS = 2.0
DEFAULT_MEMORY = 24 << 30
MAX_TIME_LIMIT = 366 * 86400.0


def largest(nodes: Sequence[Node]) -> Resources:
    """Each dimension's largest node: the cap of a default (a session runs on one node)."""
    if not nodes:
        return Resources()
    return Resources(max(n.cpus for n in nodes), max(n.memory for n in nodes), max(len(n.gpus) for n in nodes))


def run_defaults(nodes: Sequence[Node], cpus: float | None, memory: int | None, gpus: int | None) -> Resources:
    """`nsml run`'s request: what was asked, else 1 CPU, 24 GB and 1 GPU, each capped by the
    largest node (a laptop without a GPU runs -g 1 scripts on its CPU)."""
    top = largest(nodes)
    return Resources(cpus if cpus is not None else min(DEFAULT_CPUS, top.cpus),
                     memory if memory else min(DEFAULT_MEMORY, top.memory),
                     gpus if gpus is not None else min(1, top.gpus))


def like(source: Resources, nodes: Sequence[Node], cpus: float | None = None, memory: int | None = None,
         gpus: int | None = None) -> Resources:
    """A relaunch's request (fork, submit, infer, resume): what was asked, else its source's,
    capped by the largest node (the cluster may have shrunk since)."""
    top = largest(nodes)
    return Resources(cpus if cpus is not None else min(source.cpus, top.cpus),
                     memory if memory else min(source.memory, top.memory),
                     gpus if gpus is not None else min(source.gpus, top.gpus))


def admit(request: Resources, nodes: Sequence[Node], gpu_model: str = "", idle_ok: bool = False) -> None:
    """Refuse a request that could never start. `idle_ok`: 0 CPUs is allowed (an infer session
    that mostly waits for requests)."""
    if not (request.cpus > 0 or (idle_ok and request.cpus == 0)):  # also refuses NaN, which would fit nowhere
        raise InvalidInput("A session needs more than 0 CPUs.")
    if request.gpus < 0:
        raise InvalidInput("The number of GPUs cannot be negative.")
    if request.memory < 0:
        raise InvalidInput("The memory of a session cannot be negative.")
    if gpu_model and request.gpus == 0:
        raise InvalidInput(f"--gpu-model {gpu_model} asks for a GPU model, but the session asks for no GPU; add -g N.")
    candidates = [n for n in nodes if sum(model_matches(gpu_model, g.model) for g in n.gpus) >= request.gpus]
    if not candidates:
        if gpu_model:
            models = sorted({g.model for n in nodes for g in n.gpus if g.model})
            raise InsufficientResources(
                f"No node has {request.gpus} GPU(s) of a model matching '{gpu_model}' "
                f"(models here: {', '.join(models) or 'none named'}); change --gpu-model or -g.")
        most = largest(nodes).gpus
        raise InsufficientResources(
            f"The session asks for {request.gpus} GPU(s) but the largest node has {most}; "
            f"ask for fewer with -g (use -g 0 for CPU only).")
    if not any(request.cpus <= n.cpus + 1e-9 and request.memory <= n.memory for n in candidates):
        best = max(candidates, key=lambda n: (n.cpus, n.memory))
        which = "the largest node" if request.gpus == 0 else f"the largest node with {request.gpus} such GPU(s)"
        raise InsufficientResources(
            f"The session asks for {request.describe()} but {which} has {best.capacity.describe()}; lower -c or --memory.")


def priority_of(name: str, admin: bool) -> int:
    """--priority low|normal|high; high is for admins (it would let anyone jump the queue)."""
    key = (name or "normal").strip().lower()
    if key not in PRIORITIES:
        raise InvalidInput(f"--priority must be one of {', '.join(PRIORITIES)}, not '{name}'.")
    if PRIORITIES[key] > 0 and not admin:
        raise Forbidden("--priority high is for admins; use normal or low.")
    return PRIORITIES[key]


def time_limit_of(seconds: float | None) -> float | None:
    if seconds is None:
        return None
    if not 0 < seconds <= MAX_TIME_LIMIT:  # refuses NaN too
        raise InvalidInput("--time-limit must be more than 0 and at most 366 days.")
    return float(seconds)
