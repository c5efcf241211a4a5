"""Stop-and-go: ``nsml pause`` (and preemption) checkpoint a running script and end it, so that
``nsml resume`` can go on from there (docs/library.md, docs/scheduler.md).

The platform asks by sending SIGUSR1 to the script's process. Python's default for SIGUSR1 ends
the process on the spot, losing everything since the last checkpoint; so once a script has bound
a save on the platform (``nsml.bind(save=...)``, or objects for the default save), ``bind``
installs a handler here and says so in the journal (a ``ready`` stop-and-go line): only then
does the server accept ``nsml pause`` for it, and a script without one gets a clear refusal
instead of a silent loss. A script with a SIGUSR1 handler of its own keeps it, and is not
pausable.

On the signal the handler saves checkpoint ``paused-<local time>`` through the bound save (the
newest checkpoint, so ``nsml resume`` starts from it), writes a ``paused`` line naming it after
the checkpoint's line, and ends the process with SystemExit(0), which unwinds the script like
sys.exit() (its ``finally`` blocks and atexit run; what they report is written by the atexit
flush). If the save raises, nothing is half-written (the checkpoint's folder is removed, as for
any failed save), the error goes to the log and, as a ``failed`` line, to the server, and the
script keeps running: the server tells whoever asked, and a preemption then stops it.

The handler runs in the main thread between two bytecodes of whatever it was doing. It must not
save in the middle of the library's own work there (a journal write, which would tear lines, or
a save or load, which would run the user's functions inside themselves): then the pause is put
off until that work returns (``run_deferred``). A child forked after the handler was installed
ignores the signal: the pause is its parent's to make. A second signal while a pause is under
way (the server repeats its request after a restart) changes nothing.
"""

import os
import sys
import threading
import time

from nsml.client.context import CONTEXT

_armed_pid = None  # the process whose handler is installed (None: none yet)
_pausing = False  # a pause is being made now
_deferred = False  # a signal came while the library was busy: pause once it is not


def arm():
    """Install the SIGUSR1 handler and tell the platform the script can be paused: called by
    bind() once a save is bound. Only on the platform, only from the main thread (the only one
    that may install a handler; bind() is called there in practice), once per process, and
    never over a handler the script installed itself."""
    global _armed_pid
    if not CONTEXT.spool or _armed_pid == os.getpid() or threading.current_thread() is not threading.main_thread():
        return
    import signal

    if signal.getsignal(signal.SIGUSR1) is not signal.SIG_DFL:
        return
    from nsml.client import journal
    from nsml.core import spool

    signal.signal(signal.SIGUSR1, _on_signal)
    _armed_pid = os.getpid()
    journal.current().write_line(spool.stop_and_go_line(time.time(), spool.READY))


def _on_signal(signum, frame):
    global _deferred
    if os.getpid() != _armed_pid or _pausing:
        return  # a forked child's copy of the handler, or a repeated request
    if _library_busy():
        from nsml.client import journal

        _deferred = True
        journal.after_write[:] = [run_deferred]
        return
    pause()


def _library_busy():
    from nsml.client import checkpoints, journal

    current = journal._instance
    return checkpoints._in_call[0] > 0 or (current is not None and current.busy_here())


def run_deferred():
    """Make the pause a signal asked for while the library was busy, once it is not (called
    from the main thread at the end of the journal's writes and of save() and load())."""
    global _deferred
    if _deferred and not _pausing and os.getpid() == _armed_pid \
            and threading.current_thread() is threading.main_thread() and not _library_busy():
        _deferred = False
        pause()


def pause():
    """Save the pause checkpoint, report it and end the process; on a failed save, report the
    failure and return (the script goes on)."""
    global _pausing
    from nsml.client import checkpoints, journal
    from nsml.core import spool

    _pausing = True
    name = time.strftime('paused-%Y-%m-%d_%H-%M-%S')
    try:
        checkpoints.save(name)
    except Exception as exc:  # SystemExit (a stop meanwhile) and KeyboardInterrupt go on up
        from nsml.client.protocol import user_traceback

        trace = user_traceback(exc)
        print(f'nsml: the pause failed: saving checkpoint {name} raised an error; the session keeps running.\n{trace}',
              file=sys.stderr, flush=True)
        lines = [ln for ln in trace.splitlines() if ln.strip()]
        journal.current().write_line(spool.stop_and_go_line(time.time(), spool.PAUSE_FAILED,
                                                            error=lines[-1] if lines else repr(exc)))
        _pausing = False
        return
    journal.current().write_line(spool.stop_and_go_line(time.time(), spool.PAUSED, name=name))
    print(f'nsml: paused at checkpoint {name}; nsml resume {CONTEXT.session_name} goes on from there.',
          file=sys.stderr, flush=True)
    raise SystemExit(0)
