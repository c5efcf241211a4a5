"""A session's metrics as stored: its keys and whole series (the dashboard's downsampled charts are web.py's).

A whole series is streamed a chunk at a time (the store's SeriesReader), as JSON or as packed
float64 columns, so a series of any length is read in bounded memory, never as one Python
object per point.
"""

import json
from collections.abc import Iterator
from typing import Literal

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from nsml.core.entities import Session

from ..access import readable_session
from ..bounds import SessionNumber
from ..state import state

router = APIRouter(prefix="/api/sessions", tags=["metrics"])
SESSION = "/{owner}/{dataset}/{number}"
COLUMNS_TYPE = "application/vnd.nsml.columns"
_EXACT_INT = float(2 ** 53)  # beyond this a float64 step may not be the integer it prints as


@router.get(SESSION + "/metrics")
def list_metrics(owner: str, dataset: str, number: SessionNumber, request: Request, session: Session = Depends(readable_session)) -> dict[str, int]:
    """Metric keys of the session with their number of points."""
    return state(request).store.series_keys(session.id)


@router.get(SESSION + "/metrics/{key:path}", response_model=None,
            responses={200: {"content": {"application/json": {}, COLUMNS_TYPE: {}}}})
def metric_series(owner: str, dataset: str, number: SessionNumber, key: str, request: Request,
                  format: Literal["json", "columns"] = "json",
                  session: Session = Depends(readable_session)) -> StreamingResponse:
    """The whole series in step order (points without a step first): `{key, count, steps,
    walltimes, values}` (steps null where a point has none; values as reported), streamed.

    `format=columns` (docs/internals.md): one JSON header line `{key, count, dtype, columns,
    extra}`, then the three columns (steps, walltimes, values) as `count` little-endian float64
    each: NaN for no step, and in values for what is not a number, whose value is in `extra`
    (position -> value). numpy.frombuffer reads them as they are.
    """
    reader = state(request).store.read_series(session.id, key)
    if format == "columns":
        return StreamingResponse(_in_pieces(_columns(key, reader)), media_type=COLUMNS_TYPE)
    return StreamingResponse(_in_pieces(_json(key, reader)), media_type="application/json")


PIECE = 1 << 20


def _in_pieces(parts: Iterator[bytes]) -> Iterator[bytes]:
    """The parts joined into pieces of about PIECE bytes: Starlette takes each item of a sync
    iterator through a worker thread, a hop that costs more than encoding a chunk's points."""
    held, size = [], 0
    for part in parts:
        held.append(part)
        size += len(part)
        if size >= PIECE:
            yield b"".join(held)
            held, size = [], 0
    if held:
        yield b"".join(held)


def _json(key: str, reader) -> Iterator[bytes]:
    yield b'{"key":%s,"count":%d,"steps":[' % (json.dumps(key).encode(), reader.count if reader else 0)
    if reader is None:
        yield b'],"walltimes":[],"values":[]}'
        return
    yield from _joined(_steps_json(steps) for (steps,) in reader.columns("steps"))
    yield b'],"walltimes":['
    yield from _joined(_floats_json(walls) for (walls,) in reader.columns("walls"))
    yield b'],"values":['
    yield from _joined(_values_json(values, extra) for (values,), extra in zip(reader.columns("vals"), reader.extras()))
    yield b']}'


def _joined(parts: Iterator[bytes]) -> Iterator[bytes]:
    first = True
    for part in parts:
        if part:
            yield part if first else b"," + part
            first = False


def _array_json(column: np.ndarray) -> bytes:
    """The entries of a numpy column as JSON, without the brackets: orjson encodes the array
    in C, an order of magnitude faster than json.dumps of a list; NaN becomes null."""
    return orjson.dumps(column, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]


def _floats_json(column: np.ndarray) -> bytes:
    return _array_json(column)


def _steps_json(steps: np.ndarray) -> bytes:
    """Whole-number steps (nearly all) as integers, as they were reported; no step is null."""
    if len(steps) and not np.isnan(steps).any() and np.abs(steps).max() < _EXACT_INT \
            and np.array_equal(steps, np.floor(steps)):
        return _array_json(steps.astype(np.int64))
    return _array_json(steps)


def _values_json(values: np.ndarray, extra: dict) -> bytes:
    if not extra:
        return _array_json(values)
    listed = values.tolist()
    for i, value in extra.items():
        listed[i] = value
    return json.dumps(listed)[1:-1].encode()


def _columns(key: str, reader) -> Iterator[bytes]:
    count = reader.count if reader else 0
    extra, at = {}, 0
    if reader is not None:
        for (steps,), found in zip(reader.columns("steps"), reader.extras()):
            extra.update({str(at + i): v for i, v in found.items()})
            at += len(steps)
    header = {"key": key, "count": count, "dtype": "<f8", "columns": ["steps", "walltimes", "values"], "extra": extra}
    yield json.dumps(header).encode() + b"\n"
    if reader is None:
        return
    for column in ("steps", "walls", "vals"):
        for (part,) in reader.columns(column):
            yield part.astype("<f8", copy=False).tobytes()
