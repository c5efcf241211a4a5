"""Map NSML's errors to HTTP answers whose 'detail' is the one line a person reads."""

from fastapi import FastAPI, Request
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


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.NsmlError)
    async def _nsml_error(_request: Request, exc: errors.NsmlError) -> JSONResponse:
        status = next((code for cls, code in STATUS.items() if isinstance(exc, cls)), 400)
        return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, status_code=status)
