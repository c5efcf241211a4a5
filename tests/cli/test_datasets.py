"""`nsml dataset push | ls | fs | pull | rm | search` against a real server, through the real CLI."""

import io
import json
import os
import subprocess
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import Cli, Server, clean_env, write_dataset, check_failed, tar_of, mount_tmpfs


# -- one server for the module, emptied after each test ----------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Overrides conftest's per-test server: starting one costs seconds on a busy machine."""
    srv = Server(tmp_path_factory.mktemp("datasets") / "home").start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _empty_after(request):
    yield
    if "server" in request.fixturenames:
        srv = request.getfixturevalue("server")
        for name in datasets(srv):
            srv.api.delete(f"/api/datasets/{name}").raise_for_status()
        assert blob_files(srv.home) == set() and temp_files(srv.home) == [], "blobs left behind"


# -- helpers ---------------------------------------------------------------------------------
def fail(cli: Cli, *args) -> str:
    """Run a command that must fail: exit code 1 and exactly one line on stderr, which is returned."""
    return check_failed(cli(*args, check=False))


def fail_all(cli: Cli, *commands: tuple) -> list[str]:
    """fail() for several commands at once, run side by side (each costs a Python start-up)."""
    with ThreadPoolExecutor(len(commands)) as pool:
        procs = list(pool.map(lambda args: cli(*args, check=False), commands))
    return [check_failed(p) for p in procs]




def blob_files(home: Path) -> set[str]:
    root = home / "blobs"
    return {p.parent.name + p.name for p in root.glob("??/*") if p.is_file()}


def temp_files(home: Path) -> list[Path]:
    return list((home / "blobs" / "tmp").iterdir())


def datasets(server: Server) -> dict[str, dict]:
    """What the server lists (checked over HTTP: a CLI call costs a Python start-up)."""
    resp = server.api.get("/api/datasets")
    resp.raise_for_status()
    return {d["name"]: d for d in resp.json()}


def assert_nothing_kept(server: Server) -> None:
    assert datasets(server) == {}
    assert blob_files(server.home) == set()
    assert temp_files(server.home) == []




def push_api(server: Server, name: str, files: dict[str, bytes] | None = None, **params) -> dict:
    """Set-up pushes straight to the API (the CLI's push has its own tests)."""
    resp = server.api.post(f"/api/datasets/{name}", params=params, content=tar_of(files or {"train/x": name.encode()}))
    assert resp.status_code == 201, resp.text
    return resp.json()


