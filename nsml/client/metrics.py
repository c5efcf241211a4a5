"""``nsml.report()``: metric values into the journal on the platform, onto stdout locally.

This is the one function users call in their inner loop. The common case on the platform (step
and values all ints, floats or None, no summary) does one type scan, one time() call, one
dictionary store and one deque append, and queues the keyword-arguments dict itself: renaming
``__`` keys, taking ``step`` out and encoding all happen later, in the journal's thread
(journal.py describes the record). Everything else takes ``_report``, the general path.

Where the C extension is built (nsml/client/_fastreport.c, optional), ``nsml.report`` is its
function instead: it takes the same common case at a fraction of the cost and hands every other
call, untouched, to ``report`` below, which stays the one definition of the behaviour.
NSML_PURE_PYTHON_REPORT=1 in the environment keeps the pure Python function (the tests run both).
"""

import os
import time

from nsml.client import scope as _scope

# Exact types whose values need no checking and no conversion on the hot path, step included
# (a step must be an int, a float or None). bool, str and float subclasses such as numpy.float64
# are not here: they take the general path, which checks and, where needed, encodes at once.
_NUMBERS = frozenset((float, int, type(None)))
# Values of exactly these types are immutable JSON scalars: they can be queued as they are and
# encoded later by the journal thread. Anything else (containers, float subclasses such as
# numpy.float64, unknown objects) is encoded at once, which both validates it and freezes it.
_PLAIN = frozenset((float, int, str, bool, type(None)))
_STEP_TYPES = frozenset((int, float, type(None)))
_time = time.time
_remember = _scope.remember

_journal = None  # None: not looked up yet; False: off the platform; else a journal.Journal
_pending = ()  # the journal's deque of records, and the backlog report() encodes itself past
_batch = 0
_encode_metrics = None  # bound on first use: importing json is deferred until then


def report(summary=False, scope=None, **values):
    """Record metric values, e.g. ``nsml.report(step=epoch, train__loss=0.5, acc=0.9)``.

    Values must be JSON values (numbers, strings, booleans, None, lists, dicts); anything else,
    a tensor for instance, raises TypeError. ``__`` in a key is shown as ``/`` (``train__loss`` is
    plotted as ``train/loss``). ``step`` sets the x-axis; ``walltime`` is always the time of the
    call. ``summary=True`` marks values for the session's summary (``nsml ps``, checkpoint
    summaries). ``scope=locals()`` registers variables for ``nsml exec``.

    On the platform the values are appended to the session's journal; locally they are printed.
    """
    # ``values`` is always a fresh dict (CPython builds one per call, even for ``**d``), so it
    # can be queued as it is. 'step' stays in it and 'walltime' is overwritten in place ("walltime
    # is always overwritten"); the journal thread takes both out, so the key order, and so the
    # line, is the same as if they had been removed here.
    if scope is not None:
        _remember(scope)
    if summary or not _journal or not _NUMBERS.issuperset(map(type, values.values())):
        return _report(summary, values)
    values['walltime'] = _time()
    _journal.append(values)
    if len(_pending) > _batch:
        _journal.encode_backlog()  # at most one call in ENCODE_BATCH: see journal.py


def _report(summary, values):
    """The general path: summaries, off the platform, step or values that need a closer look."""
    walltime = _time()
    step = values.pop('step', None)
    values.pop('walltime', None)  # "walltime is always overwritten": the line carries its own
    if type(step) not in _STEP_TYPES:
        step = _as_step(step)
    journal = _journal
    if journal is None:
        journal = _setup()
    plain = _PLAIN.issuperset(map(type, values.values()))
    if journal and plain and not summary:
        # The hot path's record, now that step is a plain number (see report()).
        values['step'] = step
        values['walltime'] = walltime
        journal.append(values)
        if len(_pending) > _batch:
            journal.encode_backlog()
        return
    given = values
    for key in values:
        if '__' in key:
            values = {k.replace('__', '/'): v for k, v in given.items()}
            break
    summary = True if summary else False
    if plain:
        if journal:
            journal.append((walltime, step, summary, values))  # a summary: rare, so a tuple
            return
    else:
        line = _encode_checked(walltime, step, summary, values, given)
        if journal:
            journal.append(line)
            return
    print(_readable(step, values))


