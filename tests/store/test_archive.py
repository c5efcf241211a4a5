"""nsml.store.archive: safe names, folder walking, .nsmlignore, streamed tars, checked reading."""

import io
import os
import tarfile
from pathlib import Path

import pytest

from nsml.core.errors import InvalidInput
from nsml.store.archive import (
    Member,
    archive_size,
    extract_to,
    load_ignore,
    read_tar,
    safe_relpath,
    stream_tar,
    walk_folder,
)


# -- safe_relpath ----------------------------------------------------------------------------
@pytest.mark.parametrize("name, expected", [
    ("a", "a"),
    ("train/train_data", "train/train_data"),
    ("./train//x/./y/", "train/x/y"),
    ("train\\sub\\f.txt", "train/sub/f.txt"),
    ("..a/b..", "..a/b.."),  # dots inside a name are fine
    ("데이터/파일.txt", "데이터/파일.txt"),
])
def test_safe_relpath_normalises(name, expected):
    assert safe_relpath(name) == expected


@pytest.mark.parametrize("name, words", [
    ("/etc/passwd", "absolute"),
    ("\\\\server\\share", "absolute"),
    ("C:/Windows/x", "absolute"),
    ("c:x", "absolute"),
    ("../evil", "outside"),
    ("train/../../evil", "outside"),
    ("train\\..\\..\\evil", "outside"),
    ("", "not a file name"),
    (".", "not a file name"),
    ("./", "not a file name"),
    ("a/\x00b", "NUL"),
])
def test_safe_relpath_refuses(name, words):
    with pytest.raises(InvalidInput, match=words):
        safe_relpath(name)


# -- walk_folder -----------------------------------------------------------------------------
def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def test_walk_folder_lists_every_file_sorted_with_sizes_and_modes(tmp_path):
    root = make_tree(tmp_path / "ds", {"train/b": b"bb", "train/a": b"a", "test/test_data": b"", "z.py": b"zzz"})
    os.chmod(root / "z.py", 0o755)
    members = walk_folder(root)
    assert [m.arcname for m in members] == ["test/test_data", "train/a", "train/b", "z.py"]
    assert [m.size for m in members] == [0, 1, 2, 3]
    assert members[3].mode == 0o755
    assert members[1].source == root / "train" / "a"


def test_walk_folder_refuses_a_file_and_a_missing_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InvalidInput, match="not a folder"):
        walk_folder(tmp_path / "f")
    with pytest.raises(InvalidInput, match="not a folder"):
        walk_folder(tmp_path / "missing")


def test_walk_folder_follows_links_that_stay_inside(tmp_path):
    root = make_tree(tmp_path / "ds", {"real/data.bin": b"12345"})
    os.symlink("real/data.bin", root / "alias.bin")
    os.symlink("real", root / "alias_dir")
    members = {m.arcname: m for m in walk_folder(root)}
    assert set(members) == {"alias.bin", "alias_dir/data.bin", "real/data.bin"}
    assert members["alias.bin"].size == 5