def random_tree(root: Path) -> dict[str, bytes]:
    files = {
        "train/train_data": os.urandom(300_000),
        "train/train_label": b"0\n1\n" * 100,
        "train/nested/deeper/part.bin": os.urandom(1234),
        "train/empty": b"",
        "train/이미지.bin": os.urandom(10),
        "test/test_data": os.urandom(5000),
        "test/test_label": b"1\n",
        "data_loader.py": b"def feed_infer(out, infer):\n    pass\n",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# -- the happy path --------------------------------------------------------------------------
def test_push_ls_fs_pull_round_trip(server, cli, tmp_path):
    files = random_tree(tmp_path / "digits")
    out = cli("dataset", "push", "digits", tmp_path / "digits", "--desc", "hand-written [digits] :)").stdout
    assert out.strip() == f"Dataset digits is pushed ({len(files)} files, {fmt(sum(map(len, files.values())))}, with a hidden test split)"

    ds = {d["name"]: d for d in json.loads(cli("dataset", "ls", "-j").stdout)}["digits"]
    assert (ds["owner"], ds["description"], ds["private"], ds["has_test"]) == ("alice", "hand-written [digits] :)", False, True)
    assert (ds["file_count"], ds["size"]) == (len(files), sum(map(len, files.values())))
    table = cli("dataset", "ls").stdout.splitlines()
    assert table[0].split() == ["Name", "Size", "Last", "Modified", "Author", "Description", "Tag"]
    row = next(r for r in table if r.startswith("digits"))
    assert "alice" in row and "hand-written [digits] :)" in row and "just now" in row

    fs = cli("dataset", "fs", "digits").stdout.splitlines()
    assert fs[0].split() == ["Path", "Size"]
    assert {line.split()[0] for line in fs[2:]} == set(files)
    assert ["train/train_data", "292.97", "KB"] in [line.split() for line in fs]

    out = cli("dataset", "pull", "digits", tmp_path / "copy").stdout
    assert f"Dataset digits pulled into {tmp_path / 'copy'} ({len(files)} files)" in out
    assert read_tree(tmp_path / "copy") == files  # byte-identical, nothing more, nothing less
    assert [p.name for p in tmp_path.iterdir() if "nsml-part" in p.name] == []


def fmt(n: int) -> str:
    from nsml.core.resources import format_size

    return format_size(n)


def test_pull_refuses_a_non_empty_folder_unless_forced(server, cli, tmp_path):
    push_api(server, "toy", read_tree(write_dataset(tmp_path / "ds")))
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep me")
    assert "already exists and is not empty" in fail(cli, "dataset", "pull", "toy", dest)
    assert (dest / "mine.txt").read_text() == "keep me"
    cli("dataset", "pull", "toy", dest, "-f")
    assert read_tree(dest) == read_tree(tmp_path / "ds")
    (tmp_path / "empty").mkdir()
    cli("dataset", "pull", "toy", tmp_path / "empty")  # an empty folder is fine
    assert read_tree(tmp_path / "empty") == read_tree(tmp_path / "ds")


def test_a_pull_cut_off_half_way_keeps_nothing(server, cli, tmp_path):
    """A blob lost behind the server's back: the archive breaks off in the middle of the pull."""
    files = {"train/a_first": os.urandom(200_000), "train/b_lost": os.urandom(200_000), "train/c_last": b"c"}
    push_api(server, "damaged", files)
    lost = next(f["sha256"] for f in server_files(server, "damaged") if f["path"] == "train/b_lost")
    (server.home / "blobs" / lost[:2] / lost[2:]).unlink()
    line = fail(cli, "dataset", "pull", "damaged", tmp_path / "out")
    assert line.startswith(f"nsml: The download of dataset damaged from {server.url} failed (")
    assert line.endswith("); nothing was kept."), line
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if "nsml-part" in p.name] == []


def server_files(server: Server, name: str) -> list[dict]:
    """Path and blob name of each file, from the server's own database."""
    from nsml.store.sql import open_store

    store = open_store(f"sqlite:///{server.home / 'nsml.db'}")
    try:
        return [{"path": f.path, "sha256": f.sha256} for f in store.files(store.get_dataset(name).fileset_id)]
    finally:
        store.close()


def test_push_without_train_test_layout_rules(server, cli, tmp_path):
    (tmp_path / "only_train" / "train").mkdir(parents=True)
    (tmp_path / "only_train" / "train" / "x").write_text("x")
    out = cli("dataset", "push", "plain", tmp_path / "only_train").stdout
    assert out.strip() == "Dataset plain is pushed (1 file, 1 B)"
    assert datasets(server)["plain"]["has_test"] is False


# -- replacing and removing ------------------------------------------------------------------
def test_push_over_an_existing_name_needs_force_and_replaces_atomically(server, cli, tmp_path):
    old = tmp_path / "old"
    write_dataset(old)
    (old / "train" / "only_old.bin").write_bytes(os.urandom(1000))
    cli("dataset", "push", "digits", old, "--desc", "v1")
    old_blobs = blob_files(server.home)
    assert len(old_blobs) == 5

    new = tmp_path / "new"
    write_dataset(new)  # shares four files with the old version
    (new / "train" / "big.bin").write_bytes(os.urandom(3_000_000))  # still streaming when refused
    line = fail(cli, "dataset", "push", "digits", new, "--desc", "v2")
    assert line == "nsml: Dataset 'digits' already exists; push with -f to replace it."
    assert datasets(server)["digits"]["description"] == "v1"
    assert blob_files(server.home) == old_blobs and temp_files(server.home) == []

    cli("dataset", "push", "digits", new, "--desc", "v2", "-f")
    ds = datasets(server)["digits"]
    assert (ds["description"], ds["file_count"]) == ("v2", 5)
    cli("dataset", "pull", "digits", tmp_path / "pulled")
    assert read_tree(tmp_path / "pulled") == read_tree(new)
    now = blob_files(server.home)
    gone = old_blobs - now
    assert len(gone) == 1 and len(now) == 5  # only the old-only file's blob was collected
    assert temp_files(server.home) == []


