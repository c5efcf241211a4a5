"""Each input that once gave a 500 (found by an attacker or by tests/api/test_fuzz.py), against a
real server: now a 4xx with a line a person can act on, and nothing stored."""

import io
import json
import tarfile

import httpx
import pytest

from nsml.server.bounds import MAX_JSON_BODY, MAX_MEMO
from tests.conftest import Cli, clean_env, push_dataset, serve_for_module, start_session, tar_of, write_project

SAVES_A_KOREAN_CHECKPOINT = '''\
import os
import nsml


def save(dir_path, **kwargs):
    with open(os.path.join(dir_path, "model.txt"), "w") as f:
        f.write("1")


nsml.bind(save=save, load=lambda dir_path, **kwargs: None, infer=lambda data, **kwargs: data)
nsml.save("모델 \\"1\\"")
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_for_module(tmp_path_factory, "bounds")


@pytest.fixture(scope="module")
def session(server, tmp_path_factory) -> str:
    """A finished session of dataset 'bounds' whose one checkpoint has a non-ASCII name."""
    work = tmp_path_factory.mktemp("bounds-work")
    cli = Cli(clean_env(server.home), write_project(work / "code", SAVES_A_KOREAN_CHECKPOINT))
    push_dataset(cli, "bounds")
    name = start_session(cli, "-d", "bounds", "-c", "1", "--memory", "1G")
    assert server.wait(name)["status"] == "exited", cli("logs", name).stdout
    return name


def refused(resp: httpx.Response, status: int | tuple = (400, 404, 413, 422)) -> str:
    statuses = (status,) if isinstance(status, int) else status
    assert resp.status_code in statuses, (resp.status_code, resp.text[:500])
    detail = resp.json()["detail"]
    return detail if isinstance(detail, str) else json.dumps(detail)


def non_utf8_tar(*good: str) -> bytes:
    """A tar with one file whose name is the bytes b'train/\\xff.txt' (Latin-1, not UTF-8)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tar:
        for name in (*good, "train/\xff.txt"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    return buf.getvalue()


def test_a_huge_memo_is_refused_and_listings_stay_small(server, session):
    api = server.api
    resp = api.patch(f"/api/sessions/{session}/memo", json={"memo": "m" * (MAX_MEMO + 1)})
    detail = refused(resp, 422)
    assert "memo" in detail and str(MAX_MEMO) in detail
    assert len(resp.content) < 1000  # the refusal echoes the start of the memo, not all of it
    huge = json.dumps({"memo": "m" * (MAX_JSON_BODY + 1)})  # the attacker's 50 MB: refused before it is parsed
    detail = refused(api.patch(f"/api/sessions/{session}/memo", content=huge, headers={"content-type": "application/json"}), 413)
    assert "MiB" in detail
    assert server.session(session)["memo"] == ""
    assert api.patch(f"/api/sessions/{session}/memo", json={"memo": "m" * MAX_MEMO}).status_code == 200  # the bound itself is fine


def test_a_file_name_that_is_not_utf8_is_refused_in_a_dataset_and_in_code(server, session):
    api = server.api
    detail = refused(api.post("/api/datasets/latin1", content=non_utf8_tar("train/ok.txt")), 400)
    assert "not UTF-8" in detail and "\\xff" in detail
    assert api.get("/api/datasets/latin1").status_code == 404  # nothing half registered
    detail = refused(api.post("/api/sessions", params={"dataset": "bounds"}, content=non_utf8_tar("main.py")), 400)
    assert "not UTF-8" in detail


def test_submit_interval_must_be_a_finite_number_of_seconds(server, session):
    api = server.api
    for body in ['{"submit_interval": NaN}', '{"submit_interval": Infinity}', '{"submit_interval": -1}', '{"submit_interval": 1e300}']:
        detail = refused(api.patch("/api/datasets/bounds", content=body, headers={"content-type": "application/json"}), 422)
        assert "submit_interval" in detail, body  # the echoed NaN is sent as "nan": JSON has no NaN
    refused(api.post("/api/datasets/nan", params={"leaderboard": True, "submit_interval": "nan"}, content=tar_of({"train/x": b"1"})), 422)
    assert api.get("/api/datasets/bounds").json()["submit_interval"] == 0
    assert api.patch("/api/datasets/bounds", json={"submit_interval": 30}).json()["submit_interval"] == 30


@pytest.mark.parametrize("path, params", [
    ("/api/sessions/{s}/logs", {"limit": 10**12}),
    ("/api/sessions/{s}/logs", {"tail": 10**12}),
    ("/api/sessions/{s}/logs", {"offset": 10**30}),
    ("/api/datasets/bounds/submissions", {"limit": 10**12}),
    ("/api/sessions", {"last": 10**30}),
    ("/api/web/sessions", {"offset": 2**63 + 1}),
    ("/api/web/graph", {"s": "{s}", "xmin": "nan"}),
    ("/api/web/graph", {"s": "{s}", "xmax": "inf"}),
])
def test_numbers_beyond_what_the_server_holds_are_422(server, session, path, params):
    params = {k: v.format(s=session) if isinstance(v, str) else v for k, v in params.items()}
    detail = refused(server.api.get(path.format(s=session), params=params), 422)
    assert next(iter(params.keys() - {"s"})) in detail


@pytest.mark.parametrize("method, path, params", [
    ("POST", "/api/sessions/{s}/submit", {"checkpoint": "x", "batch_size": 10**30}),
    ("POST", "/api/sessions/{s}/fork", {"cpus": "nan"}),
    ("POST", "/api/sessions", {"dataset": "bounds", "cpus": "inf"}),
])
def test_relaunch_and_run_refuse_unholdable_numbers(server, session, method, path, params):
    refused(server.api.request(method, path.format(s=session), params=params, content=tar_of({"main.py": b""})), 422)


@pytest.mark.parametrize("number", [str(2**31), str(10**30), "9" * 5000])
def test_a_session_number_the_database_cannot_hold_is_not_found(server, session, number):
    owner, dataset, _ = session.split("/")
    api = server.api
    for path in ["", "/logs", "/checkpoints", "/stop"]:
        method = "POST" if path == "/stop" else "GET"
        refused(api.request(method, f"/api/sessions/{owner}/{dataset}/{number}{path}"), (404, 422))
    # inside a name given as a string (the dashboard's diff and graph, rm)
    refused(api.get("/api/web/diff", params={"a": session, "b": f"{owner}/{dataset}/{number}"}), (404, 422))
    assert api.get("/api/web/graph", params={"s": f"{owner}/{dataset}/{number}"}).json()["missing"] == [f"{owner}/{dataset}/{number}"]
    refused(api.delete("/api/sessions", params={"pattern": f"{owner}/{dataset}/{number}"}), 404)
    refused(api.get(f"/api/submissions/{number}"), 422)


def test_a_checkpoint_with_a_non_ascii_name_downloads(server, session):
    api = server.api
    [ckpt] = [c["name"] for c in api.get(f"/api/sessions/{session}/checkpoints").json()]
    assert ckpt == '모델 "1"'
    resp = api.get(f"/api/sessions/{session}/checkpoints/{ckpt}/archive")
    assert resp.status_code == 200, resp.text
    disposition = resp.headers["content-disposition"]
    assert disposition.isascii() and "filename*=UTF-8''%EB%AA%A8%EB%8D%B8%20%221%22.tar" in disposition
    assert tarfile.open(fileobj=io.BytesIO(resp.content)).getnames() == ["model.txt"]
