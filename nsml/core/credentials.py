"""Session-scoped credentials: what a session's supervisor holds instead of a user's token.

A scoped token names one session and one attempt of it (a resumed session gets a new one) and
is signed with the server's secret (HMAC-SHA256), so the server checks it without storing it,
and two servers sharing the secret agree. It is worth nothing beyond that session's runtime
calls (ship its journal, logs, checkpoints and outputs; fetch its code and its own dataset
view; load checkpoints its owner may read), and nothing at all once that attempt has ended:
the server accepts it only while the session's current attempt is the one it names and the
session is active. The user process never sees it.
"""

import hashlib
import hmac

PREFIX = "nsml-s"


def session_token(secret: bytes, session_id: int, attempt: int) -> str:
    body = f"{PREFIX}.{session_id}.{attempt}"
    return f"{body}.{_sign(secret, body)}"


def parse_session_token(secret: bytes, token: str) -> tuple[int, int] | None:
    """(session id, attempt) of a genuine scoped token; None for anything else."""
    if not token.startswith(PREFIX + "."):
        return None
    body, _, mac = token.rpartition(".")
    parts = body.split(".")
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    if not hmac.compare_digest(mac, _sign(secret, body)):
        return None
    return int(parts[1]), int(parts[2])


def is_session_token(token: str) -> bool:
    return token.startswith(PREFIX + ".")


def _sign(secret: bytes, body: str) -> str:
    return hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()