def test_rm_removes_the_dataset_and_collects_blobs_no_one_else_uses(server, cli, tmp_path):
    write_dataset(tmp_path / "a")
    write_dataset(tmp_path / "b")
    (tmp_path / "b" / "train" / "extra").write_bytes(b"only in b")
    push_api(server, "aaa", read_tree(tmp_path / "a"))
    push_api(server, "bbb", read_tree(tmp_path / "b"))
    assert len(blob_files(server.home)) == 5

    assert cli("dataset", "rm", "bbb").stdout.strip() == "Dataset bbb is removed"
    assert set(datasets(server)) == {"aaa"}
    assert len(blob_files(server.home)) == 4  # shared blobs stay for aaa
    cli("dataset", "pull", "aaa", tmp_path / "still")
    assert read_tree(tmp_path / "still") == read_tree(tmp_path / "a")

    cli("dataset", "rm", "aaa")
    assert datasets(server) == {}
    assert blob_files(server.home) == set()
    assert "Did you mean" not in fail(cli, "dataset", "rm", "aaa")


def test_search_by_word_and_glob(server, cli, tmp_path):
    for name in ["kin_phase1", "kin_phase2", "movie_phase1"]:
        push_api(server, name)

    def found(pattern):
        return [d["name"] for d in json.loads(cli("dataset", "search", pattern, "-j").stdout)]

    assert found("phase1") == ["kin_phase1", "movie_phase1"]  # a plain word matches anywhere
    assert found("kin_*") == ["kin_phase1", "kin_phase2"]
    table = cli("dataset", "search", "mov").stdout
    assert "movie_phase1" in table and "kin_phase1" not in table
    assert fail(cli, "dataset", "search", "nothing") == "nsml: No dataset matches '*nothing*'."


# -- private datasets ------------------------------------------------------------------------
def add_user(server: Server, name: str, token: str) -> httpx.Client:
    from nsml.store.sql import open_store

    store = open_store(f"sqlite:///{server.home / 'nsml.db'}")
    store.add_user(name, token)
    store.close()
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_private_datasets_are_hidden_from_others_and_only_owners_change_datasets(server, cli, tmp_path):
    write_dataset(tmp_path / "ds")
    cli("dataset", "push", "secret", tmp_path / "ds", "--private")
    push_api(server, "shared", read_tree(tmp_path / "ds"))
    row = next(r for r in cli("dataset", "ls").stdout.splitlines() if r.startswith("secret"))
    assert row.rstrip().endswith("private")
    assert datasets(server)["secret"]["private"] is True

    bob = add_user(server, "bob", "bobs-token")
    assert [d["name"] for d in bob.get("/api/datasets").json()] == ["shared"]
    for method, path in [("GET", "/api/datasets/secret"), ("GET", "/api/datasets/secret/files"),
                         ("GET", "/api/datasets/secret/archive"), ("DELETE", "/api/datasets/secret")]:
        resp = bob.request(method, path)
        assert resp.status_code == 404, (method, path, resp.text)
        assert resp.json()["detail"].startswith("Dataset 'secret' does not exist.")  # as if it did not
    body = tar_of({"train/x": b"bob's"})
    resp = bob.post("/api/datasets/secret", params={"force": True}, content=body)
    assert resp.status_code == 403 and "taken by another user" in resp.json()["detail"]

    resp = bob.delete("/api/datasets/shared")
    assert (resp.status_code, resp.json()["detail"]) == (403, "Dataset 'shared' belongs to alice; only they or an admin may do that.")
    resp = bob.post("/api/datasets/shared", params={"force": True}, content=body)
    assert resp.status_code == 403 and "belongs to alice" in resp.json()["detail"]
    assert bob.post("/api/datasets/bobs", content=body).status_code == 201
    assert datasets(server)["bobs"]["owner"] == "bob"
    assert set(datasets(server)) == {"secret", "shared", "bobs"}  # alice sees bob's public one
    assert read_tree_after_pull(cli, "shared", tmp_path / "p") == read_tree(tmp_path / "ds")
    assert bob.delete("/api/datasets/bobs").status_code == 200


def read_tree_after_pull(cli, name, dest):
    cli("dataset", "pull", name, dest)
    return read_tree(dest)


