"""A real PostgreSQL server for the tests, from Debian's `postgresql` package (installed by
.ci/run): a fresh cluster in a temporary folder, on a free loopback port, with password
(SCRAM) authentication for its one role. initdb refuses to run as root, so as root the cluster
belongs to the `postgres` OS user. Databases are made from a migrated template, so each test
gets an empty, migrated database in a few milliseconds.
"""

import glob
import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROLE = "nsml"


def bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: pg_config's answer, else Debian's versioned folder."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip()
        if out and (Path(out) / "initdb").exists():
            return Path(out)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Postgres:
    folder: Path
    port: int
    password: str
    bin: Path
    _made: int = 0

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{ROLE}:{self.password}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={ROLE} password={self.password} dbname={database}",
                             autocommit=True) as conn:
            conn.execute(statement)

    def new_database(self, template: str | None = None) -> str:
        """An empty database (a copy of `template` when given); returns its SQLAlchemy URL."""
        self._made += 1
        name = f"t{os.getpid()}_{self._made}"
        self.sql(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
        return self.url(name)

    def stop(self) -> None:
        _as_owner([str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop"],
                  check=False)


def _as_owner(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def start(folder: Path) -> Postgres:
    """initdb + pg_ctl start in `folder`; raises RuntimeError with the server's words on failure."""
    binaries = bin_dir()
    if binaries is None:
        raise FileNotFoundError("PostgreSQL is not installed (apt-get install postgresql)")
    folder.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(16)
    (folder / "pw").write_text(password)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        shutil.chown(folder / "pw", "postgres", "postgres")
    init = _as_owner([str(binaries / "initdb"), "-D", str(folder / "data"), "-U", ROLE, "--pwfile", str(folder / "pw"),
                      "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"], check=False)
    if init.returncode != 0:
        raise RuntimeError(f"initdb failed:\n{init.stdout}{init.stderr}")
    port = free_port()
    opts = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    run = _as_owner([str(binaries / "pg_ctl"), "-D", str(folder / "data"), "-o", opts, "-l", str(folder / "log"), "-w", "start"],
                    check=False)
    if run.returncode != 0:
        log = (folder / "log").read_text() if (folder / "log").exists() else ""
        raise RuntimeError(f"PostgreSQL did not start:\n{run.stdout}{run.stderr}{log}")
    pg = Postgres(folder, port, password, binaries)
    deadline = time.monotonic() + 30
    while True:
        try:
            pg.sql("SELECT 1")
            return pg
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
