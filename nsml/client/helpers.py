"""nsml.copy and nsml.cache: two small helpers from the 2018 NSML library."""

import os


def copy(source, target):
    """Copy what an unpickled ``source`` holds into the existing ``target``, in place.

    For restoring inside a load function when other code keeps references to ``target``:
    a dict is updated with the source's items, any other object gets the source's attributes
    (``__dict__``). Both must be of the same type. Returns ``target``.
    """
    if type(source) is not type(target):
        raise TypeError(f'nsml.copy: source is a {type(source).__name__} but target is a '
                        f'{type(target).__name__}; they must be the same type')
    if isinstance(target, dict):
        target.update(source)
    elif hasattr(target, '__dict__') and not isinstance(target, type):
        target.__dict__.update(source.__dict__)
    else:
        raise TypeError(f'nsml.copy: a {type(target).__name__} has no attributes to copy into; '
                        'assign the loaded value instead')
    return target


def cache(preprocess_fn=None, **kwargs):
    """Run ``preprocess_fn(output_path=..., **kwargs)`` unless its outputs already exist.

    ``output_path`` defaults to ``['./processed']`` (a single path may be given as a string and
    is passed on as given). When every output path exists the function is not called again;
    otherwise it is called to (re)create them. If it raises, the outputs it had just created are
    removed, so a half-finished cache is never taken for a finished one. Returns ``output_path``.
    """
    output_path = kwargs.pop('output_path', ['./processed'])
    paths = [output_path] if isinstance(output_path, (str, os.PathLike)) else list(output_path)
    missing = [p for p in paths if not os.path.exists(p)]
    if not missing:
        return output_path
    if preprocess_fn is None:
        raise ValueError(f'nsml.cache: {os.fspath(missing[0])} does not exist and no '
                         'preprocess_fn was given to create it')
    try:
        preprocess_fn(output_path=output_path, **kwargs)
    except BaseException:
        import shutil

        for path in missing:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.lexists(path):
                os.remove(path)
        raise
    return output_path
