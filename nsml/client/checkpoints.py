"""bind / save / load / infer: the callbacks a script registers and the checkpoints they make.

A checkpoint is a directory. ``save`` hands the bound save function a fresh empty directory to
fill; ``load`` hands the bound load function a directory holding those same files. Where the
directory lives is the only thing that differs between the platform and a laptop:

- on the platform, ``SPOOL/checkpoints/<id>/``, announced to the supervisor by a ``"c"`` journal
  line once save has returned (the supervisor uploads and deletes it); loading downloads the
  archive from the server into a temporary directory;
- locally, ``./nsml_checkpoints/<name>/``, read back in place.
"""

import os
import sys
import time

from nsml.client.context import CONTEXT
from nsml.client.errors import CheckpointNotFoundError

LOCAL_ROOT = 'nsml_checkpoints'
DEFAULT_FILE = 'model.pkl'  # what the default save writes
# nsml.load() of the current session's checkpoint soon after nsml.save(): the supervisor may
# still be uploading it, so a 404 is retried: for long if this process saved that name (a big
# checkpoint takes a while), briefly otherwise (another process of the session may have).
UPLOAD_WAIT_S = 60.0
OTHER_WAIT_S = 5.0

# What bind() registered. Each bind() call replaces the callbacks it names and adds its keyword
# arguments; what it leaves out keeps its earlier value, so bind(infer=f) after
# bind(save=s, load=l) keeps s and l.
_bound = {'save': None, 'load': None, 'infer': None}
_bound_kwargs = {}
_saved_to_spool = set()  # checkpoint names this process handed to the supervisor
_in_call = [0]  # depth of save()/load() calls in progress in the main thread (nsml.client.stopgo)


def bind(save=None, load=None, infer=None, **kwargs):
    """Register ``save(dir, **kwargs)``, ``load(dir, **kwargs)`` and ``infer(data, **kwargs)``.

    Extra keyword arguments are passed on to save and load (``bind(save=s, load=l, real=True)``
    makes ``s(dir, real=True)``). Without a save/load, the defaults pickle the keyword arguments
    (objects with ``state_dict()``/``load_state_dict()``, e.g. torch models and optimizers, by
    their state) into ``model.pkl`` and restore them in place. May be called again.
    """
    for role, fn in (('save', save), ('load', load), ('infer', infer)):
        if fn is not None:
            if not callable(fn):
                raise TypeError(f'nsml.bind: {role} must be a function, not {type(fn).__name__}')
            _bound[role] = fn
    _bound_kwargs.update(kwargs)
    if _bound['save'] is not None or _bound_kwargs:  # something to save: `nsml pause` may ask for it
        from nsml.client import stopgo

        stopgo.arm()


def save(checkpoint=None, save_fn=None, **legacy):
    """Save checkpoint ``checkpoint`` (str or int; default: the current time); same name overwrites.

    The save function (``save_fn``, else the bound save, else the default) gets one argument, an
    existing empty directory, and writes the checkpoint's files into it.
    """
    name = checkpoint_name(checkpoint, legacy, 'save', default_now=True)
    fn, kwargs = _pick('save', save_fn)
    with _library_call():
        if CONTEXT.spool:
            _save_to_spool(name, fn, kwargs)
        else:
            _save_locally(name, fn, kwargs)


def load(checkpoint=None, load_fn=None, session=None, **legacy):
    """Load checkpoint ``checkpoint`` of ``session`` (default: this session) with the load function.

    The load function (``load_fn``, else the bound load, else the default) gets the directory
    the checkpoint's files were saved into; its return value is returned.
    """
    name = checkpoint_name(checkpoint, legacy, 'load', default_now=False)
    fn, kwargs = _pick('load', load_fn)
    with _library_call():
        if session is None and not CONTEXT.spool:
            return fn(_local_dir(name), **kwargs)
        return _load_remote(name, session, fn, kwargs)


class _library_call:
    """A save or load in progress in the main thread: a pause asked for meanwhile (SIGUSR1,
    nsml.client.stopgo) waits until it returns, rather than run the user's save inside it."""

    __slots__ = ('main',)

    def __enter__(self):
        import threading

        self.main = threading.current_thread() is threading.main_thread()
        if self.main:
            _in_call[0] += 1

    def __exit__(self, *exc):
        if self.main:
            _in_call[0] -= 1
            stopgo = sys.modules.get('nsml.client.stopgo')
            if stopgo is not None and not _in_call[0]:
                stopgo.run_deferred()
        return False


def infer(data, **kwargs):
    """Run the bound infer function, as the platform does for submit and infer sessions."""
    fn = _bound['infer']
    if fn is None:
        raise RuntimeError('nsml.infer: no infer function is bound; call '
                           'nsml.bind(infer=your_infer) first')
    return fn(data, **kwargs)


def bound_infer():
    """The bound infer function, or None (the submit protocol inspects its signature)."""
    return _bound['infer']


