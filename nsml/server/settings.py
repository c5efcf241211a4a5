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
    host: str = "127.0.0.1"
    port: int = 0
    token: str | None = None  # the local user's token; default: read/create home/token
    user: str | None = None  # the local user's name; default: the login name
    # Capacity of the local executor; None = what the machine has.
    cpus: float | None = None
    memory: int | None = None
    gpus: int | None = None
    scheduler_interval: float = 0.2
    # How long a relaunched script (submit, infer) may take to reach nsml.paused(), and how long
    # a dataset's evaluation.py may run. Environment overrides, for tests and slow models.
    paused_timeout: float = field(default_factory=lambda: float(os.environ.get("NSML_PAUSED_TIMEOUT", 300)))
    evaluation_timeout: float = field(default_factory=lambda: float(os.environ.get("NSML_EVALUATION_TIMEOUT", 600)))

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.home / 'nsml.db'}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
