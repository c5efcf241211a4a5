"""Password hashing: argon2id through pwdlib (imported on first use: the embedded server, where
nobody logs in with a password, never loads it)."""

import functools

MIN_LENGTH = 8
MAX_LENGTH = 1024  # argon2 takes any length; a bound keeps one request from costing seconds


@functools.cache
def _hasher():
    from pwdlib import PasswordHash

    return PasswordHash.recommended()


def check(password: str) -> str:
    from nsml.core.errors import InvalidInput

    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise InvalidInput(f"A password has {MIN_LENGTH} to {MAX_LENGTH} characters.")
    return password


def hash_password(password: str) -> str:
    return _hasher().hash(check(password))


def verify(password: str, hashed: str) -> bool:
    if not hashed or len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher().verify(password, hashed)
    except Exception:  # a malformed stored hash: no login, never a 500
        return False


def burn(password: str) -> None:
    """Spend a verification's time for an unknown user, so timing does not tell who exists."""
    verify(password, _dummy())


@functools.cache
def _dummy() -> str:
    return _hasher().hash("not a password of anyone")
