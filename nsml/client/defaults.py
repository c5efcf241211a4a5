"""The save/load used when a script binds objects instead of functions: ``nsml.bind(model=m)``.

One pickle file, ``model.pkl``, maps each keyword to what was saved. Objects that have
``state_dict()`` and ``load_state_dict()`` (torch modules and optimizers, among others) are saved
by their state and restored into the live object, so an optimizer keeps pointing at the model's
parameters; anything else is pickled whole and copied back into the bound object with
``nsml.copy`` when it can be. Duck typing keeps this free of framework imports.
"""

import os
import pickle

from nsml.client.helpers import copy

FILE = 'model.pkl'
_STATE, _OBJECT = 'state_dict', 'object'


def _has_state(obj):
    return callable(getattr(obj, 'state_dict', None)) and \
        callable(getattr(obj, 'load_state_dict', None))


def save(directory, objects):
    if not objects:
        raise RuntimeError('nsml.save: nothing to save; bind a save function that writes files '
                           'into the directory it is given (nsml.bind(save=..., load=...)), or '
                           'bind the objects to pickle (nsml.bind(model=model))')
    payload = {key: (_STATE, obj.state_dict()) if _has_state(obj) else (_OBJECT, obj)
               for key, obj in objects.items()}
    with open(os.path.join(directory, FILE), 'wb') as f:
        pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)


def load(directory, objects):
    """Restore into the bound objects; returns {keyword: restored object}."""
    path = os.path.join(directory, FILE)
    if not os.path.exists(path):
        raise RuntimeError(f'nsml.load: this checkpoint has no {FILE}, so it was not written by '
                           'the default save; bind the load function that matches its save '
                           '(nsml.bind(load=...))')
    with open(path, 'rb') as f:
        payload = pickle.load(f)
    restored = {}
    for key, (kind, value) in payload.items():
        target = objects.get(key)
        if kind == _STATE and target is not None and _has_state(target):
            target.load_state_dict(value)
            restored[key] = target
        elif target is not None and type(target) is type(value) and \
                (isinstance(target, dict) or hasattr(target, '__dict__')):
            restored[key] = copy(value, target)
        else:
            # Nothing to restore into (immutable value, or not bound now): hand back the value.
            objects[key] = restored[key] = value
    return restored
