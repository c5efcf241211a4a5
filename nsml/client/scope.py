"""The variables scope a script registered with ``report(scope=...)`` or ``paused(scope=...)``.

NSML lets ``nsml exec`` / the web terminal evaluate expressions in that scope (e.g. ``config``).
That feature is not built yet; the library keeps the latest scope so it can be added without
changing user code. Kept as a module-level reference: no copy, so it costs nothing per call.
"""

_scope = None


def remember(scope):
    global _scope
    _scope = scope


def current():
    return _scope
