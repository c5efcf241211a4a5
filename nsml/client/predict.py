"""A submit's predictions: the hidden test data through the bound ``infer``, into a file.

Three ways, as NSML had them, chosen by what the dataset's owner put at its top level:

1. ``data_loader.py`` with ``feed_infer(output_file, infer_func)``: it reads the test data, calls
   ``infer_func`` and writes the predictions in its own format (scored by its evaluation.py);
2. the older ``data_loader.py`` with only ``test_data_loader(root_path)``: it gets the dataset's
   root (``DATASET_PATH``: it appends ``test/test_data`` itself) and returns the test data,
   which goes to ``infer``; the result is written NSML's way, one ``str(prediction)`` per line
   (the second element of each ``(probability, prediction)`` pair): what the dataset's own
   evaluation.py parses;
3. no data_loader.py: ``infer`` gets the path of ``test/test_data``; the result is written in the
   built-in format: one line per row, ``[probability, prediction]`` as JSON for NSML's
   ``[(probability, prediction), ...]``, the bare prediction for anything else.

nsml.core.scoring reads all three; ``write_predictions`` says which one it wrote so the
evaluator reads way 2 verbatim. ``nsml submit -b N`` passes ``batch_size=N`` to each of these
functions whose signature has a ``batch_size`` parameter (the loader's and the bound infer).
"""

import importlib.util
import json
import os
import sys

from nsml.client.checkpoints import infer


# What write_predictions wrote (the evaluator's nsml.core.scoring reads them).
OWN_FORMAT = 'loader'  # feed_infer's own
PLAIN_FORMAT = 'plain'  # str(prediction) per line, NSML's legacy test_data_loader protocol
BUILTIN_FORMAT = 'pairs'  # the built-in JSON pairs


def write_predictions(output, dataset_path, step, batch_size=None):
    """Produce ``output``; ``step(name, action)`` runs each part (load/infer/write) so a failure
    is reported as that part's. Returns the format written (``*_FORMAT``)."""
    loader_path = os.path.join(dataset_path, 'data_loader.py')
    test_data = os.path.join(dataset_path, 'test', 'test_data')
    loader = step('infer', lambda: _import(loader_path)) if os.path.isfile(loader_path) else None
    batch = _Batch(batch_size)
    if loader is not None and hasattr(loader, 'feed_infer'):
        _feed_infer(loader, output, step, batch)
        batch.warn_if_unused()
        return OWN_FORMAT
    if loader is not None and hasattr(loader, 'test_data_loader'):
        data = step('infer', lambda: loader.test_data_loader(dataset_path, **batch.kwargs(loader.test_data_loader)))
        result = step('infer', lambda: _checked(infer(data, **batch.kwargs(_bound_infer())), data))
        step('write', lambda: _write_plain(output, result))
        batch.warn_if_unused()
        return PLAIN_FORMAT
    result = step('infer', lambda: _checked(infer(test_data, **batch.kwargs(_bound_infer())), test_data))
    step('write', lambda: _write_builtin(output, result))
    batch.warn_if_unused()
    return BUILTIN_FORMAT


class _Batch:
    """``submit -b N``: ``batch_size=N`` for the functions that declare that parameter."""

    def __init__(self, size):
        self.size = size
        self.used = False

    def kwargs(self, fn):
        if not self.size or not _takes_batch_size(fn):
            return {}
        self.used = True
        return {'batch_size': self.size}

    def warn_if_unused(self):
        if self.size and not self.used:
            print(f'nsml: submit -b {self.size}: neither the data loader nor the bound infer has a '
                  'batch_size parameter, so the batch size was not passed on', file=sys.stderr, flush=True)


def _takes_batch_size(fn):
    import inspect

    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin or an odd callable: do not guess
        return False
    param = parameters.get('batch_size')
    return param is not None and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)


def _bound_infer():
    from nsml.client.checkpoints import bound_infer

    return bound_infer()


def _feed_infer(loader, output, step, batch):
    from nsml.client import protocol

    calls = []

    def infer_func(*args, **kwargs):
        # The loader alternates infer calls and writing: a failure is infer's if it happens
        # inside this call, write's otherwise (the stage is kept in memory: no file per call).
        protocol.set_stage('infer')
        calls.append(1)
        if 'batch_size' not in kwargs:
            kwargs.update(batch.kwargs(_bound_infer()))
        value = infer(*args, **kwargs)
        protocol.set_stage('write')
        return value

    step('infer', lambda: loader.feed_infer(output, infer_func, **batch.kwargs(loader.feed_infer)))
    if not calls:
        step('infer', _raise('data_loader.feed_infer never called the infer function it was given'))
    if not os.path.isfile(output) or os.path.getsize(output) == 0:
        step('write', _raise('output result of inference is nothing: data_loader.feed_infer wrote '
                             f'nothing to {os.path.basename(output)}'))


def _raise(message):
    def action():
        raise RuntimeError(message)
    return action


def _import(path):
    spec = importlib.util.spec_from_file_location('data_loader', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _checked(result, data):
    if result is None:
        raise ValueError('infer returned None; it must return one prediction per test row, '
                         'e.g. [(probability, label), ...]')
    try:
        rows = list(result)
    except TypeError:
        raise TypeError(f'infer returned a {type(result).__name__}; it must return a list with one '
                        'prediction per test row') from None
    if not rows:
        raise ValueError('infer returned an empty list; it must return one prediction per test row')
    expected = _row_count(data)
    if expected is not None and len(rows) != expected:
        raise ValueError(f'infer returned {len(rows)} predictions for {expected} test rows; it must '
                         'return exactly one per row')
    return rows


def _row_count(data):
    """Rows of the test data when it is a text file of lines or a list; else unknown."""
    if isinstance(data, (list, tuple)):
        return len(data)
    if isinstance(data, str) and os.path.isfile(data):
        try:
            with open(data, encoding='utf-8') as f:
                return sum(1 for line in f if line.strip())
        except (UnicodeDecodeError, OSError):
            return None
    return None


def format_row(row):
    """One line of the built-in format: a (probability, prediction) pair as a JSON array, a
    bare value as it is when it reads back as itself, anything else as JSON."""
    from nsml.client.serve import jsonable

    value = jsonable(row)
    if isinstance(row, (tuple, list)) and len(row) == 2:
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and '\n' not in value and not value.startswith('['):
        return value
    return json.dumps(value, ensure_ascii=False)


def plain_row(row):
    """One line of NSML's legacy format: the prediction of a (probability, prediction) pair, or
    the row itself, as ``str()`` makes it (what the dataset's evaluation.py parses)."""
    if not isinstance(row, (str, bytes, dict)) and hasattr(row, '__len__') and hasattr(row, '__getitem__'):
        try:
            if len(row) == 2:
                row = row[1]
        except TypeError:  # a 0-d array and the like: the row is the prediction
            pass
    return str(row).replace('\n', ' ')  # one row, one line


def _write_plain(output, rows):
    with open(output, 'w', encoding='utf-8') as f:
        for row in rows:
            f.write(plain_row(row) + '\n')


def _write_builtin(output, rows):
    with open(output, 'w', encoding='utf-8') as f:
        for row in rows:
            f.write(format_row(row) + '\n')
