"""Pure helpers for comparing sessions: their `-a` arguments and their code, line by line."""

import difflib
import shlex
from typing import Any

CONTEXT = 3  # unchanged lines kept around each change; longer equal runs fold into one row
MAX_DIFF_BYTES = 1 << 20  # a bigger (or binary) file is reported as changed, without rows


def parse_args(args: str) -> dict[str, str]:
    """NSML's `-a` string as `--key value` pairs: `--flag` alone is "true", `--k=v` works too,
    and stray positional words are kept under "_" so nothing the user typed disappears."""
    try:
        words = shlex.split(args)
    except ValueError:
        words = args.split()
    out: dict[str, str] = {}
    loose: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("-") and len(word) > 1 and not _is_number(word):
            key = word.lstrip("-")
            if "=" in key:
                key, value = key.split("=", 1)
            elif i + 1 < len(words) and (not words[i + 1].startswith("-") or _is_number(words[i + 1])):
                value = words[i + 1]
                i += 1
            else:
                value = "true"
            out[key] = value
        else:
            loose.append(word)
        i += 1
    if loose:
        out["_"] = " ".join(loose)
    return out


def _is_number(word: str) -> bool:
    try:
        float(word)
        return True
    except ValueError:
        return False


def split_args(params: list[dict[str, str]]) -> dict[str, Any]:
    """Arguments every session shares (same value) versus those that differ or are missing somewhere."""
    keys = sorted({k for p in params for k in p})
    common, differing = {}, []
    for key in keys:
        values = [p.get(key) for p in params]
        if all(v is not None and v == values[0] for v in values):
            common[key] = values[0]
        else:
            differing.append(key)
    return {"common": common, "differing": differing}


def args_rows(a: dict[str, str], b: dict[str, str]) -> list[dict[str, Any]]:
    return [{"key": k, "a": a.get(k), "b": b.get(k), "same": a.get(k) == b.get(k)} for k in sorted(a.keys() | b.keys())]


def side_by_side(left: list[str], right: list[str], context: int = CONTEXT) -> list[dict[str, Any]]:
    """Rows of a two-column diff: {"t": eq|del|ins|rep|skip, "l": [n, text] | None, "r": ...}.

    Line numbers are 1-based; a long unchanged stretch becomes one "skip" row saying how many
    lines it hides, like a code review tool does."""
    rows: list[dict[str, Any]] = []
    matcher = difflib.SequenceMatcher(None, left, right, autojunk=False)
    opcodes = matcher.get_opcodes()
    for index, (tag, i1, i2, j1, j2) in enumerate(opcodes):
        if tag == "equal":
            keep_head = context if index > 0 else 0
            keep_tail = context if index < len(opcodes) - 1 else 0
            n = i2 - i1
            if n > keep_head + keep_tail + 1:
                for k in range(keep_head):
                    rows.append({"t": "eq", "l": [i1 + k + 1, left[i1 + k]], "r": [j1 + k + 1, right[j1 + k]]})
                rows.append({"t": "skip", "n": n - keep_head - keep_tail, "l": None, "r": None})
                for k in range(n - keep_tail, n):
                    rows.append({"t": "eq", "l": [i1 + k + 1, left[i1 + k]], "r": [j1 + k + 1, right[j1 + k]]})
            else:
                rows += [{"t": "eq", "l": [i1 + k + 1, left[i1 + k]], "r": [j1 + k + 1, right[j1 + k]]} for k in range(n)]
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            l_line = [i1 + k + 1, left[i1 + k]] if i1 + k < i2 else None
            r_line = [j1 + k + 1, right[j1 + k]] if j1 + k < j2 else None
            kind = "rep" if l_line and r_line else ("del" if l_line else "ins")
            rows.append({"t": kind, "l": l_line, "r": r_line})
    return rows


def text_lines(data: bytes) -> list[str] | None:
    """The lines of a text file, or None for binary or oversized content (not worth a diff)."""
    if len(data) > MAX_DIFF_BYTES or b"\x00" in data[:8192]:
        return None
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return None
