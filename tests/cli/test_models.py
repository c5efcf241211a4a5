"""Checkpoints through the real CLI: nsml model ls / rm / pull, overwrites, loads across sessions."""

import json

import pytest

from tests.conftest import Cli, clean_env, serve_for_module, write_dataset, write_project

TRAIN = """\
import os
import nsml

def save(path, **kwargs):
    os.makedirs(os.path.join(path, 'extra'))
    with open(os.path.join(path, 'model.txt'), 'w') as f:
        f.write(STATE['weights'])
    with open(os.path.join(path, 'extra', 'meta.json'), 'w') as f:
        f.write('{"tag": "%s"}' % kwargs['tag'])

def load(path, **kwargs):
    with open(os.path.join(path, 'model.txt')) as f:
        STATE['weights'] = f.read()
    print('model loaded!', STATE['weights'], flush=True)

STATE = {'weights': ''}
nsml.bind(save=save, load=load, tag='v1')
for epoch in range(3):
    STATE['weights'] = f'weights of epoch {epoch}'
    nsml.report(summary=True, step=epoch, epoch=epoch, train__loss=1.0 / (epoch + 1))
    nsml.save(epoch)
nsml.report(step=3, note='after the last epoch checkpoint')
STATE['weights'] = 'first best'
nsml.save('best')
STATE['weights'] = 'second best'
nsml.save('best')           # the same name again overwrites
nsml.save(10)
nsml.load('1')               # this session's own checkpoint, right after saving
STATE['weights'] = 'odd'
nsml.save('odd name #1?%')   # checkpoint names are free text
"""

LOAD_OTHER = """\
import os, sys
import nsml

def load(path, **kwargs):
    with open(os.path.join(path, 'model.txt')) as f:
        print('loaded from the other session:', f.read(), flush=True)

nsml.bind(load=load)
nsml.load('best', session=sys.argv[1])
nsml.load(checkpoint='0', session=sys.argv[1])
try:
    nsml.load('missing', session=sys.argv[1])
except Exception as exc:
    print('refused:', type(exc).__name__, exc, flush=True)
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    yield from serve_for_module(tmp_path_factory, "models")


@pytest.fixture(scope="module")
def trained(srv, tmp_path_factory):
    """A session that saved checkpoints 0, 1, 2, best (twice) and 10."""
    work = tmp_path_factory.mktemp("train")
    cli = Cli(clean_env(srv.home), work)
    cli("dataset", "push", "mnist", write_dataset(work / "ds"))
    write_project(work / "code", TRAIN)
    cli("run", "-d", "mnist", cwd=work / "code")
    s = srv.wait("alice/mnist/1")
    assert s["status"] == "exited", cli("logs", "alice/mnist/1").stdout
    return "alice/mnist/1"


@pytest.fixture
def cli(srv, tmp_path) -> Cli:
    return Cli(clean_env(srv.home), tmp_path)


def test_model_ls_table_and_json(trained, cli):
    assert "model loaded! weights of epoch 1" in cli("logs", trained).stdout

    ckpts = json.loads(cli("model", "ls", "-j", trained).stdout)
    assert [c["name"] for c in ckpts] == ["0", "1", "2", "best", "10", "odd name #1?%"]
    by_name = {c["name"]: c for c in ckpts}
    # Summary: the summary=True values reported before each save
    assert by_name["0"]["summary"] == {"step": 0, "epoch": 0, "train/loss": 1.0}
    assert by_name["1"]["summary"] == {"step": 1, "epoch": 1, "train/loss": 0.5}
    assert by_name["best"]["summary"]["epoch"] == 2
    assert by_name["best"]["size"] == len("second best") + len('{"tag": "v1"}')
    assert all(c["elapsed"] >= 0 for c in ckpts)
    assert [c["created"] for c in ckpts] == sorted(c["created"] for c in ckpts)

    lines = cli("model", "ls", trained).stdout.splitlines()
    assert lines[0].split() == ["Checkpoint", "Last", "Modified", "Elapsed", "Summary", "Size"]
    row = [ln for ln in lines if ln.startswith("1 ")][0]
    assert "just now" in row and "epoch=1" in row and "train/loss=0.5" in row and row.rstrip().endswith(" B")


def test_model_pull_gets_the_files_save_wrote(trained, cli):
    out = cli("model", "pull", trained, "best", "best_ckpt").stdout
    assert "pulled into best_ckpt (2 files)" in out
    folder = cli.cwd / "best_ckpt"
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == ["extra/meta.json", "model.txt"]
    assert (folder / "model.txt").read_text() == "second best"  # overwritten by the second save
    assert json.loads((folder / "extra" / "meta.json").read_text()) == {"tag": "v1"}  # bind kwargs reach save

    cli("model", "pull", trained, "2", "two")
    assert (cli.cwd / "two" / "model.txt").read_text() == "weights of epoch 2"

    missing = cli("model", "pull", trained, "7", "seven", check=False)
    assert missing.returncode == 1
    assert " ".join(missing.stderr.split()) == (
        f"nsml: Session {trained} has no checkpoint '7'. Its checkpoints: 0, 1, 2, best, 10, odd name #1?%."
    )
    assert not (cli.cwd / "seven").exists()

    cli("model", "pull", trained, "odd name #1?%", "odd")
    assert (cli.cwd / "odd" / "model.txt").read_text() == "odd"


def test_load_a_checkpoint_of_another_session(trained, srv, cli):
    cli("dataset", "push", "other", write_dataset(cli.cwd / "ds"))
    write_project(cli.cwd / "code", LOAD_OTHER)
    out = cli("run", "-d", "other", "-a", trained, cwd=cli.cwd / "code").stdout
    assert "alice/other/1" in out
    s = srv.wait("alice/other/1")
    logs = cli("logs", "alice/other/1").stdout
    assert s["status"] == "exited", logs
    assert "loaded from the other session: second best" in logs
    assert "loaded from the other session: weights of epoch 0" in logs
    assert "refused: CheckpointNotFoundError" in logs and "missing" in logs


def test_model_rm_by_name_and_glob(trained, srv, cli):
    # a session of its own, so the other tests keep their checkpoints
    write_project(cli.cwd / "code", TRAIN)
    out = cli("run", "-d", "mnist", cwd=cli.cwd / "code").stdout
    name = [w for w in out.split() if w.startswith("alice/mnist/")][0]
    assert srv.wait(name)["status"] == "exited"

    def names():
        return [c["name"] for c in json.loads(cli("model", "ls", "-j", name).stdout)]

    assert cli("model", "rm", name, "best").stdout == f"Removed checkpoint best of {name}\n"  # says what it did
    assert names() == ["0", "1", "2", "10", "odd name #1?%"]
    cli("model", "rm", name, "odd name #1?%")
    cli("model", "rm", name, "1*")
    assert names() == ["0", "2"]
    missing = cli("model", "rm", name, "best", check=False)
    assert missing.returncode == 1 and "has no checkpoint 'best'" in missing.stderr
    nomatch = cli("model", "rm", name, "9*", check=False)
    assert nomatch.returncode == 1
    assert " ".join(nomatch.stderr.split()) == f"nsml: No checkpoint of {name} matches '9*'. Its checkpoints: 0, 2."
    cli("model", "rm", name, "*")
    assert names() == []
    assert "Checkpoint" in cli("model", "ls", name).stdout  # an empty table, not an error

    assert len(json.loads(cli("model", "ls", "-j", trained).stdout)) == 6  # the other session's are untouched
