"""What this machine has: CPUs, memory and GPUs (through NVML when available, else nvidia-smi)."""

import os
import shutil
import subprocess
from dataclasses import dataclass

from nsml.core.resources import Resources


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory: int  # bytes
    uuid: str = ""


def total_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 8 << 30


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def discover_gpus() -> list[Gpu]:
    """GPUs of this machine; an empty list when there are none or no driver."""
    try:
        import pynvml  # optional: the nvidia-ml-py package
    except ImportError:
        return _gpus_from_nvidia_smi()
    try:
        pynvml.nvmlInit()
    except Exception:
        return []
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else name
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
            gpus.append(Gpu(i, name, pynvml.nvmlDeviceGetMemoryInfo(handle).total, uuid))
        return gpus
    finally:
        pynvml.nvmlShutdown()


def _gpus_from_nvidia_smi() -> list[Gpu]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,name,memory.total,uuid", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 4 and parts[0].isdigit():
            gpus.append(Gpu(int(parts[0]), parts[1], int(float(parts[2])) << 20, parts[3]))
    return gpus


def capacity(cpus: float | None = None, memory: int | None = None, gpus: int | None = None) -> tuple[Resources, list[Gpu]]:
    """The local executor's capacity: the machine's, unless the server settings override it."""
    found = discover_gpus() if gpus is None or gpus > 0 else []
    gpu_count = len(found) if gpus is None else gpus
    return Resources(cpus if cpus is not None else usable_cpus(), memory or total_memory(), gpu_count), found
