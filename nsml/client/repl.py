"""``nsml exec``: evaluate code in the scope a running script registered.

On the platform, the first ``nsml.report(scope=...)`` or ``nsml.paused(scope=...)`` starts a
daemon thread here that listens on a Unix socket (``SPOOL/repl.sock``, or a private temporary
folder when that path is too long for a socket) and writes ``SPOOL/repl.json``
(``{"socket": PATH, "pid": PID}``), which tells the supervisor that a scope is registered and
where to forward ``nsml exec`` requests. The supervisor receives those over the channel it
holds open to the server (nsml.scheduler.channel); nothing but the supervisor, which runs as the
same OS user, connects here.

Protocol (nsml.core.wire): ``{"code": "..."}`` in; ``{"ok": bool, "output": str, "error": str}``
out. An expression's ``repr`` is the output; a statement's output is what it printed. Output is
kept to ``MAX_OUTPUT`` characters, with a note saying how much was cut.

Only the session's main process serves (the supervisor makes it a process group leader), so a
forked data-loader worker registering a scope does not take the socket over.
"""

import os
import sys
import threading

from nsml.client import scope as _scope
from nsml.client.context import CONTEXT

INFO_FILE = 'repl.json'
SOCKET_FILE = 'repl.sock'
MAX_REQUEST = 1 << 20
MAX_OUTPUT = 1 << 20  # characters of output sent back per request
_SOCKET_PATH_MAX = 100  # sockaddr_un holds 108 bytes on Linux, 104 on macOS


def start():
    """Start serving this process's registered scope; False where it does not (off the
    platform, or in a process that is not the session's main one)."""
    if not CONTEXT.spool or os.getpid() != os.getpgrp():
        return False
    from nsml.core.wire import listen

    path, folder = _socket_path()
    listener = listen(path)
    _write_info(path)
    import atexit

    atexit.register(_cleanup, path, folder)
    threading.Thread(target=_serve, args=(listener,), name='nsml-exec', daemon=True).start()
    return True


def _socket_path():
    """(socket path, temporary folder to remove at exit or None)."""
    path = os.path.join(CONTEXT.spool, SOCKET_FILE)
    if len(os.fsencode(path)) <= _SOCKET_PATH_MAX:
        return path, None
    import tempfile

    folder = tempfile.mkdtemp(prefix='nsml-exec-')  # mode 0700: only this OS user gets in
    return os.path.join(folder, 's'), folder


def _write_info(path):
    import json

    info = os.path.join(CONTEXT.spool, INFO_FILE)
    tmp = f'{info}.{os.getpid()}.tmp'
    with open(tmp, 'w') as f:
        json.dump({'socket': path, 'pid': os.getpid()}, f)
    os.replace(tmp, info)  # atomic: the supervisor may read it at any moment


def _cleanup(path, folder):
    for name in (path, os.path.join(CONTEXT.spool, INFO_FILE)):
        try:
            os.unlink(name)
        except OSError:
            pass
    if folder:
        try:
            os.rmdir(folder)
        except OSError:
            pass


def _serve(listener):
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                _answer(conn)
            except OSError:
                continue  # the supervisor gave up waiting (a slow expression); take the next


def _answer(conn):
    import json

    from nsml.core.wire import encode_line, read_line

    data = read_line(conn, MAX_REQUEST)
    if data is None:
        reply = {'ok': False, 'output': '', 'error': f'the code is longer than {MAX_REQUEST >> 20} MB'}
    else:
        try:
            code = json.loads(data)['code']
        except (ValueError, KeyError, TypeError):
            reply = {'ok': False, 'output': '', 'error': 'a malformed request reached the nsml exec listener'}
        else:
            reply = evaluate(code)
    conn.sendall(encode_line(reply))


def evaluate(code):
    """Run `code` in the registered scope: an expression gives its repr, a statement what it
    printed; an exception gives its traceback (without the library's frames)."""
    scope = _scope.current()
    if scope is None:
        return {'ok': False, 'output': '', 'error': 'no scope is registered'}
    try:
        compiled, is_expression = compile(code, '<nsml exec>', 'eval'), True
    except SyntaxError:
        try:
            compiled, is_expression = compile(code, '<nsml exec>', 'exec'), False
        except SyntaxError as exc:
            return {'ok': False, 'output': '', 'error': _format(exc)}
    namespace, before = _namespace(scope)
    out = _Bounded(MAX_OUTPUT)
    error = ''
    with _captured(out):
        try:
            value = eval(compiled, namespace)
            if is_expression:
                out.write(_repr(value) + '\n')
        except BaseException as exc:  # SystemExit too: `exit()` typed into exec must not end training
            if isinstance(exc, KeyboardInterrupt):
                raise
            error = _format(exc)
    if namespace is not scope:
        # New and rebound names go back into the scope, so later `nsml exec` calls see them.
        for key, value in namespace.items():
            if before.get(key, _MISSING) is not value:
                scope[key] = value
    return {'ok': not error, 'output': out.text(), 'error': error}


_MISSING = object()


def _namespace(scope):
    """One dict to evaluate in: the entry file's globals overlaid with the scope.

    A function's ``locals()`` lacks the module's names (``nsml``, imports) and, used as the
    locals of eval, hides itself from comprehensions and lambdas; one merged dict has neither
    problem. A module scope (``scope=globals()``, or ``locals()`` at top level) is used as is.
    """
    main = getattr(sys.modules.get('__main__'), '__dict__', {})
    if scope is main or ('__builtins__' in scope and '__name__' in scope):
        return scope, None
    namespace = dict(main)
    namespace.update(scope)
    return namespace, dict(namespace)


def _repr(value):
    try:
        return repr(value)
    except Exception as exc:  # a broken __repr__ still answers
        return f'<{type(value).__name__} object; repr() raised {type(exc).__name__}: {exc}>'


def _format(exc):
    from nsml.client.protocol import user_traceback

    return user_traceback(exc)


class _Bounded:
    """A text sink that keeps the first `limit` characters and counts the rest."""

    def __init__(self, limit):
        self.limit, self.parts, self.size, self.dropped = limit, [], 0, 0

    def write(self, text):
        text = str(text)
        room = self.limit - self.size
        if room > 0:
            self.parts.append(text[:room])
            self.size += min(len(text), room)
        self.dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def flush(self):
        pass

    def text(self):
        text = ''.join(self.parts)
        if self.dropped:
            text += f'\n[nsml] output truncated: {self.dropped} more characters not shown\n'
        return text


class _PerThread:
    """sys.stdout/stderr while an exec runs: writes from the exec thread go to its buffer, the
    training threads' writes go on to the log as before."""

    def __init__(self, original, sinks):
        self._original, self._sinks = original, sinks

    def write(self, text):
        sink = self._sinks.get(threading.get_ident())
        return (sink or self._original).write(text)

    def flush(self):
        sink = self._sinks.get(threading.get_ident())
        (sink or self._original).flush()

    def __getattr__(self, name):
        return getattr(self._original, name)


class _captured:
    def __init__(self, sink):
        self.sink = sink

    def __enter__(self):
        me = threading.get_ident()
        self.saved = sys.stdout, sys.stderr
        sys.stdout = _PerThread(sys.stdout, {me: self.sink})
        sys.stderr = _PerThread(sys.stderr, {me: self.sink})
        return self.sink

    def __exit__(self, *exc):
        # Restore only what is still ours: the script may have replaced sys.stdout meanwhile.
        if isinstance(sys.stdout, _PerThread):
            sys.stdout = self.saved[0]
        if isinstance(sys.stderr, _PerThread):
            sys.stderr = self.saved[1]
        return False
