"""An infer session's request loop: the loaded model answers on a Unix socket in the spool.

The server forwards ``POST /api/sessions/…/infer`` here, so the model is loaded once and kept
for every request. Protocol: one JSON line in, ``{"data": ...}``; one JSON line out,
``{"output": ...}`` or ``{"error": "traceback"}``. Requests are answered one at a time, as
models are rarely thread-safe.
"""

import json
import sys

from nsml.client.checkpoints import infer
from nsml.core.wire import encode_line as _line, listen, read_line

SOCKET_FILE = 'infer.sock'
MAX_REQUEST = 64 << 20


def serve_forever(path, record_stage):
    listener = listen(path)
    record_stage('serving')
    print('nsml: the model is loaded; serving inference requests', flush=True)
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                _answer(conn)
            except OSError:
                continue  # the caller went away; wait for the next one


def _answer(conn):
    data = read_line(conn, MAX_REQUEST)
    if data is None:
        conn.sendall(_line({'error': f'request larger than {MAX_REQUEST >> 20} MB'}))
        return
    try:
        request = json.loads(data)
        output = infer(request['data'])
        reply = {'output': jsonable(output)}
    except BaseException as exc:  # the user's infer raising must not end the session
        if isinstance(exc, KeyboardInterrupt):
            raise
        from nsml.client.protocol import user_traceback

        text = user_traceback(exc)
        print(f'nsml: infer failed:\n{text}', file=sys.stderr, flush=True)
        reply = {'error': text}
    conn.sendall(_line(reply))


def jsonable(value):
    """Tuples, numpy values and tensors as plain JSON values (also for the built-in
    prediction format, nsml.client.predict)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    for attr in ('tolist', 'item'):
        if hasattr(value, attr):
            try:
                return jsonable(getattr(value, attr)())
            except (TypeError, ValueError):
                continue
    return str(value)
