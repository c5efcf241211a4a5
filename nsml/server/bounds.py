"""What each field of the API may hold (docs/security.md, "Input bounds and the web").

Every query, path and body field is bounded here or in its pydantic model, so a request that
is out of bounds gets a 422 naming the field, before any handler or the store sees it: no
number the database cannot hold, no NaN, no unbounded string or list. Routes use the aliases
(`number: SessionNumber`, `cpus: Cpus = None`); JSON bodies as a whole are capped by
nsml.server.web_security (413).
"""

from typing import Annotated

from fastapi import Path, Query

from nsml.core.naming import MAX_SESSION_NUMBER

MAX_INT = MAX_SESSION_NUMBER  # 2**31 - 1: an INTEGER column, in SQLite and in PostgreSQL
MAX_OFFSET = 2**62  # a byte offset into a log or journal
MAX_MEMO = 64 << 10  # characters of a session's memo
MAX_TEXT = 4096  # a description, a search, a glob pattern
MAX_ARGS = 16 << 10  # a session's argument string
MAX_NAME = 255  # a dataset, entry file, checkpoint, team or metric name given in a query
MAX_SIZE = 32  # a size such as 8G
MAX_SECONDS = 10 * 365 * 86400.0  # an interval (submit_interval): ten years
MAX_LOG_CHUNK = 16 << 20  # bytes of log one read returns
MAX_TAIL = 100_000  # lines of `nsml logs --tail`
MAX_ITEMS = 1000  # entries of a repeated query parameter (rm patterns, graph keys)
MAX_TAGS_GIVEN = 100  # tags in one request (a dataset keeps at most 7: datasets.MAX_TAGS)
MAX_JSON_BODY = 16 << 20  # bytes of any JSON request body

SessionNumber = Annotated[int, Path(ge=1, le=MAX_INT, description="The N of OWNER/DATASET/N.")]
RowId = Annotated[int, Path(ge=1, le=MAX_INT)]
Cpus = Annotated[float | None, Query(allow_inf_nan=False, description="CPUs (a finite number)")]
Gpus = Annotated[int | None, Query(le=MAX_INT)]
Size = Annotated[str | None, Query(max_length=MAX_SIZE, description="e.g. 8G or 512M")]
Name = Annotated[str, Query(max_length=MAX_NAME)]
OptName = Annotated[str | None, Query(max_length=MAX_NAME)]
Text = Annotated[str, Query(max_length=MAX_TEXT)]
OptText = Annotated[str | None, Query(max_length=MAX_TEXT)]
Args = Annotated[str, Query(max_length=MAX_ARGS)]
OptArgs = Annotated[str | None, Query(max_length=MAX_ARGS)]
Memo = Annotated[str, Query(max_length=MAX_MEMO)]
Count = Annotated[int | None, Query(ge=0, le=MAX_INT)]
Finite = Annotated[float | None, Query(allow_inf_nan=False)]
BatchSize = Annotated[int | None, Query(le=MAX_INT)]  # 0 and below: relaunch.start_submit says why, in words
Seconds = Annotated[float | None, Query(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]
