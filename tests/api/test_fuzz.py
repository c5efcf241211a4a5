"""Schemathesis against a real server holding real resources: no input answers a 5xx.

The server is seeded with what the operations act on (datasets, one with a leaderboard; a
trained session with checkpoints and a submission; a running session; an infer session; a
stopped and a queued session; a second user with a private dataset). Each operation is then
called with three kinds of case, Hypothesis choosing among them:

- raw: everything generated from the OpenAPI document (positive and negative modes);
- seeded: the path names a seeded resource, the rest is generated;
- pinned: one known-good request per operation (its first case), so each answers a 2xx once.

The machine's capacity is kept full by the seeded sessions, so a session a case starts (run,
fork, resume, submit, infer-session) only queues: the fuzz never trains dozens of models. The
operations run in an order where destructive ones (stop, removals) come last.

Figures per operation (cases, 2xx, 4xx, 5xx) are printed (pytest -s) and written as JSON to
the test's tmp dir. NSML_FUZZ_EXAMPLES sets the generated cases per operation (default 100; a third of
that for supervisor-only routes and those that hash a password),
NSML_FUZZ_SEED the Hypothesis seed (default fixed, so a run can be repeated).
"""

import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.cli.test_datasets import add_user
from tests.cli.test_relaunch import PROJECT, write_board_dataset
from tests.conftest import Cli, Server, clean_env, kill_leftover_supervisors, start_session, tar_of, write_project

schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis (the test extra)")
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

EXAMPLES = int(os.environ.get("NSML_FUZZ_EXAMPLES", "100"))
SEED = int(os.environ.get("NSML_FUZZ_SEED", "20240610"))
BOB = "bobs-fuzz-token"
PASSWORD = "correct horse battery staple"
# Routes only a session's supervisor may call: users get 401/403 (never a 2xx), never a 5xx.
SUPERVISOR = {"/heartbeat", "/files/{sha}", "/journal", "/logs", "/checkpoints/{name}", "/outputs", "/prediction", "/exit", "/channel/next",
              "/channel/{request_id}/result"}

KEEP = '''\
import os, time
import nsml


def save(dir_path, **kwargs):
    with open(os.path.join(dir_path, "model.txt"), "w") as f:
        f.write("1")


def load(dir_path, **kwargs):
    pass


def infer(data, **kwargs):
    return data


nsml.bind(save=save, load=load, infer=infer)
nsml.paused(scope=locals())
nsml.report(step=1, scope=locals(), loss=0.5)
nsml.save(1)
print("saved", flush=True)
while True:
    time.sleep(1)
'''


@schemathesis.serializer("application/x-tar")
def _tar(_ctx, value) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


@dataclass
class Seed:
    token: str
    trained: str  # exited, checkpoints 1..3, one scored submission
    spare: str  # exited, checkpoints: removed by the fuzz
    running: str  # answers exec and sh
    infer: str  # an infer session of `trained`
    stopped: str  # stopped with a checkpoint: resumable
    queued: str  # waits for capacity: stopped by the fuzz
    submission: int
    token_id: int  # a spare token of alice's: revoked by the fuzz
    study: str  # an AutoML study whose one trial queues: stopped, then removed by the fuzz


def path_of(name: str) -> dict[str, Any]:
    owner, dataset, number = name.split("/")
    return {"owner": owner, "dataset": dataset, "number": int(number)}


