"""Where the local executor's nodes come from: this machine (GPUs found with NVML), or a declared
inventory file, and what its GPUs are doing (utilisation and memory), read from NVML or from
the declared inventory's feed.

A declared inventory (`nsml server --inventory nodes.yaml`) stands in for GPUs that are not
there: tests and benchmarks get 8, 64 or 512 GPUs on a machine with none, and every session
still runs for real (on this machine, with `CUDA_VISIBLE_DEVICES` naming the declared ids).
Its format (YAML or JSON):

    nodes:
      - name: gpu-a
        cpus: 32
        memory: 256G
        gpus: {count: 8, model: NVIDIA A100-SXM4-80GB, memory: 80G}
      - name: gpu-b
        cpus: 16
        memory: 128G
        gpus:                      # or one entry per device
          - {model: NVIDIA H100 80GB HBM3, memory: 80G}
          - {index: 3, model: NVIDIA H100 80GB HBM3, memory: 80G}
    utilisation: feed.jsonl        # optional, relative to this file

The feed is JSON lines, `{"node": "gpu-a", "gpu": 0, "util": 37, "memory_used": 1073741824}`,
optionally with `"at": SECONDS` after the server started (a replay). A GPU's utilisation is its
latest line whose `at` has passed; a test appends lines to drive the usage and zombie paths.
"""

import json
import logging
import os
import time
from pathlib import Path

from nsml.core.errors import InvalidInput
from nsml.core.inventory import GpuDevice, Node
from nsml.core.resources import parse_size

from . import machine
from .config_files import read_config

log = logging.getLogger("nsml.scheduler")
NODE_NAME_MAX = 64


def this_machine(cpus: float | None = None, memory: int | None = None, gpus: int | None = None) -> list[Node]:
    """The one node of a plain local server: its CPUs and memory (unless overridden) and the
    GPUs NVML finds (`gpus` caps them; more than found are bare ids, for tests)."""
    found = machine.discover_gpus() if gpus is None or gpus > 0 else []
    count = len(found) if gpus is None else gpus
    devices = [GpuDevice(g.index, g.name, g.memory, g.uuid) for g in found][:count]
    devices += [GpuDevice(i) for i in range(len(devices), count)]
    name = os.uname().nodename[:NODE_NAME_MAX] or "local"
    return [Node(name, cpus if cpus is not None else machine.usable_cpus(), memory or machine.total_memory(), tuple(devices))]


def load_declared(path: str | Path) -> tuple[list[Node], Path | None]:
    """The nodes of an inventory file and its utilisation feed (None without one); a clear
    InvalidInput naming the file and the entry for anything malformed."""
    path = Path(path)
    data = read_config(path, "the inventory")
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list) or not data["nodes"]:
        raise InvalidInput(f"The inventory {path} must hold `nodes:`, a list of nodes with name, cpus, memory and gpus.")
    nodes, names = [], set()
    for i, entry in enumerate(data["nodes"], 1):
        node = _node(entry, f"{path}, node {i}")
        if node.name in names:
            raise InvalidInput(f"{path}: node name '{node.name}' is used twice.")
        names.add(node.name)
        nodes.append(node)
    feed = data.get("utilisation")
    if feed is not None and not isinstance(feed, str):
        raise InvalidInput(f"{path}: `utilisation` must be the path of a JSON-lines file.")
    return nodes, (path.parent / feed).resolve() if feed else None


def _node(entry, where: str) -> Node:
    if not isinstance(entry, dict):
        raise InvalidInput(f"{where}: each node is a mapping with name, cpus, memory and gpus.")
    unknown = set(entry) - {"name", "cpus", "memory", "gpus"}
    if unknown:
        raise InvalidInput(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}; a node has name, cpus, memory and gpus.")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > NODE_NAME_MAX or "/" in name:
        raise InvalidInput(f"{where}: `name` must be a non-empty name of at most {NODE_NAME_MAX} characters, without '/'.")
    cpus = entry.get("cpus")
    if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not 0 < cpus < 1e6:
        raise InvalidInput(f"{where} ({name}): `cpus` must be a number above 0.")
    memory = _size(entry.get("memory"), f"{where} ({name}): `memory`")
    return Node(name.strip(), float(cpus), memory, _gpus(entry.get("gpus", []), f"{where} ({name})"))


def _gpus(spec, where: str) -> tuple[GpuDevice, ...]:
    if isinstance(spec, dict):
        count = spec.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 4096:
            raise InvalidInput(f"{where}: `gpus.count` must be a whole number from 0 to 4096.")
        spec = [{"model": spec.get("model", ""), "memory": spec.get("memory", 0)} for _ in range(count)]
    if not isinstance(spec, list):
        raise InvalidInput(f"{where}: `gpus` is a mapping {{count, model, memory}} or a list of devices.")
    devices, used = [], set()
    for i, g in enumerate(spec):
        if not isinstance(g, dict) or not isinstance(g.get("model", ""), str):
            raise InvalidInput(f"{where}: GPU {i} must be a mapping with model and memory.")
        index = g.get("index", i)
        if isinstance(index, bool) or not isinstance(index, int) or index < 0 or index in used:
            raise InvalidInput(f"{where}: GPU {i} has index {index!r}; indices are distinct whole numbers from 0.")
        used.add(index)
        devices.append(GpuDevice(index, g.get("model", ""), _size(g.get("memory", 0), f"{where}: GPU {i} memory")))
    return tuple(devices)


def _size(value, what: str) -> int:
    if isinstance(value, bool) or value is None:
        raise InvalidInput(f"{what} must be a size like 64G.")
    if isinstance(value, (int, float)):
        if value < 0:
            raise InvalidInput(f"{what} cannot be negative.")
        return int(value)
    try:
        return parse_size(str(value))
    except InvalidInput as exc:
        raise InvalidInput(f"{what}: {exc}") from None


class NoReadings:
    """The GPU reader of a declared inventory without a feed: its GPUs are not this machine's,
    so NVML's readings of this machine's GPUs would be someone else's."""

    def read(self, indices: list[int], node: str = "") -> list[dict]:
        return []


class UtilisationFeed:
    """GPU readings of a declared inventory, from its feed file (re-read when it changed)."""

    def __init__(self, path: Path, started: float | None = None):
        self.path = Path(path)
        self.started = time.time() if started is None else started
        self._stamp: tuple[int, int] | None = None
        self._lines: list[dict] = []

    def read(self, indices: list[int], node: str = "") -> list[dict]:
        self._reload()
        elapsed = time.time() - self.started
        latest: dict[int, dict] = {}
        for line in self._lines:
            if line["node"] == node and line["gpu"] in indices and line.get("at", 0) <= elapsed:
                latest[line["gpu"]] = line
        return [{"index": i, "util": float(latest[i]["util"]), "memory": int(latest[i].get("memory_used", 0))}
                for i in indices if i in latest]

    def _reload(self) -> None:
        try:
            st = self.path.stat()
        except OSError:
            self._lines = []
            return
        if self._stamp == (st.st_mtime_ns, st.st_size):
            return
        self._stamp = (st.st_mtime_ns, st.st_size)
        lines = []
        for raw in self.path.read_text(errors="replace").splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue  # a line being written, or not JSON: skipped, never an error
            if isinstance(line, dict) and isinstance(line.get("node"), str) and isinstance(line.get("gpu"), int) \
                    and isinstance(line.get("util"), (int, float)) and isinstance(line.get("at", 0), (int, float)):
                lines.append(line)
        self._lines = lines