def checkpoint_name(checkpoint, legacy, caller, default_now):
    """The checkpoint's name as a string; also accepts the old keyword ``iteration=``."""
    if legacy:
        unknown = sorted(set(legacy) - {'iteration'})
        if unknown:
            raise TypeError(f"nsml.{caller}() got an unexpected keyword argument '{unknown[0]}'")
        if checkpoint is not None:
            raise TypeError(f'nsml.{caller}: give the checkpoint once, as checkpoint= or '
                            'iteration=, not both')
        checkpoint = legacy['iteration']
    if checkpoint is None:
        if default_now:
            return time.strftime('%Y-%m-%d_%H-%M-%S')
        raise TypeError(f"nsml.{caller}: which checkpoint? e.g. nsml.{caller}(checkpoint='4')")
    if isinstance(checkpoint, str):
        name = checkpoint
    elif hasattr(type(checkpoint), '__index__') and not isinstance(checkpoint, bool):
        name = str(int(checkpoint))  # ints, and int-likes such as numpy.int64
    else:  # a float epoch or True is more likely a slip than a name
        raise TypeError(f'nsml.{caller}: checkpoint must be a str or an int, not '
                        f'{type(checkpoint).__name__}')
    # The name becomes a directory name locally and a URL segment on the server, whose rule
    # (nsml.core.naming.check_checkpoint_name) this repeats so a bad name fails here, not later.
    # Control characters are refused too: the supervisor refuses them in the journal's record.
    if not name or name in ('.', '..') or any(c in name for c in '/\\\0') or len(name) > 200 \
            or not name.isprintable() and any(ord(c) < 32 for c in name):
        raise ValueError(f"nsml.{caller}: {name!r} is not a usable checkpoint name "
                         "(it must be 1 to 200 characters, with no '/', '\\' or control characters)")
    return name


def _pick(role, explicit):
    """The function to call and the keyword arguments it gets (bind's, for bound functions)."""
    if explicit is not None:
        return explicit, {}
    if _bound[role] is not None:
        return _bound[role], _bound_kwargs
    if not _bound_kwargs:
        # Nothing bound at all: NSML's tutorials call nsml.save(10) before (or without) bind.
        return (_save_nothing if role == 'save' else _load_nothing), {}
    from nsml.client import defaults

    return getattr(defaults, role), {'objects': _bound_kwargs}


_warned_nothing_bound = []  # once per process: a script saving every epoch gets one line


def _save_nothing(directory):
    """The save with nothing bound: the checkpoint is kept, empty, with one warning."""
    if not _warned_nothing_bound:
        _warned_nothing_bound.append(True)
        print('nsml.save: nothing is bound, so checkpoints are kept empty; to save the model, '
              'bind a save function (nsml.bind(save=..., load=...)) or the objects to pickle '
              '(nsml.bind(model=model)) before saving', file=sys.stderr, flush=True)


def _load_nothing(directory):
    """The load with nothing bound: an empty checkpoint loads as nothing; anything else needs
    the load function (or the objects) that match its save."""
    if os.listdir(directory):
        from nsml.client import defaults

        return defaults.load(directory, {})
    return {}


def _save_to_spool(name, fn, kwargs):
    from nsml.client import journal
    from nsml.core import spool

    journal.current()  # opened before the save function runs: installs the SIGTERM handler
    root = os.path.join(CONTEXT.spool, spool.CHECKPOINTS)
    os.makedirs(root, exist_ok=True)
    # Unique per save, even for repeated names: the supervisor may still be uploading the last one.
    ident = f'{time.time_ns()}-{os.getpid()}-{os.urandom(3).hex()}'
    directory = os.path.join(root, ident)
    os.mkdir(directory)
    _run_save(fn, directory, kwargs, name)
    line = spool.checkpoint_line(time.time(), name, ident)
    journal.current().write_line(line)  # after the pending metrics: they form its summary
    _saved_to_spool.add(name)


def _save_locally(name, fn, kwargs):
    import shutil

    final = os.path.join(LOCAL_ROOT, name)
    os.makedirs(LOCAL_ROOT, exist_ok=True)
    # Save beside the old checkpoint and swap at the end, so a save that fails halfway leaves
    # the previous checkpoint of that name intact.
    staging = os.path.join(LOCAL_ROOT, f'.{name}.saving-{os.getpid()}')
    shutil.rmtree(staging, ignore_errors=True)
    os.mkdir(staging)
    _run_save(fn, staging, kwargs, name)
    if os.path.lexists(final):
        old = os.path.join(LOCAL_ROOT, f'.{name}.old-{os.getpid()}')
        os.rename(final, old)
        os.rename(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, final)
    print(f'checkpoint {name} saved to ./{LOCAL_ROOT}/{name}')


def _run_save(fn, directory, kwargs, name):
    import shutil

    try:
        fn(directory, **kwargs)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)  # nothing half-written is left behind
        raise
    if not os.listdir(directory) and fn is not _save_nothing:  # that one warned already
        # Kept (a script may bind a do-nothing save on purpose) but worth a word.
        print(f'nsml.save: the save function wrote no files for checkpoint {name}',
              file=sys.stderr)


def _local_dir(name):
    directory = os.path.join(LOCAL_ROOT, name)
    if not os.path.isdir(directory):
        names = sorted(n for n in os.listdir(LOCAL_ROOT) if not n.startswith('.')) \
            if os.path.isdir(LOCAL_ROOT) else []
        have = ', '.join(names) if names else 'none'
        raise CheckpointNotFoundError(f'nsml.load: no checkpoint {name!r} in ./{LOCAL_ROOT} '
                                      f'(available: {have})')
    return directory


def _load_remote(name, session, fn, kwargs):
    import shutil
    import tempfile

    from nsml.client import journal, remote

    journal.flush()
    own = session is None or session == CONTEXT.session_name
    session = CONTEXT.session_name if session is None else session
    wait = 0 if not own else UPLOAD_WAIT_S if name in _saved_to_spool else OTHER_WAIT_S
    deadline = time.monotonic() + wait
    directory = tempfile.mkdtemp(prefix='nsml-load-')
    try:
        while True:
            try:
                remote.download_checkpoint(session, name, directory)
                break
            except CheckpointNotFoundError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)
                shutil.rmtree(directory)
                os.mkdir(directory)
        return fn(directory, **kwargs)
    finally:
        # Load functions read their files before returning (torch.load, pickle.load, ...).
        shutil.rmtree(directory, ignore_errors=True)
