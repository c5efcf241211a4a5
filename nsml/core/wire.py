"""The JSON-line protocol spoken over Unix sockets between the processes of one session.

One request per connection: the caller sends one JSON object and a newline, the listener
answers with one JSON object and a newline, then the connection closes. Used by the infer
loop (nsml.client.serve), by the ``nsml exec`` listener in the user process
(nsml.client.repl) and by their callers (the supervisor; the server for infer until issue 11
moves infer onto the supervisor's channel). Standard library only, imported lazily by the
user library, so ``import nsml`` stays light.
"""

import json
import os
import socket


def read_line(conn, limit=None):
    """Bytes up to and including the first newline (or the end); None past `limit` bytes."""
    data = bytearray()
    while not data.endswith(b'\n'):
        chunk = conn.recv(1 << 16)
        if not chunk:
            break
        data += chunk
        if limit is not None and len(data) > limit:
            return None
    return bytes(data)


def encode_line(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode() + b'\n'


def listen(path, backlog=16) -> socket.socket:
    """A listening Unix socket at `path` (replacing a stale one), usable by this OS user only."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(backlog)
    return listener


def connect(conn, path, owner=None) -> None:
    """Connect `conn` to the Unix socket at `path`, however deep the path (sockaddr_un holds about
    100 bytes: a longer one is reached through an open descriptor of its folder).

    `owner`: the uid that must own the socket. A socket in a session's spool is the session's
    to replace, with a link to some other socket among them; it is checked first (the caller
    sends nothing secret: a race can at worst misdirect one request).
    """
    import stat

    path = os.fspath(path)
    if owner is not None:
        found = os.lstat(path)
        if not stat.S_ISSOCK(found.st_mode) or found.st_uid != owner:
            raise OSError(f'{path} is not a socket of uid {owner}')
    if len(os.fsencode(path)) < 100:
        conn.connect(path)
        return
    folder = os.open(os.path.dirname(path) or '.', os.O_RDONLY | os.O_DIRECTORY)
    try:
        conn.connect(f'/proc/self/fd/{folder}/{os.path.basename(path)}')
    finally:
        os.close(folder)


def ask(path, request, timeout=None, limit=None, owner=None):
    """Send one request to the listener at `path` and return its decoded answer.

    Raises OSError when nobody listens or the time runs out, ValueError when the answer is not
    one JSON line (the listener died halfway, or it was longer than `limit` bytes).
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        connect(conn, path, owner)
        conn.sendall(encode_line(request))
        reply = read_line(conn, limit)
    if reply is None:
        raise ValueError(f'the answer was longer than {limit} bytes')
    return json.loads(reply)
