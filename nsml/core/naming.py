"""Names of datasets, sessions and checkpoints, and glob patterns over them."""

import fnmatch
import re

from .errors import InvalidInput, NotFound

DATASET_NAME_MAX = 20
MAX_SESSION_NUMBER = 2**31 - 1  # what the store's INTEGER column holds (SQLite and PostgreSQL)
_DATASET_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_OWNER_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_CHECKPOINT_RE = re.compile(r"^[^/\\\x00]+$")
# The dataset part of the name of a session run without -d (alice/.nodata/1): '.' is not allowed
# in dataset names, so no dataset can ever be called this.
NO_DATASET = ".nodata"


def check_dataset_name(name: str) -> str:
    if not name:
        raise InvalidInput("A dataset name is required.")
    if len(name) > DATASET_NAME_MAX:
        raise InvalidInput(
            f"Dataset name '{name}' is {len(name)} characters long; the limit is {DATASET_NAME_MAX}."
        )
    if not _DATASET_RE.match(name):
        raise InvalidInput(
            f"Dataset name '{name}' may contain only letters, digits, '_' and '-'."
        )
    return name


def check_owner(owner: str) -> str:
    if not owner or not _OWNER_RE.match(owner):
        raise InvalidInput(f"User name '{owner}' may contain only letters, digits, '_', '.' and '-'.")
    return owner


def check_checkpoint_name(name: str) -> str:
    if not name or name in (".", "..") or not _CHECKPOINT_RE.match(name) or len(name) > 200:
        raise InvalidInput(
            f"Checkpoint name '{name}' is not allowed: use 1 to 200 characters, without '/' or '\\', "
            "and not '.' or '..'."
        )
    return name


def session_name(owner: str, dataset: str, number: int) -> str:
    return f"{owner}/{dataset}/{number}"


def parse_session_name(name: str) -> tuple[str, str, int]:
    """'alice/digits/3' -> ('alice', 'digits', 3), with a clear error for anything else."""
    parts = name.strip("/").split("/")
    if len(parts) != 3 or not (parts[2].isascii() and parts[2].isdigit()):
        raise InvalidInput(
            f"'{name}' is not a session name; session names look like OWNER/DATASET/NUMBER, e.g. alice/digits/3."
        )
    digits = parts[2].lstrip("0") or "0"
    number = int(digits) if len(digits) <= 10 else MAX_SESSION_NUMBER + 1  # int() of 5000 digits raises
    if number > MAX_SESSION_NUMBER:  # no session has it: never hand the store a number it cannot hold
        raise NotFound(f"Session '{name}' does not exist: session numbers go up to {MAX_SESSION_NUMBER}.")
    return parts[0], parts[1], number


def is_pattern(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def matches(pattern: str, name: str) -> bool:
    """Glob match where '*' and '?' may cross '/', as NSML's `rm 'alice/digits/*'` expects."""
    return fnmatch.fnmatchcase(name, pattern)
