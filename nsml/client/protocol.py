"""``nsml.paused()``: where a relaunched script hands control to the platform.

NSML relaunches the entry file with its original arguments plus reserved ones (``--pause 1``
always, ``--iteration C`` for fork, ``--mode test`` for submit) to fork, submit or serve a
session. Scripts parse those with their own argparse and call ``nsml.paused(scope=locals())``
after ``nsml.bind``. The platform also says *why* it relaunched the script in the environment
(``NSML_RELAUNCH``, with the source session and checkpoint), so ``paused`` needs nothing from
the user:

- fork: load the checkpoint (from the session it was forked from) and return; training goes on;
- submit: load, predict the hidden test set (nsml.client.predict), write the predictions, exit;
  it never returns, so a script that trains unconditionally after ``paused`` does not train;
- infer: load, then answer inference requests until the session is stopped (nsml.client.serve).

Each step is recorded in ``SPOOL/relaunch.json`` for the supervisor: which step the process
reached, and the traceback if one failed, so the CLI can say "load failed" and show why.
"""

import os
import sys

from nsml.client import scope as _scope
from nsml.client.checkpoints import load
from nsml.client.context import CONTEXT

from nsml.core.spool import PREDICTION as PREDICTION_FILE, RELAUNCH as STAGE_FILE  # noqa: E402


def paused(scope=None):
    """Act on the platform command this process was launched for; a no-op unless relaunched
    (or started with ``--pause 1``). Call it after ``nsml.bind``, with ``scope=locals()``."""
    if scope is not None:
        _scope.remember(scope)
    from nsml.client import journal  # imported here: it loads json and threading

    journal.flush()  # what was reported before a fork/submit takes over is shipped first
    args = reserved_args(sys.argv[1:])
    kind = CONTEXT.relaunch
    if not kind:
        # Run by hand with --pause 1 --iteration C: resume from this session's own checkpoint.
        if args.get('pause') and args.get('iteration') is not None:
            load(args['iteration'])
        return
    if kind == 'fork':
        _load_source(args.get('iteration') or CONTEXT.source_checkpoint)
        record_stage('loaded')
        return
    if kind in ('submit', 'submit_test'):
        _submit()  # never returns
    if kind == 'infer':
        _load_source(CONTEXT.source_checkpoint)
        from nsml.client import serve

        socket_path = os.environ.get('NSML_INFER_SOCKET') or spool_path(serve.SOCKET_FILE)
        serve.serve_forever(socket_path, record_stage)  # never returns


def _load_source(checkpoint):
    """The relaunched checkpoint, through the bound load, from the session it belongs to."""
    _step('load', lambda: load(checkpoint, session=CONTEXT.source_session or None))


def _submit():
    from nsml.client import journal, predict

    _load_source(CONTEXT.source_checkpoint)
    output = spool_path(PREDICTION_FILE)
    written = predict.write_predictions(output, CONTEXT.dataset_path, _step, CONTEXT.submit_batch_size or None)
    record_stage('done', predictions=written)  # the evaluator reads the file by its format
    journal.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # a submit never returns to the script: it must not go on to train


_stage = {'now': ''}


def set_stage(name):
    """The step in progress, in memory only (for steps made of many calls)."""
    _stage['now'] = name


def _step(name, action):
    """Run one step of a relaunch; on failure record which step and why, print the traceback
    (it goes to the session's log) and end the process."""
    if _stage['now'] != name:
        record_stage(name)
    try:
        return action()
    except BaseException as exc:
        name = _stage['now'] or name
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            error = f'the script exited (sys.exit) during {name}'
        else:
            error = user_traceback(exc)
        record_stage(name, error=error)
        print(f'nsml: {name} failed:\n{error}', file=sys.stderr, flush=True)
        from nsml.client import journal

        journal.flush()
        os._exit(1)


def user_traceback(exc):
    """The traceback without the library's own frames: the user's code is what they can fix."""
    import traceback  # here, not at import: `import nsml` must stay light

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    te = traceback.TracebackException.from_exception(exc)
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if not f.filename.startswith(package)])
    return ''.join(te.format()).rstrip()


def spool_path(name):
    return os.path.join(CONTEXT.spool or '.', name)


def record_stage(stage, error='', **extra):
    """Write the step reached (atomically: the supervisor may read it at any moment), and
    anything the server needs to know with it (``extra``)."""
    _stage['now'] = stage
    if not CONTEXT.spool:
        return
    import json
    path = spool_path(STAGE_FILE)
    tmp = f'{path}.{os.getpid()}.tmp'
    with open(tmp, 'w') as f:
        json.dump({'stage': stage, 'error': error, **extra}, f)
    os.replace(tmp, path)


def reserved_args(argv):
    """The reserved arguments in ``argv`` as {'pause': int, 'iteration': str, 'mode': str}.

    Understands ``--name value`` and ``--name=value``; the last occurrence wins, as in argparse
    (the platform appends its arguments after the user's).
    """
    found = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith('--'):
            continue
        key, eq, value = arg[2:].partition('=')
        if key not in ('pause', 'iteration', 'mode'):
            continue
        if not eq:
            if i >= len(argv):
                continue
            value = argv[i]
            i += 1
        found[key] = value
    if 'pause' in found:
        try:
            found['pause'] = int(found['pause'])
        except ValueError:
            found['pause'] = 0
    return found
