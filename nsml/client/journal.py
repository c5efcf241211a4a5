"""The journal writer: SPOOL/journal.ndjson, one JSON object per line (docs/internals.md; the
format's one definition is nsml.core.spool, which the supervisor and the server's ingest use too).

``report()`` has to cost microseconds, so the calling thread does no system call and no JSON
encoding for the common case: it appends a record to a deque (atomic in CPython, so no lock on the
hot path) and returns. A daemon thread wakes every ``FLUSH_INTERVAL`` seconds, encodes what has
piled up and writes it with one ``write()``. Encoding there also moves work to moments when the
training thread is likely waiting on the GPU with the GIL released.

Records are either finished lines (``str``) or the metric values dict itself, holding plain
immutable scalars only (so encoding later gives the same bytes as now), with the walltime, step
and summary flag stored under the int keys 0, 1 and 2. Keyword-argument keys are always strings,
so those cannot collide; and unlike a ``(walltime, step, summary, values)`` tuple, a dict of
scalars is not tracked by the garbage collector, which kept a large backlog from making every
collection slower.

Ordering: every write happens under one lock and drains the deque first, so a checkpoint line
always lands after the metrics reported before it, as the supervisor expects.

Stopping: ``nsml stop`` makes the supervisor send SIGTERM to the process group, and SIGKILL 10 s
later. Python's default SIGTERM action ends the process on the spot, without atexit, which would
lose what is still in the deque; so the first report()/save() on the platform installs a handler
that writes the journal and then exits (``install_stop_handler``), unless the script has a
SIGTERM handler of its own.
"""

import atexit
import os
import sys
import threading
import time
from collections import deque

from nsml.client.context import CONTEXT
from nsml.core import spool

FLUSH_INTERVAL = 0.2
STOP_FLUSH_TIMEOUT = 3.0  # at most this long waiting for the flusher thread on SIGTERM


def _make_encoder():
    """A compact JSON encoder function (str), NaN/Infinity allowed as the contract says.

    The C encoder is built once and reused: ``json.dumps`` rebuilds it on every call, which is
    most of its cost for a small object. Circular checks are off; a cycle ends in RecursionError,
    which callers treat like any other "not JSON" error.
    """
    import json
    import json.encoder as impl

    def default(obj):
        raise TypeError(f'Object of type {type(obj).__name__} is not JSON serializable')

    if impl.c_make_encoder is not None:
        encode = impl.c_make_encoder(None, default, impl.encode_basestring_ascii, None,
                                     ':', ',', False, False, True)
        return lambda obj: ''.join(encode(obj, 0))
    return json.JSONEncoder(separators=(',', ':'), check_circular=False, default=default).encode


encode = _make_encoder()


def encode_record(record):
    """The line for a queued metrics record (see the module docstring)."""
    return encode_metrics(record.pop(0), record.pop(1), record.pop(2), record)


def encode_metrics(walltime, step, summary, values, _line=spool.METRICS_LINE):
    """A metrics line. Raises TypeError/ValueError/RecursionError if a value is not JSON."""
    # The codec's envelope, formatted directly: encoding it as a dict costs half again as much.
    return _line % (walltime, 'null' if step is None else encode(step), 'true' if summary else 'false',
                    encode(values))


