"""Errors the user library raises on purpose (beyond TypeError/ValueError for bad arguments)."""


class CheckpointNotFoundError(FileNotFoundError):
    """The named checkpoint does not exist (locally, or on the server for that session).

    A FileNotFoundError, so scripts that already catch that keep working.
    """
