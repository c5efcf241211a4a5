"""Errors meant for people: each says what happened and what to do next.

The server maps each class to an HTTP status (see nsml.server.errors); the CLI prints the
message as one line. Nothing here knows about HTTP.
"""


class NsmlError(Exception):
    """Base of every error NSML reports to a user."""


class NotFound(NsmlError):
    """A dataset, session, checkpoint or file that does not exist."""


class AlreadyExists(NsmlError):
    """Something with that name exists and the caller did not ask to replace it."""


class InvalidInput(NsmlError):
    """Malformed names, folders, archives, metrics or options."""


class Conflict(NsmlError):
    """The request is valid but the current state forbids it (e.g. removing a running session)."""


class InsufficientResources(NsmlError):
    """The request can never fit on this cluster (not merely: has to wait)."""


class StorageFull(NsmlError):
    """The disk filled up while storing bytes; nothing half-written was kept."""


class Unauthorized(NsmlError):
    """Missing or wrong token."""


class Forbidden(NsmlError):
    """The caller is known but may not do this (e.g. replace another user's dataset)."""


def not_found(kind: str, name: str, known: list[str]) -> NotFound:
    """A NotFound whose message suggests the closest known names, like git does."""
    import difflib

    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return NotFound(f"{kind} '{name}' does not exist.{hint}")