# -- bad input: one clear line, exit 1, nothing kept -------------------------------------------
def test_unknown_dataset_names_suggest_close_matches(server, cli, tmp_path):
    push_api(server, "digits")
    want = "nsml: Dataset 'digit' does not exist. Did you mean digits?"
    lines = fail_all(cli, ("dataset", "fs", "digit"), ("dataset", "rm", "digit"), ("dataset", "pull", "digit", tmp_path / "out" / "digits"))
    assert lines == [want] * 3
    assert not (tmp_path / "out").exists()  # not even the parent folder
    assert [p.name for p in tmp_path.iterdir() if "nsml-part" in p.name] == []
    assert set(datasets(server)) == {"digits"}


def test_bad_paths_and_names_are_refused_before_upload(server, cli, tmp_path):
    good = write_dataset(tmp_path / "good")
    (tmp_path / "no_train").mkdir()
    (tmp_path / "no_train" / "data.csv").write_text("1,2\n")
    (tmp_path / "a_file").write_text("x")
    cases = [
        (("ok", tmp_path / "missing"), f"nsml: '{tmp_path / 'missing'}' does not exist."),
        (("ok", tmp_path / "a_file"), f"nsml: '{tmp_path / 'a_file'}' is not a folder; a dataset is a folder with a train/ folder inside."),
        (("ok", tmp_path / "no_train"), f"nsml: '{tmp_path / 'no_train'}' has no train/ folder; put the training files under {tmp_path / 'no_train' / 'train'}."),
        (("a" * 21, good), f"nsml: Dataset name '{'a' * 21}' is 21 characters long; the limit is 20."),
        (("x[/b]y", good), "nsml: Dataset name 'x[/b]y' may contain only letters, digits, '_' and '-'."),  # no markup crash
    ]
    lines = fail_all(cli, *[("dataset", "push", *args) for args, _ in cases])
    assert lines == [want for _, want in cases]
    assert_nothing_kept(server)
    assert "a" * 20 in cli("dataset", "push", "a" * 20, good).stdout  # exactly at the limit is fine


def test_symlink_leaving_the_dataset_folder_is_refused_by_name(server, cli, tmp_path):
    ds = write_dataset(tmp_path / "ds")
    (tmp_path / "private_key").write_text("secret")
    os.symlink(tmp_path / "private_key", ds / "train" / "key")
    line = fail(cli, "dataset", "push", "leaky", ds)
    assert line == (
        f"nsml: 'train/key' is a symbolic link to {tmp_path / 'private_key'}, outside the folder being uploaded; "
        f"copy the file in, or remove it."
    )
    os.unlink(ds / "train" / "key")
    os.symlink("..", ds / "train" / "loop")
    assert "'train/loop' is a symbolic link to" in fail(cli, "dataset", "push", "leaky", ds)
    assert_nothing_kept(server)
    os.unlink(ds / "train" / "loop")
    os.symlink("train_data", ds / "train" / "alias")  # inside the folder: followed
    cli("dataset", "push", "fine", ds)
    files = {f["path"]: f["size"] for f in server.api.get("/api/datasets/fine/files").json()}
    assert files["train/alias"] == files["train/train_data"] == len((ds / "train" / "train_data").read_bytes())


def crafted_tar(kind: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name, data=b"payload", type_=tarfile.REGTYPE, linkname=""):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = type_, linkname
            if type_ == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)

        add("train/ok", os.urandom(2000))  # stored first, then taken back
        if kind == "dotdot":
            add("../evil")
        elif kind == "dotdot-deep":
            add("train/../../../evil")
        elif kind == "absolute":
            add("/tmp/evil")
        elif kind == "symlink":
            add("train/evil", type_=tarfile.SYMTYPE, linkname="/etc/passwd")
        elif kind == "hardlink":
            add("train/evil", type_=tarfile.LNKTYPE, linkname="/etc/passwd")
        elif kind == "fifo":
            add("train/evil", type_=tarfile.FIFOTYPE)
        elif kind == "clash":
            add("train/ok/evil")
        elif kind == "no-train":
            pass
    data = buf.getvalue()
    if kind == "no-train":
        return tar_of({"data/evil": b"x"})
    if kind == "truncated":
        return data[:1500]
    return data


