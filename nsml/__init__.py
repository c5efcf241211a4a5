"""NSML's user library: ``import nsml`` in a training script.

    nsml.bind(save=save, load=load, infer=infer)
    if config.pause:
        nsml.paused(scope=locals())
    for epoch in range(epochs):
        nsml.report(step=epoch, train__loss=loss, summary=True)
        nsml.save(epoch)

On NSML, metrics and checkpoints go to the session (see docs/internals.md); run with plain
``python`` they are printed and saved under ./nsml_checkpoints, so the same file works anywhere.
This module only re-exports: the code is in nsml.client, and nothing heavy is imported here.
"""

from nsml.client.checkpoints import bind, infer, load, save
from nsml.client.context import CONTEXT as _CONTEXT
from nsml.client.config import config
from nsml.client.helpers import cache, copy
from nsml.client.metrics import public_report as report
from nsml.client.protocol import paused
from nsml.constants import (DATASET_NAME, DATASET_PATH, GPU_NUM, HAS_DATASET, IS_DATASET,
                            IS_ON_NSML, MY_RANK, NSML_NFS_OUTPUT, PARALLEL_PORTS, PARALLEL_WORLD,
                            SESSION_ID, SESSION_NAME)

__all__ = [
    'report', 'bind', 'save', 'load', 'paused', 'infer', 'copy', 'cache', 'config',
    'IS_ON_NSML', 'HAS_DATASET', 'DATASET_PATH', 'DATASET_NAME', 'GPU_NUM', 'SESSION_NAME',
    'NSML_NFS_OUTPUT', 'PARALLEL_WORLD', 'PARALLEL_PORTS', 'MY_RANK', 'IS_DATASET', 'SESSION_ID',
]

__version__ = "0.1.0"

if _CONTEXT.spool:  # on the platform: record the script's argparse namespace (nsml/client/config.py)
    from nsml.client.config import capture_argparse as _capture

    _capture()
    del _capture
