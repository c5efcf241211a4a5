"""NSML's constants, as scripts import them (``from nsml.constants import DATASET_PATH``).

Read once from the environment the platform sets (docs/internals.md); outside NSML they take
the falsy values the nsml-local stub used, so the same script runs on a laptop.
"""

from nsml.client.context import CONTEXT as _context

IS_ON_NSML = _context.is_on_nsml
SESSION_NAME = _context.session_name
HAS_DATASET = _context.has_dataset
DATASET_PATH = _context.dataset_path  # '' locally
DATASET_NAME = _context.dataset_name
GPU_NUM = _context.gpu_num  # an int: 0 locally and with -g 0
NSML_NFS_OUTPUT = _context.nfs_output  # '' unless the session was started with --nfs-output

# Multi-node sessions (experimental in NSML): every node's host, their ports, and this rank.
PARALLEL_WORLD = _context.parallel_world  # [] on a single node
PARALLEL_PORTS = _context.parallel_ports  # []
MY_RANK = _context.my_rank  # 0

# Names used by the 2018 library and the old stub.
IS_DATASET = HAS_DATASET
SESSION_ID = SESSION_NAME
