"""A team server's own services out of a session's reach: with the metadata in PostgreSQL and
the bytes in a bucket, a hostile session (a real one, in the real sandbox) tries the database
port and the bucket's endpoint on every address of the host, looks for their credentials in its
environment and in every process it can see, and must find and reach nothing."""

import json
from urllib.parse import urlparse

from tests.conftest import wait_for, write_project
from tests.security.conftest import cli_for, host_addresses, needs_sandbox, start_server, started, stop_server

pytestmark = needs_sandbox

PROBE = """\
import json, os, socket
targets = json.load(open("targets.json"))
secrets = targets.pop("secrets")
found = []
for host in targets["hosts"]:
    for what, port in targets["ports"].items():
        try:
            socket.create_connection((host, port), timeout=2).close()
            found.append(f"REACHED {what} at {host}:{port}")
        except OSError:
            pass
for key, value in os.environ.items():
    if any(s in value for s in secrets) or key.startswith(("AWS_", "PG")) or key == "NSML_DB_URL":
        found.append(f"FOUND in the environment: {key}")
for pid in os.listdir("/proc"):
    if pid.isdigit():
        for part in ("cmdline", "environ"):
            try:
                data = open(f"/proc/{pid}/{part}", "rb").read().decode(errors="replace")
            except OSError:
                continue
            if any(s in data for s in secrets):
                found.append(f"FOUND a credential in /proc/{pid}/{part}")
print(json.dumps(found), flush=True)
"""


def test_a_session_reaches_neither_the_database_nor_the_bucket(postgres, s3_server, tmp_path):
    db = postgres.new_database()
    endpoint = urlparse(s3_server.endpoint)
    srv = start_server(tmp_path, "--db", db, "--blobs", s3_server.url(), env=s3_server.env())
    try:
        cli = cli_for(srv, tmp_path / "work")
        targets = {"hosts": host_addresses(), "ports": {"PostgreSQL": postgres.port, "the bucket": endpoint.port},
                   "secrets": [postgres.password, s3_server.secret_key]}
        code = write_project(tmp_path / "code", PROBE, **{"targets.json": json.dumps(targets)})
        name = started(cli, code, "-g", "0")
        assert srv.wait(name)["status"] == "exited", srv.session(name)
        log = wait_for(lambda: (t := srv.api.get(f"/api/sessions/{name}/logs").json().get("text", "")).strip() and t,
                       "the probe's report")
        assert json.loads(log.strip().splitlines()[-1]) == [], log
        # and the platform itself still reaches both
        assert srv.api.get(f"/api/sessions/{name}/code").status_code == 200
    finally:
        stop_server(srv)
