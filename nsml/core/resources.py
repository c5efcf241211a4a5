"""Resource requests (CPUs, memory, GPUs) and whether they fit a machine."""

import re
from dataclasses import dataclass

from .errors import InvalidInput

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """'24G' -> bytes. Accepts K/M/G/T with optional 'B'/'iB'; plain numbers are bytes."""
    if isinstance(text, int):
        return text
    match = _SIZE_RE.match(text)
    if not match:
        raise InvalidInput(f"'{text}' is not a size; write it like 512M, 24G or 1.5T.")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def format_size(n: float) -> str:
    """Bytes for people: '175.81 KB', as NSML prints them."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TB"


@dataclass(frozen=True)
class Resources:
    cpus: float = 0.0
    memory: int = 0  # bytes
    gpus: int = 0

    def __add__(self, other: "Resources") -> "Resources":
        return Resources(self.cpus + other.cpus, self.memory + other.memory, self.gpus + other.gpus)

    def fits_within(self, capacity: "Resources") -> bool:
        return self.cpus <= capacity.cpus + 1e-9 and self.memory <= capacity.memory and self.gpus <= capacity.gpus

    def describe(self) -> str:
        return f"{self.gpus} GPU, {self.cpus:g} CPU, {format_size(self.memory)} memory"


def format_duration(seconds: float) -> str:
    """'1h 30m', '45s', '2d 3h': a time limit or a wait, for people."""
    seconds = int(round(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    if seconds or not parts:
        parts.append(f"{seconds}s")
    return " ".join(parts[:2])


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in '90', '90s', '30m', '1h', '1d'; ValueError for anything else (or non-finite)."""
    import math

    text = str(text).strip().lower()
    value = float(text[:-1]) * DURATION_UNITS[text[-1]] if text and text[-1] in DURATION_UNITS else float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value
