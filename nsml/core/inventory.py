"""What a cluster has: nodes with their CPUs, memory and GPUs. Pure records, standard library only.

The local executor's inventory is this machine (GPUs found with NVML) or a declared one
(`nsml server --inventory nodes.yaml`, nsml.scheduler.inventory); a cluster executor reports
its nodes the same way. Placement (nsml.scheduler.placement) works on these alone.
"""

from dataclasses import dataclass

from .resources import Resources


@dataclass(frozen=True)
class GpuDevice:
    index: int  # the device id on its node: what CUDA_VISIBLE_DEVICES names
    model: str = ""  # as NVML names it, e.g. "NVIDIA H100 80GB HBM3"
    memory: int = 0  # bytes
    uuid: str = ""


@dataclass(frozen=True)
class Node:
    name: str
    cpus: float
    memory: int  # bytes
    gpus: tuple[GpuDevice, ...] = ()

    @property
    def capacity(self) -> Resources:
        return Resources(self.cpus, self.memory, len(self.gpus))

    def gpu_models(self) -> set[str]:
        return {g.model for g in self.gpus}


def model_matches(wanted: str, model: str) -> bool:
    """`--gpu-model` names a model by any part of it, case aside: "h100" matches
    "NVIDIA H100 80GB HBM3"; an empty wish matches every model."""
    return not wanted or wanted.lower() in model.lower()


def largest(nodes: list[Node]) -> Resources:
    """The most any one session could ever get: each dimension's largest node (a session runs on
    one node, so a request above this can never start)."""
    if not nodes:
        return Resources()
    return Resources(max(n.cpus for n in nodes), max(n.memory for n in nodes), max(len(n.gpus) for n in nodes))
