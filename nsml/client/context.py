"""The session's context, read from the environment once at import.

The supervisor describes the session through ``NSML_*`` variables (docs/internals.md); a script
run with plain ``python`` has none of them, and then every field has its off-platform value.
Nothing here touches the file system, so importing it has no side effects.
"""

import os


def _flag(value):
    return value.strip().lower() in ('1', 'true', 'yes', 'on')


def _int(value, default=0):
    # A malformed number must not stop a training script from importing nsml.
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _list(value):
    return [item.strip() for item in value.split(',') if item.strip()]


class Context:
    """What the platform told this process about itself (plain attributes, read-only by habit)."""

    __slots__ = ('is_on_nsml', 'session_name', 'dataset_name', 'dataset_path', 'has_dataset',
                 'gpu_num', 'spool', 'server_url', 'token', 'nfs_output',
                 'parallel_world', 'parallel_ports', 'my_rank', 'relaunch', 'source_session',
                 'source_checkpoint', 'paused_timeout', 'submit_batch_size')

    def __init__(self, environ):
        get = environ.get
        self.is_on_nsml = _flag(get('NSML_IS_ON_NSML', ''))
        self.session_name = get('NSML_SESSION_NAME', '')
        self.dataset_name = get('NSML_DATASET_NAME', '')
        self.dataset_path = get('NSML_DATASET_PATH', '')
        has_dataset = get('NSML_HAS_DATASET')
        # Older launchers set only the path; a path means there is a dataset.
        self.has_dataset = _flag(has_dataset) if has_dataset is not None else bool(self.dataset_path)
        self.gpu_num = _int(get('NSML_GPU_NUM'))
        # The spool is where report()/save() write; without one they work locally instead.
        self.spool = get('NSML_SPOOL', '')
        self.server_url = get('NSML_SERVER_URL', '').rstrip('/')
        self.token = get('NSML_TOKEN', '')
        self.nfs_output = get('NSML_NFS_OUTPUT', '')
        # Multi-node runs (experimental in NSML): hosts, their ports, and this node's index.
        self.parallel_world = _list(get('NSML_PARALLEL_WORLD', ''))
        self.parallel_ports = [_int(p) for p in _list(get('NSML_PARALLEL_PORTS', ''))]
        self.my_rank = _int(get('NSML_MY_RANK'))
        # Why the platform relaunched this script (fork, submit, submit_test, infer; '' for run),
        # and the session and checkpoint it relaunched; nsml.paused() acts on these.
        self.relaunch = get('NSML_RELAUNCH', '')
        self.source_session = get('NSML_SOURCE_SESSION', '')
        self.source_checkpoint = get('NSML_SOURCE_CHECKPOINT', '')
        self.paused_timeout = _int(get('NSML_PAUSED_TIMEOUT'), 0)
        # `nsml submit -b N`: passed as batch_size= where the loader or infer takes one; 0: not given.
        self.submit_batch_size = _int(get('NSML_SUBMIT_BATCH_SIZE'), 0)

    @property
    def writes_spool(self):
        """True when report/save go to the spool for the supervisor rather than to ./ and stdout."""
        return bool(self.spool)


CONTEXT = Context(os.environ)