class Journal:
    """Appends lines to one journal file from any thread; see the module docstring."""

    def __init__(self, path):
        self.path = path
        # O_APPEND: lines from forked or spawned workers writing the same file never overwrite.
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._pending = deque()
        # Reentrant, because the SIGTERM handler may run in the main thread while that thread is
        # inside its own write (save() or flush()); ``_writing`` tells it so, and it then waits
        # for that write to end rather than deadlock or interleave with it (``flush_for_stop``).
        self._lock = threading.RLock()
        self._writing = False
        self._stop_after_write = False
        self._unwritten = b''  # bytes a failed write() left behind, retried on the next flush
        self._warned = False
        # The first append starts the flusher, then ``append`` becomes the deque's own bound C
        # method: the hot path is one attribute lookup and one C call.
        self.append = self._start_and_append
        atexit.register(self.flush)
        os.register_at_fork(after_in_child=self._after_fork)

    def _start_and_append(self, record):
        # Two threads racing here at worst start two flushers, which share the lock: harmless.
        self.append = self._pending.append
        threading.Thread(target=self._run, name='nsml-journal', daemon=True).start()
        self._pending.append(record)

    def _run(self):
        while True:
            time.sleep(FLUSH_INTERVAL)
            try:
                self.flush()
            except Exception as exc:  # keep flushing: losing the thread would lose all metrics
                print(f'nsml: journal flush failed: {exc!r}', file=sys.stderr)

    def flush(self):
        """Write everything appended so far. Safe from any thread."""
        self._write(b'')

    def write_line(self, line):
        """Write the pending metrics, then ``line``, before returning (used for checkpoints)."""
        self._write((line + '\n').encode())

    def _write(self, tail):
        with self._lock:
            self._writing = True
            try:
                self._write_pending(tail)
            finally:
                self._writing = False
        if self._stop_after_write and threading.current_thread() is threading.main_thread():
            # SIGTERM came while this (main) thread was writing: that write is done; now write
            # what other threads appended meanwhile, and stop.
            self._stop_after_write = False
            _on_sigterm(None, None)

    def flush_for_stop(self):
        """Flush from the SIGTERM handler; False if its own thread is mid-write (stop after it).

        A flusher thread stuck on a hung disk is not waited for past a few seconds: the process
        then exits anyway, and atexit tries once more.
        """
        if not self._lock.acquire(timeout=STOP_FLUSH_TIMEOUT):
            return True
        try:
            if self._writing:  # reentered: the interrupted write has records in hand
                self._stop_after_write = True
                return False
            self._write_pending(b'')
            return True
        finally:
            self._lock.release()

    def _write_pending(self, tail):
        pending = self._pending
        lines = []
        for _ in range(len(pending)):  # only what is there now; appends may race in behind
            record = pending.popleft()
            if type(record) is dict:
                record = encode_record(record)
            lines.append(record)
        data = self._unwritten
        if lines:
            data += ('\n'.join(lines) + '\n').encode()
        data += tail
        while data:
            try:
                written = os.write(self._fd, data)
            except OSError as exc:
                # A full disk must not kill training: keep the bytes, in order, and retry them
                # on the next flush (a checkpoint line too: its directory is already complete).
                self._unwritten = data
                if not self._warned:
                    self._warned = True
                    print(f'nsml: cannot write {self.path}: {exc}; the journal is kept in memory '
                          'and retried', file=sys.stderr)
                return
            data = data[written:]
        self._unwritten = b''

    def _after_fork(self):
        # The child inherits the parent's unflushed records (the parent writes those), a lock the
        # parent's flusher may have been holding, and no flusher thread: start clean.
        self._pending.clear()
        self._unwritten = b''
        self._lock = threading.RLock()
        self._writing = False
        self._stop_after_write = False
        self.append = self._start_and_append


_instance = None
_opening = threading.Lock()


def current():
    """This process's journal, opened on first use; None off the platform (no spool).

    The first call from the main thread (the first report(), or any save(), on the platform)
    also installs the SIGTERM handler.
    """
    global _instance
    if _instance is None and CONTEXT.spool:
        with _opening:  # threads reporting at once must share one journal, or order is lost
            if _instance is None:
                path = os.path.join(CONTEXT.spool, spool.JOURNAL)
                try:
                    _instance = Journal(path)
                except OSError as exc:
                    raise OSError(f'nsml: cannot open the metrics journal {path}: {exc}') from exc
    if _handler_pid is None and _instance is not None:
        install_stop_handler()
    return _instance


def flush():
    """Write pending metrics now, if a journal is open (paused, save and load call this)."""
    if _instance is not None:
        _instance.flush()


# --- SIGTERM ------------------------------------------------------------------------------------

_handler_pid = None  # the process that decided whether to install the handler; None: not yet


def install_stop_handler():
    """Make SIGTERM write the journal before the process ends, if nobody else handles SIGTERM.

    Only the main thread may install a signal handler: when the journal was opened by a
    report() from another thread, the next save() from the main thread installs it. A handler
    the script installed, SIG_IGN included, is never replaced, and neither is one set outside
    Python (getsignal() answers None for those).
    """
    global _handler_pid
    if _handler_pid is not None or threading.current_thread() is not threading.main_thread():
        return
    import signal

    _handler_pid = os.getpid()
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum, frame):
    # Python runs this in the main thread, between two bytecodes of whatever it was doing.
    journal = _instance
    if journal is not None and not journal.flush_for_stop():
        return  # interrupted inside the main thread's own journal write: _write calls _stop()
    _stop()


def _stop():
    """End the process for SIGTERM, once the journal is written."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it at once, as usual
    if os.getpid() != _handler_pid:
        # A child forked (os.fork, multiprocessing) after the handler was installed: its stack is
        # a copy of the parent's, and unwinding it would run the parent's `finally` blocks a
        # second time (a final nsml.save(), say). It dies of the signal as it would have.
        os.kill(os.getpid(), signal.SIGTERM)
        return
    # The script's own process exits with SystemExit rather than dying of the signal: re-raising
    # SIGTERM with SIG_DFL would skip `finally` blocks, `with` exits and atexit (as the default
    # did), whereas SystemExit unwinds the stack like sys.exit(), so a script's cleanup, a final
    # nsml.save() in a `finally` block, TensorBoard writers and atexit all still run, and what
    # they report is written by the atexit flush. 143 (128 + SIGTERM) is the status a shell
    # reports for a process ended by SIGTERM; `nsml stop` marks the session stopped either way.
    # The 10 s SIGKILL bounds a cleanup that takes too long or an `except:` that swallows it.
    raise SystemExit(128 + signal.SIGTERM)
