"""Map NSML's errors to HTTP answers whose 'detail' is the one line a person reads."""

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from nsml.core import errors

STATUS = {
    errors.NotFound: 404,
    errors.AlreadyExists: 409,
    errors.Conflict: 409,
    errors.InvalidInput: 400,
    errors.InsufficientResources: 422,
    errors.StorageFull: 507,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
}


SHOWN_INPUT = 100  # characters of a refused value echoed back in a 422


def shown(value: Any) -> Any:
    """A refused input as a 422 may echo it: JSON-safe (NaN is not JSON) and short (a 10 MB memo
    is not sent back, nor is a 5000-digit number)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, int) and abs(value) < 10**18:
        return value
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= SHOWN_INPUT else text[:SHOWN_INPUT] + f"… ({len(text)} characters)"


def validation_errors(exc: RequestValidationError) -> list[dict]:
    out = []
    for error in exc.errors():
        item = {"type": error.get("type"), "loc": list(error.get("loc", ())), "msg": error.get("msg")}
        if "input" in error:
            item["input"] = shown(error["input"])
        if error.get("ctx"):
            item["ctx"] = {k: shown(v) for k, v in error["ctx"].items()}
        out.append(item)
    return out


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_errors(exc)}, status_code=422)

    @app.exception_handler(errors.NsmlError)
    async def _nsml_error(_request: Request, exc: errors.NsmlError) -> JSONResponse:
        status = next((code for cls, code in STATUS.items() if isinstance(exc, cls)), 400)
        return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, status_code=status)
