"""The journal writer: SPOOL/journal.ndjson, one JSON object per line (docs/internals.md; the
format's one definition is nsml.core.spool, which the supervisor and the server's ingest use too).

``report()`` has to cost well under a microsecond, so the calling thread does no system call and,
for the common case, no JSON encoding: it appends a record to a deque (atomic in CPython, so no
lock on the hot path) and returns. A daemon thread wakes every ``FLUSH_INTERVAL`` seconds, encodes
what has piled up and writes it with one ``write()``. Encoding there also moves work to moments
when the training thread is likely waiting on the GPU with the GIL released.

The backlog is kept short: once more than ``ENCODE_BATCH`` records are waiting, the report()
that sees it encodes them itself (``encode_backlog``), so at most one call in ENCODE_BATCH pays
for encoding, and only in loops that report faster than ENCODE_BATCH / FLUSH_INTERVAL times a
second. Measured (bench/report_overhead_micro.py), this is what keeps the slowest 1 % of calls
fast: a backlog of 0.2 s of reports is tens of megabytes of fresh objects, which the allocator
has to get from the kernel page by page (a page fault every ten calls or so, each a few
microseconds) and returns once the flusher has freed them; a short backlog reuses the same
memory over and over. It also keeps the flusher's turns with the GIL, which stall the training
thread, short. The encoded chunks wait in a second deque for the next write.

Records are of four kinds. A finished line (``str``). A tuple ``(walltime, step, summary,
values)`` (``encode_record``). For report()'s Python hot path, the keyword-arguments dict of the
call itself, holding plain immutable scalars only (so encoding later gives the same bytes as
now), with ``walltime`` set to the time of the call and ``step`` still among the values, its
``__`` keys not yet renamed. And for the C fast path (_fastreport.c), the tuple ``(names,
value, ..., walltime)``, ``names`` being the call site's own tuple of keyword names. Neither a
dict nor a tuple of scalars is tracked by the garbage collector, so a backlog of them does not
make collections slower.

Consecutive hot-path records of the same keys (the same call site, nearly always) are written
as batch lines, a row per report (spool.BATCH, ``encode_run``), with orjson: encoding a row
costs about a fifteenth of a line with json, and the server ingests a batch a column at a time.
Anything that breaks a run (other keys, a summary, a checkpoint) is written in order between
runs, so the order of records is kept exactly.

Ordering: records are taken off the deque and encoded under ``_lock``, and written in order under
``_write_lock``, which drains both deques first; so a checkpoint line always lands after the
metrics reported before it, as the supervisor expects. ``_lock`` is never held across a system
call, so a slow disk never blocks report(): only the flusher waits for it.

Stopping: ``nsml stop`` makes the supervisor send SIGTERM to the process group, and SIGKILL 10 s
later. Python's default SIGTERM action ends the process on the spot, without atexit, which would
lose what is still in the deque; so the first report()/save() on the platform installs a handler
that writes the journal and then exits (``install_stop_handler``), unless the script has a
SIGTERM handler of its own.

Pausing: ``nsml pause`` sends SIGUSR1, whose handler (nsml.client.stopgo) saves a checkpoint and
writes lines; when it interrupts the main thread inside a write or encoding here (``busy_here``),
it puts the pause off until that is done (``after_write``), as the SIGTERM handler does.
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
# Records waiting before report() encodes them itself. Fewer than 1 % of calls may pay (so it is
# well above 100), and the backlog stays below the garbage collector's first threshold (700
# allocations), so queued records never trigger a collection.
ENCODE_BATCH = 512


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


def encode_record(record, _line=spool.METRICS_LINE):
    """The line for a queued ``(walltime, step, summary, values)`` record.

    ``__`` in keys becomes ``/`` here, as report() does for the values it encodes at once;
    renaming twice changes nothing (no ``__`` is left), so renamed values can come here too.
    """
    walltime, step, summary, values = record
    for key in values:
        if '__' in key:
            values = {k.replace('__', '/'): v for k, v in values.items()}
            break
    # An int step is its own JSON (str(int)); a float needs the encoder for NaN and Infinity.
    return _line % (walltime, 'null' if step is None else step if type(step) is int else encode(step),
                    'true' if summary else 'false', encode(values))


def encode_metrics(walltime, step, summary, values, _line=spool.METRICS_LINE):
    """A metrics line. Raises TypeError/ValueError/RecursionError if a value is not JSON."""
    # The codec's envelope, formatted directly: encoding it as a dict costs half again as much.
    return _line % (walltime, 'null' if step is None else encode(step), 'true' if summary else 'false',
                    encode(values))


# A batch line holds at most this many values (a row per report): well under spool.MAX_LINE at
# the 24 characters a float may take, with room for its names.
BATCH_VALUES = 16384
# Reports with more keys than this are written a line each (the server's columnar ingest, too,
# takes at most 64 keys at once).
BATCH_KEYS = 64

try:  # several times faster than json at numbers; a dependency of nsml, but report() works without
    from orjson import dumps as _orjson_dumps
except ImportError:  # pragma: no cover - nsml's own install always has it
    _orjson_dumps = None


def encode_run(run):
    """Lines (bytes) for consecutive hot-path records of the same keys: batch lines
    (spool.batch_records) where they can be, a metrics line per record where not.

    A record is report()'s keyword dict (walltime set, step among the values) or the C fast
    path's tuple ``(names, value, ..., walltime)``. orjson writes NaN and infinities as null,
    which would change what the server is told (it refuses them with a note, docs/internals.md),
    and None cannot be summed: so a run is summed first, and one with a non-finite number or a
    None, or an int beyond 64 bits (orjson refuses those), is written line by line, as before.
    A sum overflowing to infinity only makes a run of finite numbers take the slower way.
    """
    first = run[0]
    if type(first) is dict:
        names = list(first)
        rows = [list(record.values()) for record in run]
    else:
        names = list(first[0]) + ['walltime']
        rows = [record[1:] for record in run]
    if len(run) < 2 or len(names) > BATCH_KEYS + 2:
        return _encode_lines(run)
    for i, name in enumerate(names):
        if '__' in name:
            names[i] = name.replace('__', '/')
    if len(set(names)) != len(names):  # a__b and a/b in one call: as a line, later wins as before
        return _encode_lines(run)
    if _orjson_dumps is None:
        return _encode_batches(names, rows, lambda batch: encode(batch).encode())
    try:
        total = sum(map(sum, rows))
        if total - total == 0:
            return _encode_batches(names, rows, _orjson_dumps)
    except TypeError:  # a None; or, from orjson, an int it cannot write
        pass
    return _encode_lines(run)


def _encode_batches(names, rows, dumps):
    step = max(1, BATCH_VALUES // len(names))
    return b''.join(dumps({'k': spool.BATCH, 'c': names, 'r': rows[i:i + step]}) + b'\n'
                    for i in range(0, len(rows), step))


def _encode_lines(run):
    lines = []
    for record in run:
        if type(record) is dict:
            record = (record.pop('walltime'), record.pop('step', None), False, record)
        else:
            values = dict(zip(record[0], record[1:-1]))
            record = (record[-1], values.pop('step', None), False, values)
        lines.append(encode_record(record))
    return ('\n'.join(lines) + '\n').encode()


class Journal:
    """Appends lines to one journal file from any thread; see the module docstring."""

    def __init__(self, path):
        self.path = path
        # O_APPEND: lines from forked or spawned workers writing the same file never overwrite.
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._pending = deque()
        self._encoded = deque()  # bytes, each chunk encoded from records older than the next
        self._init_locks()
        self._unwritten = b''  # bytes a failed write() left behind, retried on the next flush
        self._warned = False
        # The first append starts the flusher, then ``append`` becomes the deque's own bound C
        # method: the hot path is one attribute lookup and one C call.
        self.append = self._start_and_append
        atexit.register(self.flush)
        os.register_at_fork(after_in_child=self._after_fork)

    def _init_locks(self):
        # Both reentrant, because the SIGTERM handler may run in the main thread while that
        # thread holds them: ``_writing`` (inside its own write: save() or flush()) or
        # ``_encoding`` (the thread that has records in hand) tell it so, and it then lets that
        # work end rather than deadlock or reorder lines (``flush_for_stop``).
        self._lock = threading.RLock()  # taking records off _pending, onto _encoded
        self._write_lock = threading.RLock()  # writing, one write at a time, in order
        self._writing = False
        self._encoding = None  # the thread that holds records taken off _pending, if any
        self._stop_after_write = False

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

    def encode_backlog(self):
        """Encode the pending records into a chunk for the next write; report() calls this.

        Never waits: if another thread is taking records off the deque right now, that thread
        takes these too (or a later call does).
        """
        lock = self._lock
        if not lock.acquire(blocking=False):
            return
        try:
            if self._encoding is not None:
                return  # reentered (a signal handler that reports): the outer call has records in hand
            self._encoding = threading.get_ident()
            try:
                chunk = self._encode_pending()
                if chunk:
                    self._encoded.append(chunk)
            finally:
                self._encoding = None
        finally:
            lock.release()
        self._stop_if_asked()

    def _encode_pending(self):
        """The records pending now, taken off the deque and encoded; the caller holds _lock."""
        pending = self._pending
        popleft = pending.popleft
        out = []  # encoded lines, bytes
        run, names = [], None  # consecutive reports of the same keys, and those keys
        for _ in range(len(pending)):  # only what is there now; appends may race in behind
            record = popleft()
            kind = type(record)
            if kind is dict:  # report()'s Python hot path: see the module docstring
                keys = tuple(record)
            elif kind is tuple and type(record[0]) is tuple:  # the C fast path's
                keys = record[0]
            else:
                if run:
                    out.append(encode_run(run))
                    run, names = [], None
                out.append((record if kind is str else encode_record(record)).encode() + b'\n')
                continue
            if keys is not names and keys != names:
                if run:
                    out.append(encode_run(run))
                run, names = [], keys
            run.append(record)
        if run:
            out.append(encode_run(run))
        return b''.join(out)

    def _write(self, tail):
        with self._write_lock:
            self._writing = True
            try:
                self._write_pending(tail)
            finally:
                self._writing = False
        self._stop_if_asked()

    def _stop_if_asked(self):
        if self._stop_after_write and threading.current_thread() is threading.main_thread():
            # SIGTERM came while this (main) thread was writing or encoding: that is done; now
            # write what other threads appended meanwhile, and stop.
            self._stop_after_write = False
            _on_sigterm(None, None)
        elif after_write and threading.current_thread() is threading.main_thread():
            after_write.pop()()  # a pause put off while this thread was writing (nsml.client.stopgo)

    def busy_here(self):
        """Whether this thread is inside the journal's own write or encoding now: a signal
        handler that interrupted it must not write (its lines would be torn or out of order)."""
        if self._encoding == threading.get_ident():
            return True
        if not self._write_lock.acquire(blocking=False):
            return False  # another thread writes; this one is not inside (the lock is reentrant)
        try:
            return self._writing
        finally:
            self._write_lock.release()

    def flush_for_stop(self):
        """Flush from the SIGTERM handler; False if its own thread is mid-write (stop after it).

        A flusher thread stuck on a hung disk is not waited for past a few seconds: the process
        then exits anyway, and atexit tries once more.
        """
        if not self._write_lock.acquire(timeout=STOP_FLUSH_TIMEOUT):
            return True
        try:
            if self._writing or self._encoding == threading.get_ident():
                # Reentered: the interrupted write or encoding has records in hand.
                self._stop_after_write = True
                return False
            self._write_pending(b'')
            return True
        finally:
            self._write_lock.release()

    def _write_pending(self, tail):
        # The caller holds _write_lock. _lock is held only while encoding, never for the write.
        with self._lock:
            self._encoding = threading.get_ident()
            try:
                chunk = self._encode_pending()
                encoded = self._encoded
                chunks = [encoded.popleft() for _ in range(len(encoded))]
            finally:
                self._encoding = None
        data = self._unwritten
        if chunks:
            data += b''.join(chunks)
        data += chunk + tail
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
        # The child inherits the parent's unflushed records (the parent writes those), locks the
        # parent's threads may have been holding, and no flusher thread: start clean.
        self._pending.clear()
        self._encoded.clear()
        self._unwritten = b''
        self._init_locks()
        self.append = self._start_and_append


_instance = None
_opening = threading.Lock()
after_write = []  # at most one function, run in the main thread once its journal write is done


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
