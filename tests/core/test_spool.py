"""The spool codec's checks: what a hostile session may write and what it gets for it."""

import os

import pytest

from nsml.core import spool


def test_checkpoint_records_name_a_folder_under_checkpoints():
    assert spool.checkpoint_record({"name": "best", "dir": "checkpoints/123-4-ab"}) == ("best", "checkpoints/123-4-ab")
    assert spool.checkpoint_dir("123-4-ab") == "checkpoints/123-4-ab"


@pytest.mark.parametrize("line", [
    {"name": "x", "dir": "../../../blobs"},
    {"name": "x", "dir": "checkpoints/../../blobs"},
    {"name": "x", "dir": "/var/lib"},
    {"name": "x", "dir": "checkpoints/a/b"},
    {"name": "x", "dir": "app"},
    {"name": "x", "dir": 3},
    {"name": "", "dir": "checkpoints/a"},
    {"name": "a/b", "dir": "checkpoints/a"},
    {"name": "x" * 300, "dir": "checkpoints/a"},
    {"name": "bell\x07", "dir": "checkpoints/a"},
    {"dir": "checkpoints/a"},
])
def test_hostile_checkpoint_records_are_refused(line):
    with pytest.raises(spool.SpoolError):
        spool.checkpoint_record(line)


def test_paths_stay_inside_the_spool(tmp_path):
    root = tmp_path / "spool"
    (root / "checkpoints" / "ok").mkdir(parents=True)
    outside = tmp_path / "blobs"
    outside.mkdir()
    os.symlink(outside, root / "checkpoints" / "link")
    os.symlink(outside, root / "alias")
    assert spool.inside(str(root), "checkpoints/ok") == str(root.resolve() / "checkpoints" / "ok")
    for bad in ("checkpoints/link", "alias/x", "../blobs", "/etc", "checkpoints/../../blobs", "", "a\x00b"):
        with pytest.raises(spool.SpoolError):
            spool.inside(str(root), bad)


def test_non_finite_values_are_named():
    spool.finite_or_error("loss", 0.5)
    spool.finite_or_error("tag", "x")
    for value in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(spool.SpoolError, match="loss"):
            spool.finite_or_error("loss", value)


def test_scoped_tokens_name_one_session_attempt_and_cannot_be_forged():
    from nsml.core import credentials

    secret = b"s" * 32
    token = credentials.session_token(secret, 12, 2)
    assert credentials.parse_session_token(secret, token) == (12, 2)
    assert credentials.parse_session_token(b"t" * 32, token) is None  # another server's
    forged = token.replace(".12.", ".13.")
    assert credentials.parse_session_token(secret, forged) is None
    assert credentials.parse_session_token(secret, "owner-token") is None
    assert credentials.parse_session_token(secret, "nsml-s.1.x.abc") is None