@pytest.mark.parametrize("kind, detail", [
    ("dotdot", "'../evil' points outside its folder ('..' is not allowed)."),
    ("dotdot-deep", "'train/../../../evil' points outside its folder"),
    ("absolute", "'/tmp/evil' is an absolute path; archives may only hold relative paths."),
    ("symlink", "Archive entry 'train/evil' is a link to '/etc/passwd'; links are not accepted."),
    ("hardlink", "Archive entry 'train/evil' is a link to '/etc/passwd'; links are not accepted."),
    ("fifo", "Archive entry 'train/evil' is not a regular file."),
    ("clash", "Archive entry 'train/ok' is both a file and a folder."),
    ("truncated", "The upload is not a valid tar archive"),
    ("no-train", "Dataset 'crafted' has no train/ folder; put the training files under train/."),
])
def test_crafted_tars_sent_to_the_api_are_refused_and_nothing_is_kept(server, kind, detail):
    resp = server.api.post("/api/datasets/crafted", content=crafted_tar(kind), headers={"Content-Type": "application/x-tar"})
    assert resp.status_code == 400, resp.text
    assert detail in resp.json()["detail"]
    assert_nothing_kept(server)
    assert list(server.home.parent.rglob("evil")) == []
    assert not Path("/tmp/evil").exists()


@pytest.mark.parametrize("body", [b"", b"hello, this is not a tar" * 50, os.urandom(20_000)])
def test_a_body_that_is_not_a_tar_is_refused(server, body):
    resp = server.api.post("/api/datasets/crafted", content=body)
    assert resp.status_code == 400
    assert resp.json()["detail"].startswith("The upload is not a valid tar archive")
    assert_nothing_kept(server)


def test_the_api_refuses_uploads_without_a_valid_token(server):
    body = tar_of({"train/x": b"x"})
    for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}]:
        resp = httpx.post(server.url + "/api/datasets/sneaky", content=body, headers=headers)
        assert resp.status_code == 401, resp.text
    assert_nothing_kept(server)


# -- a disk that fills up during a push --------------------------------------------------------
@pytest.fixture
def small_disk_server(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    mount_tmpfs(home, "4m")
    srv = None
    try:
        srv = Server(home).start()
        yield srv
    finally:
        if srv:
            srv.stop()
        subprocess.run(["umount", "-l", str(home)], check=False)


def test_a_disk_that_fills_up_during_push_keeps_nothing(small_disk_server, tmp_path):
    """NSML_HOME (database, temporary upload, blobs) on a 4 MB disk."""
    server = small_disk_server
    cli = Cli(clean_env(server.home), tmp_path)
    big = tmp_path / "big"
    (big / "train").mkdir(parents=True)
    (big / "train" / "random.bin").write_bytes(os.urandom(10_000_000))  # fills the disk while uploading
    medium = tmp_path / "medium"
    (medium / "train").mkdir(parents=True)
    (medium / "train" / "random.bin").write_bytes(os.urandom(2_800_000))  # upload fits; its blob does not
    want = "nsml: The server's disk filled up while storing dataset '{}'; nothing was kept. Free some space and try again."
    for name, folder in [("big", big), ("medium", medium)]:
        assert fail(cli, "dataset", "push", name, folder) == want.format(name)
        assert datasets(server) == {}
        assert blob_files(server.home) == set() and temp_files(server.home) == []

    small = write_dataset(tmp_path / "small")
    (small / "train" / "random.bin").write_bytes(os.urandom(1_000_000))
    cli("dataset", "push", "small", small)
    assert set(datasets(server)) == {"small"}
    cli("dataset", "pull", "small", tmp_path / "back")
    assert read_tree(tmp_path / "back") == read_tree(small)


# -- help ------------------------------------------------------------------------------------
def test_dataset_help_explains_every_command(tmp_path):
    cli = Cli(clean_env(tmp_path / "unused-home"), tmp_path)
    out = cli("dataset", "--help").stdout
    for command in ["push", "ls", "fs", "pull", "rm", "search"]:
        assert f" {command} " in out, out
    push = cli("dataset", "push", "--help").stdout
    for words in ["train/", "-f", "--desc", "--private", "atomic"]:
        assert words in push, push
    assert not (tmp_path / "unused-home" / "server.json").exists()  # help starts no server