def test_walk_folder_refuses_a_link_outside_and_names_it(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    root = make_tree(tmp_path / "ds", {"train/a": b"a"})
    os.symlink(secret, root / "train" / "leak")
    with pytest.raises(InvalidInput, match=r"'train/leak' is a symbolic link to .*secret\.txt, outside"):
        walk_folder(root)


def test_walk_folder_refuses_a_relative_link_escaping_through_dotdot(tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "f").write_text("x")
    root = make_tree(tmp_path / "ds", {"train/a": b"a"})
    os.symlink("../../outside", root / "train" / "up")
    with pytest.raises(InvalidInput, match="'train/up'.*outside the folder"):
        walk_folder(root)


def test_walk_folder_refuses_link_loops_instead_of_recursing_forever(tmp_path):
    root = make_tree(tmp_path / "ds", {"train/a": b"a"})
    os.symlink("..", root / "train" / "loop")
    with pytest.raises(InvalidInput, match="'train/loop'.*loop"):
        walk_folder(root)
    os.unlink(root / "train" / "loop")
    os.symlink("self", root / "self")  # a link to itself
    with pytest.raises(InvalidInput, match="'self'"):
        walk_folder(root)


def test_walk_folder_skips_dangling_links(tmp_path):
    root = make_tree(tmp_path / "ds", {"train/a": b"a"})
    os.symlink("nothing-here", root / "train" / "dangling")
    assert [m.arcname for m in walk_folder(root)] == ["train/a"]


def test_ignored_links_are_never_checked(tmp_path):
    """.nsmlignore is the way out of a bad link, so it must apply before the link check."""
    root = make_tree(tmp_path / "code", {"main.py": b"print(1)", ".nsmlignore": b"venv/\nlink_out\n"})
    (root / "venv").mkdir()
    os.symlink("/usr/bin/python3", root / "venv" / "python")
    os.symlink("/etc/hostname", root / "link_out")
    names = [m.arcname for m in walk_folder(root, load_ignore(root))]
    assert names == [".nsmlignore", "main.py"]
    (root / ".nsmlignore").write_text("venv/\n")
    with pytest.raises(InvalidInput, match="'link_out'.*or add it to .nsmlignore"):
        walk_folder(root, load_ignore(root))  # the message says how to get out
    with pytest.raises(InvalidInput, match="'link_out'.*remove it.$"):
        walk_folder(root)  # no ignore file in play (datasets): no such advice


def test_nsmlignore_uses_gitignore_rules(tmp_path):
    root = make_tree(tmp_path / "code", {
        ".nsmlignore": b"# comment\n*.pyc\n!keep.pyc\ndata/\n/top_only.txt\nlogs/**/*.log\n",
        "main.py": b"", "a.pyc": b"", "keep.pyc": b"", "pkg/b.pyc": b"", "pkg/mod.py": b"",
        "data/big.bin": b"x", "pkg/data/also.bin": b"x", "top_only.txt": b"", "pkg/top_only.txt": b"",
        "logs/x/y/run.log": b"", "logs/readme.md": b"",
    })
    names = [m.arcname for m in walk_folder(root, load_ignore(root))]
    assert names == [".nsmlignore", "keep.pyc", "logs/readme.md", "main.py", "pkg/mod.py", "pkg/top_only.txt"]


def test_load_ignore_without_file_ignores_nothing_and_takes_extra_patterns(tmp_path):
    root = make_tree(tmp_path / "code", {"main.py": b"", ".git/HEAD": b""})
    assert load_ignore(root)("main.py", False) is False
    ignore = load_ignore(root, [".git/"])
    assert [m.arcname for m in walk_folder(root, ignore)] == ["main.py"]


# -- stream_tar / read_tar / extract_to ---------------------------------------------------------
def tree_for_roundtrip(root: Path) -> dict[str, bytes]:
    files = {
        "train/train_data": os.urandom(70_000),
        "train/train_label": b"0\n1\n",
        "test/empty": b"",
        "exactly512": b"x" * 512,
        "deep/" + "d" * 120 + "/" + "n" * 150: b"long name",  # needs PAX headers
        "유니코드/파일.txt": "한글".encode(),
    }
    make_tree(root, files)
    return files


def test_stream_tar_round_trips_through_tarfile(tmp_path):
    files = tree_for_roundtrip(tmp_path / "ds")
    members = walk_folder(tmp_path / "ds")
    data = b"".join(stream_tar(members))
    assert len(data) == archive_size(members)  # the progress bar's total is exact
    assert len(data) % 10240 == 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        got = {i.name: tar.extractfile(i).read() for i in tar if i.isfile()}
    assert got == files


def test_extract_to_round_trips_byte_identical(tmp_path):
    files = tree_for_roundtrip(tmp_path / "ds")
    data = b"".join(stream_tar(walk_folder(tmp_path / "ds")))
    paths = extract_to(io.BytesIO(data), tmp_path / "out")
    assert sorted(paths) == sorted(files)
    for rel, content in files.items():
        assert (tmp_path / "out" / rel).read_bytes() == content


def test_empty_archive_is_valid(tmp_path):
    data = b"".join(stream_tar([]))
    assert len(data) == archive_size([]) and set(data) == {0}
    assert read_tar(io.BytesIO(data), lambda *a: None) == 0


@pytest.mark.parametrize("change, words", [("grow", "grew"), ("shrink", "changed size"), ("delete", "could not be read")])
def test_stream_tar_notices_a_file_changing_under_it(tmp_path, change, words):
    f = tmp_path / "f"
    f.write_bytes(b"x" * 1000)
    members = [Member("f", f, 1000)]
    if change == "grow":
        f.write_bytes(b"x" * 2000)
    elif change == "shrink":
        f.write_bytes(b"x" * 10)
    else:
        f.unlink()
    with pytest.raises(InvalidInput, match=words):
        b"".join(stream_tar(members))


def tar_bytes(*entries: tarfile.TarInfo, payload: bytes = b"hello") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info in entries:
            if info.isfile():
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                tar.addfile(info)
    return buf.getvalue()


def entry(name: str, kind=tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@pytest.mark.parametrize("bad, words", [
    (entry("../evil"), "outside its folder"),
    (entry("train/../../evil"), "outside its folder"),
    (entry("/etc/evil"), "absolute path"),
    (entry("train/link", tarfile.SYMTYPE, "/etc/passwd"), "is a link to '/etc/passwd'"),
    (entry("train/hard", tarfile.LNKTYPE, "train/ok"), "is a link"),
    (entry("train/fifo", tarfile.FIFOTYPE), "not a regular file"),
    (entry("train/dev", tarfile.CHRTYPE), "not a regular file"),
    (entry("/abs_dir", tarfile.DIRTYPE), "absolute path"),
])
def test_read_tar_refuses_dangerous_entries(tmp_path, bad, words):
    data = tar_bytes(entry("train/ok"), bad)
    stored = []
    with pytest.raises(InvalidInput, match=words):
        read_tar(io.BytesIO(data), lambda rel, chunks, size: stored.append((rel, b"".join(chunks))))
    assert stored == [("train/ok", b"hello")]  # checked entry by entry; the caller takes the rest back


def test_extract_to_writes_nothing_outside_dest(tmp_path):
    data = tar_bytes(entry("../evil"))
    with pytest.raises(InvalidInput):
        extract_to(io.BytesIO(data), tmp_path / "dest")
    assert not (tmp_path / "evil").exists()


@pytest.mark.parametrize("body", [b"", b"this is not a tar archive" * 100, os.urandom(4096)])
def test_read_tar_refuses_what_is_not_a_tar(body):
    with pytest.raises(InvalidInput, match="not a valid tar archive"):
        read_tar(io.BytesIO(body), lambda *a: None)


def test_read_tar_refuses_a_truncated_tar(tmp_path):
    data = tar_bytes(entry("train/a"), payload=os.urandom(100_000))
    with pytest.raises(InvalidInput, match="not a valid tar archive"):
        read_tar(io.BytesIO(data[:50_000]), lambda rel, chunks, size: b"".join(chunks))


def test_read_tar_accepts_directories_and_gzip(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.addfile(entry("train", tarfile.DIRTYPE))
        info = entry("./train/x")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    got = {}
    assert read_tar(io.BytesIO(buf.getvalue()), lambda rel, chunks, size: got.update({rel: b"".join(chunks)})) == 1
    assert got == {"train/x": b"abc"}
