"""Server settings: everything create_app needs, with defaults for the embedded server."""

import os
from dataclasses import dataclass, field
from pathlib import Path


def default_home() -> Path:
    return Path(os.environ.get("NSML_HOME") or Path.home() / ".nsml").expanduser()


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=default_home)
    db_url: str | None = None  # default: SQLite file under home
    blobs: str | None = None  # default: a folder under home; or s3://BUCKET[/PREFIX] (nsml.store.s3blobs)
    host: str = "127.0.0.1"
    port: int = 0
    token: str | None = None  # the local user's token; default: read/create home/token
    user: str | None = None  # the local user's name; default: the login name
    # Capacity of the local executor; None = what the machine has.
    cpus: float | None = None
    memory: int | None = None
    gpus: int | None = None
    # A declared inventory (nodes.yaml: nodes, their CPUs, memory and GPUs; nsml.scheduler.inventory)
    # instead of this machine's: how tests and benchmarks get many GPUs on a machine with none.
    inventory: Path | None = None
    # The scheduler's policy (policy.yaml: fair-share weights, GPU quotas, credits, reservations,
    # preemption; nsml.scheduler.policy_file). None: NSML_POLICY, else fair share with no limits.
    policy: Path | None = field(default_factory=lambda: Path(os.environ["NSML_POLICY"]) if os.environ.get("NSML_POLICY") else None)
    # A running session whose supervisor has not reported in this long is lost (its heartbeat
    # comes every few seconds; a server that was away itself waits this long again after start).
    heartbeat_timeout: float = field(default_factory=lambda: float(os.environ.get("NSML_HEARTBEAT_TIMEOUT", 30)))
    # A GPU held at 0 % utilisation this long flags its session as a zombie (ps, web).
    zombie_after: float = field(default_factory=lambda: float(os.environ.get("NSML_ZOMBIE_AFTER", 3600)))
    # ... and the session's log says so once, for its owner (NSML_ZOMBIE_NOTE=0 turns that off).
    zombie_note: bool = field(default_factory=lambda: os.environ.get("NSML_ZOMBIE_NOTE", "1") != "0")
    # Servers sharing one database: the scheduler's lease term (seconds; another server takes
    # over this long after the holder dies), and the address supervisors report to (a proxy in
    # front of all of them; default this server's own).
    lease_ttl: float = field(default_factory=lambda: float(os.environ.get("NSML_LEASE_TTL", 5)))
    public_url: str | None = None
    scheduler_interval: float = 0.2
    # How long a relaunched script (submit, infer) may take to reach nsml.paused(), and how long
    # a dataset's evaluation.py may run. Environment overrides, for tests and slow models.
    paused_timeout: float = field(default_factory=lambda: float(os.environ.get("NSML_PAUSED_TIMEOUT", 300)))
    # Stop-and-go (nsml pause, preemption): how long a session asked to pause may take to save
    # its checkpoint and end before it is stopped the normal way (nsml.server.pausing).
    pause_grace: float = field(default_factory=lambda: float(os.environ.get("NSML_PAUSE_GRACE", 60)))
    evaluation_timeout: float = field(default_factory=lambda: float(os.environ.get("NSML_EVALUATION_TIMEOUT", 600)))
    # The memory a sandboxed evaluation.py may use (MiB); it also gets at most EVALUATION_PIDS processes.
    evaluation_memory_mb: int = field(default_factory=lambda: int(os.environ.get("NSML_EVALUATION_MEMORY_MB", 4096)))
    # Test submits (submit -t) one user may make to one dataset per hour; 0 turns them off. They
    # never show the score, but whether the evaluator returned one is still a bit about the labels.
    test_submits_per_hour: int = field(default_factory=lambda: int(os.environ.get("NSML_TEST_SUBMITS_PER_HOUR", 10)))
    # The session sandbox (docs/security.md): "auto" (bubblewrap where it works), "bwrap" (refuse
    # to start without it) or "none". `isolation` is what was chosen (nsml.server.isolation).
    sandbox: str = "auto"
    isolation: object | None = None
    # Where sessions run: "local" (this machine), or a Ray cluster: "ray" (its head on this
    # machine), "ray://HOST:PORT" (Ray Client) or "HOST:PORT" (its GCS; docs/cluster.md).
    executor: str = field(default_factory=lambda: os.environ.get("NSML_EXECUTOR", "local"))
    session_network: bool = True  # training sessions reach the outside (never the host's loopback)
    # The dashboard records its own use (nsml.core.clicks), for the admins' Usability page: opt-in.
    usage_analytics: bool = field(default_factory=lambda: os.environ.get("NSML_USAGE_ANALYTICS", "") == "1")

    @property
    def database_url(self) -> str:
        """--db, else NSML_DB_URL (which keeps a password out of `ps`), else SQLite in the home."""
        return self.db_url or os.environ.get("NSML_DB_URL") or f"sqlite:///{self.home / 'nsml.db'}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
