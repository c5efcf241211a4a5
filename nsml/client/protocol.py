"""``nsml.paused()``: where a re-launched script hands control to the platform.

NSML re-launches the entry file with reserved arguments (``--pause 1``, ``--iteration C``,
``--mode test``) to fork, resume, submit or infer. Scripts parse those with their own argparse;
the library reads them from ``sys.argv`` itself, so ``paused`` needs no arguments from the user.

For now only the fork/resume part exists: load the checkpoint named by ``--iteration`` (if any)
and return, so the script goes on training. Submit and infer will extend ``paused`` here.
"""

import sys

from nsml.client import scope as _scope
from nsml.client.checkpoints import load


def paused(scope=None):
    """Act on the platform command this process was launched for; a no-op unless ``--pause 1``.

    Call it after ``nsml.bind``, with ``scope=locals()``.
    """
    if scope is not None:
        _scope.remember(scope)
    from nsml.client import journal  # imported here: it loads json and threading

    journal.flush()  # what was reported before a fork/submit takes over is shipped first
    args = reserved_args(sys.argv[1:])
    if not args.get('pause'):
        return
    checkpoint = args.get('iteration')
    if checkpoint is not None:
        load(checkpoint)


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
