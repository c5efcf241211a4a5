"""The variables scope a script registered with ``report(scope=...)`` or ``paused(scope=...)``.

``nsml exec SESSION EXPR`` evaluates in it (nsml.client.repl). Kept as a module-level
reference, never copied; ``report()`` may pass ``scope=locals()`` on every call, so after the
first registration this costs one assignment and one check. The first registration on the
platform starts the exec listener; off the platform it does nothing more.
"""

_scope = None
_serving = None  # None: the listener was not considered yet; then True or False


def remember(scope):
    global _scope
    _scope = scope
    if _serving is None:
        _start_serving()


def _start_serving():
    global _serving
    _serving = False  # decided once per process, whatever happens below
    from nsml.client.context import CONTEXT

    if not CONTEXT.spool:
        return
    from nsml.client import repl

    try:
        _serving = repl.start()
    except OSError as exc:  # no socket here (a read-only spool, odd kernel): training goes on
        import sys

        print(f'nsml: nsml exec is not available in this session: {exc}', file=sys.stderr)


def current():
    return _scope
