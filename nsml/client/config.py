"""``nsml.config()``: a run's effective configuration, defaults included, for the runs table.

The platform knows a session's command-line options from its arguments; what it cannot know
from them is every default the script filled in (`hidden=64` when `--hidden` was not given). So
on the platform the library records:

- each namespace an ``argparse`` parser returns (``parse_args``/``parse_known_args``: the
  outermost call of each), captured automatically as ClearML does: the wrapper is installed by
  ``import nsml`` on the platform only (NSML_NO_ARGPARSE_CAPTURE=1 turns it off), and a script
  that parsed its arguments before importing nsml can call ``nsml.config(vars(args))``;
- whatever the script passes to ``nsml.config(...)`` (JSON values only: never a model or a
  tensor, and never the ``scope=`` of report/paused).

Both become one journal line, ``{"k": "p", "w": WALLTIME, "v": {KEY: VALUE}}`` (nsml/core/spool.py),
which the ingest merges into the session's parameters (a later value of a key wins). Values that
are not JSON scalars, lists or dicts of those (a Path, an enum, a function) are recorded as their
``str()`` (at most MAX_TEXT characters), since a configuration is for reading and comparing,
not for rebuilding objects.
Off the platform, config() only returns the merged configuration.
"""

import os
import time

from nsml.client.context import CONTEXT

MAX_TEXT = 1024  # the server keeps a parameter's text up to this long (nsml/core/params.py)
_merged = {}


def config(values=None, **more):
    """Record configuration values: ``nsml.config(lr=0.01, layers=[64, 64])`` or
    ``nsml.config(vars(args))``; returns the configuration recorded so far."""
    given = {}
    if values is not None:
        if not hasattr(values, 'items'):
            raise TypeError(f'nsml.config: pass a mapping (such as vars(args)) or keywords, not a {type(values).__name__}')
        given.update(values)
    given.update(more)
    clean = {}
    for key, value in given.items():
        if not isinstance(key, str):
            raise TypeError(f'nsml.config: keys are names (str), not {type(key).__name__}')
        clean[key] = _jsonable(value, 0)
    _merged.update(clean)
    if clean and CONTEXT.spool:
        _write(clean)
    return dict(_merged)


def _jsonable(value, depth):
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value - value == 0 else str(value)  # NaN and infinities as text
    if depth < 8 and isinstance(value, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in value]
    if depth < 8 and isinstance(value, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    text = str(value)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + '…'


def _write(values):
    from nsml.client import journal
    from nsml.core import spool

    line = spool.config_line(time.time(), values)
    opened = journal.current()
    if opened is not None:
        opened.write_line(line)  # after the metrics reported before it, in order


# -- argparse --------------------------------------------------------------------------------
_depth = 0  # parse_known_args calls itself for sub-parsers and parse_args: record the outermost


def capture_argparse():
    """Wrap argparse.ArgumentParser.parse_known_args to record what it returns (once)."""
    if os.environ.get('NSML_NO_ARGPARSE_CAPTURE'):
        return
    import argparse

    original = argparse.ArgumentParser.parse_known_args
    if getattr(original, '_nsml_capture', False):
        return

    def parse_known_args(self, *args, **kwargs):
        global _depth
        _depth += 1
        try:
            result = original(self, *args, **kwargs)
        finally:
            _depth -= 1
        if _depth == 0:
            try:
                namespace = result[0]
                config({k: v for k, v in vars(namespace).items() if not k.startswith('_')})
            except Exception as exc:  # recording must never break the script's own parsing
                import sys
                print(f'nsml: could not record the arguments: {exc!r}', file=sys.stderr)
        return result

    parse_known_args._nsml_capture = True
    parse_known_args.__wrapped__ = original
    argparse.ArgumentParser.parse_known_args = parse_known_args