def wait_for(check, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # Three CPUs: the seeded sessions fill them, so whatever the fuzz starts only queues.
    srv = Server(tmp_path_factory.mktemp("fuzz") / "home", extra=["--cpus", "3", "--memory", "16G"],
                 env={"NSML_PAUSED_TIMEOUT": "60", "NSML_USAGE_ANALYTICS": "1"}).start()  # every route on
    yield srv
    srv.stop()
    kill_leftover_supervisors(srv.home)


@pytest.fixture(scope="module")
def seeded(server, tmp_path_factory) -> Seed:
    work = tmp_path_factory.mktemp("fuzz-work")
    shutil.copytree(PROJECT, work / "train", dirs_exist_ok=True)
    cli = Cli(clean_env(server.home), work / "train")
    data = write_board_dataset(work / "board-data")
    cli("dataset", "push", "fz-board", data, "--leaderboard")
    cli("dataset", "push", "fz-change", data, "--leaderboard")
    cli("dataset", "push", "fz-plain", data)
    cli("dataset", "push", "fz-drop", data)
    cli("dataset", "push", "fz-private", data, "--private")
    bob = add_user(server, "bob", BOB)
    assert bob.post("/api/datasets/bob-private", params={"private": True},
                    content=tar_of({"train/x": b"1\n"})).status_code == 201
    one = ("-c", "1", "--memory", "1G")
    trained = start_session(cli, "-d", "fz-board", *one)
    spare = start_session(cli, "-d", "fz-board", *one)
    assert server.wait(trained)["status"] == "exited" and server.wait(spare)["status"] == "exited"
    cli("submit", trained, "2", timeout=180)
    api = server.api
    submission = api.get("/api/datasets/fz-board/submissions").json()[0]["id"]
    infer = api.post(f"/api/sessions/{trained}/infer-session", params={"checkpoint": "2"}).json()["name"]
    server.wait(infer, ("running",))
    assert api.post(f"/api/sessions/{infer}/infer", json={"data": [1, 9]}, timeout=60).status_code == 200

    keep = Cli(clean_env(server.home), write_project(work / "keep", KEEP))
    stopped = start_session(keep, "-d", "fz-plain", *one)
    wait_for(lambda: api.get(f"/api/sessions/{stopped}/checkpoints").json(), f"a checkpoint of {stopped}")
    assert api.post(f"/api/sessions/{stopped}/stop").status_code == 200
    server.wait(stopped, ("stopped",))
    running = start_session(keep, "-d", "fz-plain", *one)
    server.wait(running, ("running",))
    wait_for(lambda: "saved" in api.get(f"/api/sessions/{running}/logs").json()["text"], f"{running} to be ready")
    for _ in range(4):  # fillers, until the machine is full and a session has to queue
        queued = start_session(keep, "-d", "fz-plain", *one)
        if server.session(queued)["status"] == "queued":
            break
    assert server.session(queued)["status"] == "queued", api.get("/api/resources").json()

    assert api.put("/api/users/alice/password", json={"password": PASSWORD}).status_code == 200
    assert api.post("/api/users", json={"name": "carol"}).status_code == 201
    assert api.post("/api/teams", json={"name": "fz-crew"}).status_code == 201
    token_id = api.post("/api/tokens", json={"label": "spare"}).json()["id"]
    study = api.post("/api/automl", content=study_tar(), headers={"Content-Type": "application/x-tar"}).json()["name"]
    return Seed(server.token, trained, spare, running, infer, stopped, queued, submission, token_id, study)


def study_tar() -> bytes:
    config = {"h_params": {"lr": {"parameters": [0.001, 0.1], "distribution": "log_uniform", "type": "float"}},
              "measure": "loss", "order": "ascending", "resources": {"cpus": 1, "memory": "1G", "gpus": 0},
              "termination": {"max_session_number": 1}}
    return tar_of({"main.py": b"print('hi')\n", ".nsml-automl.json": json.dumps(config).encode()})


@dataclass
class Plan:
    path: dict | None = None  # the seeded resource's path parameters
    query: dict = field(default_factory=dict)  # the pinned case's query
    body: Any = None  # the pinned case's body (bytes: a tar)
    stage: int = 0  # 0 reads, 1 changes, 2 destructive, 3 mass removal, 4 users, 5 tokens (alice's own)
    supervisor: bool = False
    slow: bool = False  # hashes a password (argon2): fewer cases


def plans(s: Seed) -> dict[str, Plan]:
    board, trained, spare = {"name": "fz-board"}, path_of(s.trained), path_of(s.spare)
    dataset_tar = tar_of({"train/train_data": b"1\n2\n", "test/test_data": b"3\n", "test/test_label": b"1\n"})
    code_tar = tar_of({"main.py": b"print('hi')\n"})
    ses = "/api/sessions/{owner}/{dataset}/{number}"
    p = {
        "GET /api/health": Plan(), "GET /api/whoami": Plan(), "GET /api/resources": Plan(), "GET /api/credit": Plan(),
        "GET /api/usage": Plan(None, {"days": 7, "all": True}),
        "POST /api/datasets/{name}": Plan({"name": "fz-new"}, {"force": True, "leaderboard": True}, dataset_tar, 1),
        "GET /api/datasets/{name}": Plan(board), "GET /api/datasets": Plan(),
        "PATCH /api/datasets/{name}": Plan({"name": "fz-change"}, body={"description": "changed", "submit_interval": 5}, stage=1),
        "DELETE /api/datasets/{name}": Plan({"name": "fz-drop"}, stage=2),
        "GET /api/datasets/{name}/files": Plan(board), "GET /api/datasets/{name}/archive": Plan(board),
        "GET /api/datasets/{name}/board": Plan(board), "GET /api/datasets/{name}/submissions": Plan(board),
        "POST /api/sessions": Plan(None, {"dataset": "fz-plain", "cpus": 1, "memory": "1G"}, code_tar, 1),
        "GET /api/sessions": Plan(),
        "GET /api/runs": Plan(None, {"param": ["lr"], "metric": ["loss:min"], "sort": "metric:loss:min",
                                     "q": "lr > 0 or tag:x"}),
        "GET /api/runs/keys": Plan(None, {"q": "lr > 0", "limit": 10}),
        "DELETE /api/sessions": Plan(None, {"pattern": [s.spare], "force": True}, stage=3),
        f"GET {ses}": Plan(trained),
        f"POST {ses}/stop": Plan(path_of(s.queued), stage=2),
        # Its script binds a save: the pinned case pauses it (after exec and sh have used it running).
        f"POST {ses}/pause": Plan(path_of(s.running), stage=3),
        f"PATCH {ses}/memo": Plan(trained, body={"memo": "fuzzed"}, stage=1),
        f"POST {ses}/tags": Plan(trained, body={"add": ["fuzzed"], "remove": ["old"]}, stage=1),
        f"GET {ses}/tags": Plan(trained),
        f"PUT {ses}/note": Plan(trained, body={"note": "# fuzzed"}, stage=1),
        f"GET {ses}/note": Plan(trained),
        f"GET {ses}/logs": Plan(trained), f"GET {ses}/code": Plan(trained), f"GET {ses}/outputs": Plan(trained),
        f"GET {ses}/checkpoints": Plan(trained),
        f"DELETE {ses}/checkpoints": Plan(spare, {"pattern": "*"}, stage=2),
        f"GET {ses}/checkpoints/{{name}}/archive": Plan({**trained, "name": "1"}),
        f"GET {ses}/metrics": Plan(trained), f"GET {ses}/metrics/{{key}}": Plan({**trained, "key": "loss"}),
        f"POST {ses}/fork": Plan(trained, {"checkpoint": "1"}, stage=1),
        f"POST {ses}/resume": Plan(path_of(s.stopped), stage=1),
        f"POST {ses}/submit": Plan(trained, {"checkpoint": "2"}, stage=1),
        "GET /api/submissions/{submission_id}": Plan({"submission_id": s.submission}),
        f"POST {ses}/infer-session": Plan(trained, {"checkpoint": "2"}, stage=1),
        f"POST {ses}/infer": Plan(path_of(s.infer), body={"data": [1, 9]}),
        f"POST {ses}/exec": Plan(path_of(s.running), body={"code": "loss", "timeout": 10}),
        f"POST {ses}/sh": Plan(path_of(s.running), body={"command": "echo hi", "timeout": 10}),
        "GET /api/web/sessions": Plan(), "GET /api/web/graph": Plan(None, {"s": [s.trained]}),
        "GET /api/web/sessions/{owner}/{dataset}/{number}/info": Plan(trained),
        "GET /api/web/diff": Plan(None, {"a": s.trained, "b": s.spare}),
        "POST /api/login": Plan(body={"username": "alice", "password": PASSWORD}, stage=1, slow=True),
        "GET /api/users": Plan(), "GET /api/users/me": Plan(),
        "POST /api/users": Plan(body={"name": "fz-user"}, stage=1, slow=True),
        "DELETE /api/users/{name}": Plan({"name": "carol"}, stage=4),
        "PUT /api/users/{name}/password": Plan({"name": "carol"}, body={"password": PASSWORD}, stage=2, slow=True),
        "GET /api/tokens": Plan(), "POST /api/tokens": Plan(body={"label": "fz", "days": 1}, stage=1),
        "DELETE /api/tokens/{token_id}": Plan({"token_id": s.token_id}, stage=5),
        "GET /api/teams": Plan(), "POST /api/teams": Plan(body={"name": "fz-team"}, stage=1),
        "POST /api/teams/{team}/members": Plan({"team": "fz-crew"}, body={"user": "bob"}, stage=1),
        "POST /api/datasets/{name}/grants": Plan({"name": "fz-private"}, body={"user": "bob"}, stage=1),
        "GET /api/audit": Plan(),
        "POST /api/web/events": Plan(body={"events": [{"page": "home", "action": "view"}]}, stage=1),
        "GET /api/web/usability": Plan(None, {"days": 7}),
        "POST /api/automl": Plan(None, {"memo": "fz", "seed": 1}, study_tar(), 1),
        "GET /api/automl": Plan(None, {"all": True}),
        "GET /api/automl/{owner}/{dataset}/{number}": Plan(path_of(s.study)),
        "GET /api/automl/{owner}/{dataset}/{number}/rank": Plan(path_of(s.study), {"count": 3}),
        "POST /api/automl/{owner}/{dataset}/{number}/stop": Plan(path_of(s.study), {"force": True}, stage=2),
        "DELETE /api/automl/{owner}/{dataset}/{number}": Plan(path_of(s.study), stage=3),
        "GET /api/web/automl/{owner}/{dataset}/{number}": Plan(path_of(s.study)),
        "GET /api/web/automl/{owner}/{dataset}/{number}/importance": Plan(path_of(s.study), {"method": "ped_anova"}),
        "GET /api/web/automl/{owner}/{dataset}/{number}/contour": Plan(path_of(s.study)),
        "POST /api/web/automl/{owner}/{dataset}/{number}/rerun/config": Plan(path_of(s.study), body={"ranges": {"lr": [0.002, 0.05]}}),
        "POST /api/web/automl/{owner}/{dataset}/{number}/rerun": Plan(path_of(s.study), body={"ranges": {"lr": [0.002, 0.05]}}, stage=1),
        "GET /api/web/automl/compare": Plan(None, {"s": [s.study]}),
        "GET /api/web/automl/compare/importance": Plan(None, {"s": [s.study]}),
    }
    for suffix in SUPERVISOR:
        for method in ("GET", "POST"):
            p.setdefault(f"{method} {ses}{suffix}", Plan(path_of(s.running), supervisor=True))
    return p


@dataclass
class Tally:
    cases: int = 0
    statuses: Counter = field(default_factory=Counter)
    errors: list = field(default_factory=list)  # 5xx answers and transport failures, for the report

    def row(self) -> dict:
        by_class = Counter(f"{code // 100}xx" for code in self.statuses.elements())
        return {"cases": self.cases, "2xx": by_class["2xx"], "4xx": by_class["4xx"], "5xx": by_class["5xx"],
                "statuses": dict(sorted(self.statuses.items())), "errors": self.errors[:5]}


def call(case, base_url: str, tally: Tally, pinned: bool = False) -> None:
    tally.cases += 1
    try:
        resp = case.call(base_url=base_url, timeout=90)
    except Exception as exc:  # noqa: BLE001 - the client refused to send it, or the server hung up
        tally.errors.append(f"{type(exc).__name__}: {str(exc)[:300]}")
        return
    tally.statuses[resp.status_code] += 1
    if resp.status_code >= 500:
        tally.errors.append(f"{resp.status_code} {case.method} {case.formatted_path} query={case.query!r} "
                            f"body={str(case.body)[:200]!r}: {resp.text[:300]}")
    elif pinned and resp.status_code >= 300:  # says why an operation never answered a 2xx
        tally.errors.append(f"pinned case answered {resp.status_code}: {resp.text[:300]}")


def fuzz_operation(op, plan: Plan, s: Seed, base_url: str) -> Tally:
    tally = Tally()
    alice = {"Authorization": f"Bearer {s.token}"}
    tar = plan.body if isinstance(plan.body, bytes) else None
    media = "application/x-tar" if tar is not None else None

    # The pinned case: the request a client would make, so the operation answers a 2xx once.
    pinned = op.as_strategy(GenerationMode.POSITIVE, headers=alice, path_parameters=plan.path,
                            query=plan.query or None, **({"body": plan.body} if plan.body is not None else {}),
                            **({"media_type": media} if media else {}))
    strategies = [op.as_strategy(mode, headers=alice) for mode in GenerationMode]

    @settings(max_examples=1, phases=[Phase.generate], deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @seed(SEED)
    @given(case=pinned)
    def pin(case):
        if plan.body is not None:
            case.body = plan.body
        case.query = dict(plan.query)
        case.headers = dict(alice)
        call(case, base_url, tally, pinned=True)

    @settings(max_examples=max(1, EXAMPLES // (3 if plan.supervisor or plan.slow else 1)), phases=[Phase.explicit, Phase.generate],
              deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @seed(SEED)
    @given(data=st.data())
    def generated(data):
        case = data.draw(st.one_of(strategies), label="case")
        kind = data.draw(st.sampled_from(["raw", "seeded", "seeded"] if plan.path else ["raw"]), label="kind")
        if kind == "seeded":
            case.path_parameters = {**(case.path_parameters or {}), **plan.path}
        user = data.draw(st.sampled_from(["alice", "alice", "alice", "bob"]), label="user")
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {s.token if user == 'alice' else BOB}"}
        if isinstance(case.body, dict) and isinstance(case.body.get("timeout"), (int, float)):
            case.body["timeout"] = min(case.body["timeout"], 3)  # exec/sh: never wait long on a hung command
        call(case, base_url, tally)

    pin()
    generated()
    return tally


def test_no_input_gives_a_server_error(server, seeded, tmp_path):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    all_plans = plans(seeded)
    ops = [result.ok() for result in schema.get_all_operations()]
    unplanned = [op.label for op in ops if op.label not in all_plans]
    assert not unplanned, f"operations without a plan (add one to plans()): {unplanned}"
    ops.sort(key=lambda op: all_plans[op.label].stage)
    started = time.monotonic()
    report: dict[str, dict] = {}
    for op in ops:
        t0 = time.monotonic()
        report[op.label] = fuzz_operation(op, all_plans[op.label], seeded, server.url).row()
        report[op.label]["seconds"] = round(time.monotonic() - t0, 2)
    elapsed = time.monotonic() - started
    (tmp_path / "fuzz-report.json").write_text(json.dumps({"seconds": round(elapsed, 1), "examples": EXAMPLES,
                                                             "seed": SEED, "operations": report}, indent=2))
    width = max(map(len, report))
    print(f"\n{'operation':<{width}}  cases  2xx  4xx  5xx  seconds")
    for label, row in report.items():
        print(f"{label:<{width}}  {row['cases']:5}  {row['2xx']:3}  {row['4xx']:3}  {row['5xx']:3}  {row['seconds']:7}")
    total = sum(r["cases"] for r in report.values())
    print(f"{len(report)} operations, {total} cases, {elapsed:.0f} s; report: {tmp_path / 'fuzz-report.json'}")

    server_errors = {k: r["errors"] for k, r in report.items() if r["5xx"]}
    assert not server_errors, json.dumps(server_errors, indent=2)
    # A refusal answered before an upload was read may reset the connection (ChunkedEncodingError):
    # HTTP allows that. A timeout or a refused connection would mean a hung or dead server.
    down = ("ReadTimeout", "Connection refused", "NewConnectionError")
    hung = {k: r["errors"] for k, r in report.items() if any(w in e for e in r["errors"] for w in down)}
    assert not hung, json.dumps(hung, indent=2)
    assert httpx.get(f"{server.url}/api/health").status_code == 200
    never_ok = [k for k, r in report.items() if not r["2xx"] and not all_plans[k].supervisor]
    assert not never_ok, f"operations that never answered a 2xx: {never_ok}\n" + json.dumps({k: report[k] for k in never_ok}, indent=2)
