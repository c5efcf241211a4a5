"""The English→Korean example (examples/nmt_en_kr): the demo from NSML's presentation.

Off the platform the entry file trains with plain python and translates held-out sentences; on
the platform `echo Hello | nsml infer OWNER/NMT_EN_KR/1/best` prints 안녕하세요, and a submit of
the same checkpoint scores the hidden test split.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import EXAMPLES, REPO, start_session

pytest.importorskip("torch")

NMT = EXAMPLES / "nmt_en_kr"
SHORT = "--epochs 15"  # the shortest setting that still translates the test split well
GREETINGS = {"Hello": "안녕하세요", "hello!": "안녕하세요", "Thank you.": "감사합니다", "Good morning": "좋은 아침입니다"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nmt") / "nmt_data"
    subprocess.run([sys.executable, str(NMT / "make_dataset.py"), str(folder)], check=True, capture_output=True)
    return folder


def lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def plain_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("NSML_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_corpus_has_a_hidden_test_split_of_unseen_sentences(corpus):
    train, test = set(lines(corpus / "train" / "train_data")), lines(corpus / "test" / "test_data")
    assert len(train) > 2000 and len(test) > 200
    assert len(lines(corpus / "train" / "train_label")) == len(lines(corpus / "train" / "train_data"))
    assert len(lines(corpus / "test" / "test_label")) == len(test)
    assert not train & set(test)
    pairs = dict(zip(lines(corpus / "train" / "train_data"), lines(corpus / "train" / "train_label")))
    assert pairs["Hello"] == "안녕하세요"
    # particles follow the final consonant: 책을 (book) but 사과를 (apple)
    labels = "\n".join(lines(corpus / "train" / "train_label") + lines(corpus / "test" / "test_label"))
    assert "저는 책이 있어요" in labels and "사과를 좋아해요" in labels and "책를" not in labels


def test_trains_off_the_platform_and_translates_unseen_sentences(corpus, tmp_path):
    env = plain_env()
    train = subprocess.run([sys.executable, str(NMT / "main.py"), "--data", str(corpus), *SHORT.split()],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stdout + train.stderr
    assert "epoch 15/15" in train.stdout
    saved = sorted(p.name for p in (tmp_path / "nsml_checkpoints").iterdir())
    assert "best" in saved and "14" in saved
    assert sorted(p.name for p in (tmp_path / "nsml_checkpoints" / "best").iterdir()) == ["model.pt", "vocab.json"]

    test_data, test_label = lines(corpus / "test" / "test_data"), lines(corpus / "test" / "test_label")
    inputs = [*GREETINGS, "I like zebras and giraffes", "", *test_data]
    # --mode test_local: nsml.load('best') then nsml.infer(list of lines), one output line each
    proc = subprocess.run([sys.executable, str(NMT / "main.py"), "--mode", "test_local"], input="\n".join(inputs) + "\n",
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = [ln for ln in proc.stdout.split("\n")[:-1] if ln != "model loaded!"]
    assert len(out) == len(inputs), proc.stdout
    assert out[:len(GREETINGS)] == list(GREETINGS.values())
    assert out[len(GREETINGS)] and out[len(GREETINGS) + 1] == ""  # unknown words translate to something; no words to nothing
    predictions = out[len(GREETINGS) + 2:]
    exact = sum(p == t for p, t in zip(predictions, test_label)) / len(test_label)
    assert exact >= 0.85, [(d, p, t) for d, p, t in zip(test_data, predictions, test_label) if p != t]


@pytest.mark.timeout(900)
def test_nmt_demo_on_the_platform(server, cli, corpus):
    cli("dataset", "push", "--leaderboard", "NMT_EN_KR", corpus)  # metric: accuracy, i.e. exact sentences
    name = start_session(cli, "-d", "NMT_EN_KR", "--path", NMT, "-a", SHORT)
    assert name == "alice/NMT_EN_KR/1"
    session = server.wait(name, timeout=600)
    logs = cli("logs", name).stdout
    assert session["status"] == "exited" and session["exit_code"] == 0, logs
    assert "epoch 15/15" in logs
    assert session["summary"]["val/exact"] > 0.8
    checkpoints = [c["name"] for c in json.loads(cli("model", "ls", "-j", name).stdout)]
    assert "best" in checkpoints and "14" in checkpoints
    # the code upload honoured .nsmlignore: no dataset maker, no README
    cli("pull", name, cli.cwd / "code")
    assert sorted(p.name for p in (cli.cwd / "code").iterdir()) == [".nsmlignore", "main.py", "requirements.txt"]

    hello = cli("infer", f"{name}/best", input="Hello\n", timeout=300)
    assert hello.stdout.strip().splitlines()[-1] == "안녕하세요", hello.stdout + hello.stderr
    several = cli("infer", f"{name}/best", input="Thank you\nWhere is the bathroom?\n", timeout=300)
    assert several.stdout.strip().splitlines()[-2:] == ["감사합니다", "화장실이 어디에 있어요?"], several.stdout

    # the same infer scores the hidden test split: one Korean line per English line
    submit = cli("submit", name, "best", timeout=300)
    score = [ln for ln in submit.stdout.splitlines() if ln.startswith("Score: ")]
    assert score and float(score[-1].split()[1]) >= 0.85, submit.stdout + submit.stderr