def _setup():
    global _journal, _encode_metrics, _pending, _batch
    from nsml.client import journal

    _encode_metrics = journal.encode_metrics
    _journal = journal.current() or False
    if _journal:
        # The same deque for the journal's life: after a fork the child's is cleared, not replaced.
        _pending = _journal._pending
        _batch = journal.ENCODE_BATCH
        if _fast is not None:
            _fast.configure(report, _journal, _pending, _batch)
    return _journal


def _fast_report():
    """The C extension's report(), configured to hand everything to ``report`` until the
    journal is open; None where it is not built or NSML_PURE_PYTHON_REPORT is set."""
    if os.environ.get('NSML_PURE_PYTHON_REPORT'):
        return None, None
    try:
        from nsml.client import _fastreport
    except ImportError:
        return None, None
    _fastreport.configure(report, None, None, 0)
    # The text signature line lets inspect.signature() and help() show the real parameters.
    return _fastreport, _fastreport.make_report('report(summary=False, scope=None, **values)\n--\n\n'
                                                + report.__doc__)


_fast, fast_report = _fast_report()
# What ``nsml.report`` is: the C function where there is one, else the Python one.
public_report = report if fast_report is None else fast_report


def _as_step(step):
    # Integer-like objects (numpy.int64, a one-element integer tensor) are what people pass when
    # they loop over numpy ranges; their meaning is unambiguous, so take them.
    import operator  # the slow path only: `import nsml` stays free of it

    if not isinstance(step, bool):
        try:
            return operator.index(step)  # strict: a float tensor is not silently truncated
        except TypeError:
            pass
    if isinstance(step, float):  # a float subclass, e.g. numpy.float64
        return float(step)
    raise TypeError(f'nsml.report: step is a {type(step).__name__}, which is not a number; '
                    'pass an int (or float)')


def _encode_checked(walltime, step, summary, values, given):
    try:
        return _encode_metrics(walltime, step, summary, values)
    except (TypeError, ValueError, RecursionError):
        pass
    raise _not_json_error(given) from None


def _not_json_error(given):
    """Name the key and the offending type, and say what to do about it."""
    for key, value in given.items():
        found = _offender(value, 0)
        if found is None:
            continue
        bad = found[0]
        kind = type(bad).__name__
        if bad is value:
            if hasattr(value, 'item'):  # tensors and numpy scalars/arrays
                hint = f'pass float({key}) or {key}.item()'
            else:
                hint = 'pass a number, string, bool, None, or a list or dict of those'
            return TypeError(f"nsml.report: value for '{key}' is a {kind}, which is not JSON; {hint}")
        if kind == 'list' or kind == 'dict':
            what = 'is nested too deeply (does it contain itself?)'
            return TypeError(f"nsml.report: value for '{key}' {what}")
        return TypeError(f"nsml.report: value for '{key}' contains a {kind}, which is not JSON; "
                         'convert it with float(), int() or .tolist()')
    return TypeError('nsml.report: values must be JSON values')


def _offender(value, depth):
    """The first object inside ``value`` that JSON cannot hold, as a 1-tuple; None if all fine."""
    if value is None or isinstance(value, (str, int, float)):  # bool is an int
        return None
    if depth > 100:
        return (value,)
    if isinstance(value, (list, tuple)):
        items = value
    elif isinstance(value, dict):
        for key in value:
            if not (key is None or isinstance(key, (str, int, float))):
                return (key,)
        items = value.values()
    else:
        return (value,)
    for item in items:
        found = _offender(item, depth + 1)
        if found is not None:
            return found
    return None


def _readable(step, values):
    """The local console line: ``step=3, train/loss=0.5, acc=0.9``."""
    parts = [f'{key}={value}' for key, value in values.items()]
    if step is not None:
        parts.insert(0, f'step={step}')
    return ', '.join(parts)
