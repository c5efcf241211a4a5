"""AutoML studies through the real CLI, a real server and real trial sessions in the sandbox:
a study runs end to end (its trials ordinary sessions with `--name value` arguments, numbered
once, the best model ranked), bad configs fail with one line before anything runs, a measure
the script never reports stops the study naming what it did report, stop -f and rm take the
trials with them, and a server killed with SIGKILL mid-study goes on without losing or
duplicating a trial."""

import json
import signal

import pytest

from tests.conftest import Cli, check_failed, cli_in, open_gate, serve_for_module, wait_for, write_project

pytest.importorskip("optuna")

TRAIN = '''
import argparse, math, os, time
import nsml

p = argparse.ArgumentParser()
p.add_argument("--mode", default="train")
p.add_argument("--pause", type=int, default=0)
p.add_argument("--iteration", default="0")
p.add_argument("--epochs", type=int, default=4)
p.add_argument("--lr", type=float, default=0.1)
p.add_argument("--width", type=int, default=8)
p.add_argument("--act", default="relu")
p.add_argument("--report", default="val/score")
p.add_argument("--hold", type=int, default=0)  # wait after the first save for the file "gate"
p.add_argument("--delay", type=float, default=0)  # seconds an epoch takes, times how far lr is from 0.01
c = p.parse_args()
state = {"epoch": 0}


def save(folder):
    with open(os.path.join(folder, "state"), "w") as f:
        f.write(str(state["epoch"]))


def load(folder):
    with open(os.path.join(folder, "state")) as f:
        state["epoch"] = int(f.read())


nsml.bind(save=save, load=load)
if c.pause:
    nsml.paused(scope=locals())
for epoch in range(state["epoch"], c.epochs):
    score = 1 - abs(math.log10(c.lr) + 2) / 4 + 0.01 * epoch + (0.05 if c.act == "tanh" else 0) + c.width / 1000
    nsml.report(step=epoch, epoch=epoch, **{c.report.replace("/", "__"): score})
    state["epoch"] = epoch + 1
    time.sleep(c.delay * (1 + abs(math.log10(c.lr) + 2)))
    nsml.save(epoch)
    print("epoch", epoch, "lr", c.lr, flush=True)
    while c.hold and not os.path.exists("gate"):
        time.sleep(0.05)
'''
SPACE = {"lr": {"parameters": [0.0001, 1.0], "distribution": "log_uniform", "type": "float"},
         "width": {"parameters": [4, 64], "distribution": "uniform", "type": "int"},
         "act": {"parameters": ["relu", "tanh"], "distribution": "categorical", "type": "str"}}


def config(**over) -> dict:
    base = {"h_params": SPACE, "entry": "main.py", "args": "--epochs 4", "population": 2, "step": {"epoch": 2},
            "order": "descending", "measure": "val__score", "algorithm": "tpe",
            "resources": {"gpus": 0, "cpus": 0.5, "memory": "512M"}, "termination": {"max_session_number": 4}}
    return {**base, **over}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_for_module(tmp_path_factory, "automl")


@pytest.fixture(scope="module")
def cli(server, tmp_path_factory) -> Cli:
    cli = cli_in(server, tmp_path_factory.mktemp("automl-work") / "code")
    write_project(cli.cwd, TRAIN)
    return cli


def start(cli: Cli, name: str, data: dict, *args) -> dict:
    (cli.cwd / name).write_text(json.dumps(data))
    return json.loads(cli("automl", "run", "-c", name, "-j", *args).stdout)


def detail(cli: Cli, study: str) -> dict:
    return json.loads(cli("automl", "trials", study, "-j").stdout)


def ended(server, study: str, timeout: float = 180) -> dict:
    return server.wait(study, statuses=("exited", "failed", "stopped"), timeout=timeout)


def release_until_ended(server, cli: Cli, study: str, timeout: float = 180) -> None:
    """Open the gate of each trial holding at it (--hold 1) as it runs, until the study ends."""
    def released():
        for t in detail(cli, study)["trials"]:
            if t["session"] and server.session(t["session"])["status"] == "running":
                open_gate(server, t["session"])
        return server.session(study)["status"] != "running"

    wait_for(released, f"{study} to end", timeout=timeout, every=0.5)


def why_trials_failed(server, cli: Cli, study: str, d: dict) -> str:
    """What a failed assertion on trial states should show: the study's log and each trial
    that did not complete, with its session's status history and log tail."""
    lines = [cli("automl", "logs", study).stdout]
    for t in d["trials"]:
        if t["state"] != "complete" and t["session"]:
            info = server.session(t["session"])
            log = server.api.get(f"/api/sessions/{t['session']}/logs").json()["text"]
            lines += [f"trial {t['number']} {t['state']}: {json.dumps(info, default=str)}", log[-3000:]]
    return "\n".join(lines)


def test_a_study_runs_its_trials_as_sessions_and_ranks_their_models(server, cli):
    s = start(cli, "study.json", config(), "-m", "first search", "--seed", "7")
    assert s["name"].endswith("/.nodata/1") and s["status"] == "running" and s["algorithm"] == "tpe"
    parent = ended(server, s["name"])
    assert parent["status"] == "exited" and parent["kind"] == "automl", parent
    d = detail(cli, s["name"])
    assert [t["number"] for t in d["trials"]] == [0, 1, 2, 3]
    assert {t["state"] for t in d["trials"]} == {"complete"}
    for t in d["trials"]:  # each an ordinary session, with its parameters as arguments
        child = server.session(t["session"])
        assert child["status"] == "exited" and child["kind"] == "normal"
        assert child["args"].startswith("--epochs 4 --lr ") and f"--width {t['params']['width']}" in child["args"]
        assert t["value"] == pytest.approx(child["last_values"]["val/score"])
        assert t["steps"] == {"1": pytest.approx(t["value"] - 0.02), "2": pytest.approx(t["value"])}
    ranked = json.loads(cli("automl", "rank", s["name"], "--count", "2", "-j").stdout)
    values = sorted((t["value"] for t in d["trials"]), reverse=True)
    assert [m["value"] for m in ranked] == pytest.approx(values[:2]) and ranked[0]["checkpoint"] == "3"
    listed = json.loads(cli("automl", "ps", "-a", "-j").stdout)
    mine = next(r for r in listed if r["name"] == s["name"])
    assert mine["complete"] == 4 and mine["best_value"] == pytest.approx(values[0]) and mine["memo"] == "first search"
    assert s["name"] not in cli("automl", "ps").stdout  # ended: only with -a
    kinds = json.loads(cli("ps", "-a", "-q", "kind:automl", "-j").stdout)
    assert [k["name"] for k in kinds] == [s["name"]]
    log = cli("automl", "logs", s["name"]).stdout
    assert "trial 0: " in log and "queued (lr=" in log and "the study ended: 4 trials, its budget" in log
    cli("automl", "memo", s["name"], "narrowed next")
    assert server.session(s["name"])["memo"] == "narrowed next"


@pytest.mark.parametrize("change, message", [
    ({"h_params": {"lr": {"parameters": [0.1, 0.001], "distribution": "uniform", "type": "float"}}}, "reversed"),
    ({"h_params": {"lr": {"parameters": [0.1, 1], "distribution": "gaussian", "type": "float"}}}, "distribution"),
    ({"h_params": {"act": {"parameters": ["relu", "tanh"], "distribution": "categorical", "type": "int"}}}, "int"),
    ({"algorithm": "annealing"}, "algorithm"),
])
def test_a_bad_config_fails_with_one_line_before_anything_runs(server, cli, change, message):
    before = len(server.api.get("/api/automl", params={"all": "true"}).json())
    (cli.cwd / "bad.json").write_text(json.dumps(config(**change)))
    line = check_failed(cli("automl", "run", "-c", "bad.json", check=False))
    assert message in line, line
    assert len(server.api.get("/api/automl", params={"all": "true"}).json()) == before


def test_a_config_file_that_is_not_yaml_or_is_missing_says_so(cli):
    (cli.cwd / "broken.yaml").write_text("h_params: [unclosed\n")
    assert "is not valid YAML" in check_failed(cli("automl", "run", "-c", "broken.yaml", check=False))
    assert "No AutoML config at" in check_failed(cli("automl", "run", "-c", "nowhere.yaml", check=False))


def test_a_measure_never_reported_stops_the_study_at_the_first_compare_step(server, cli):
    s = start(cli, "typo.json", config(measure="val/scor", termination={"max_session_number": 6}))
    parent = ended(server, s["name"])
    assert parent["status"] == "failed"
    assert "the measure val/scor was never reported by its trials; they reported: epoch, step, val/score" in parent["error"]
    d = detail(cli, s["name"])
    assert len(d["trials"]) == 2 and {t["state"] for t in d["trials"]} == {"fail"}  # no third trial was started


def test_stop_force_ends_the_running_trials_and_rm_removes_them(server, cli):
    s = start(cli, "held.json", config(args="--epochs 4 --hold 1"))
    wait_for(lambda: (d := detail(cli, s["name"])) and sum(server.session(t["session"])["status"] == "running"
                                                            for t in d["trials"] if t["session"]) == 2,
             "two trials to run", timeout=90)
    out = cli("automl", "stop", s["name"], "-f").stdout
    assert "is stopping" in out
    parent = ended(server, s["name"])
    assert parent["status"] == "stopped"
    children = [t["session"] for t in detail(cli, s["name"])["trials"]]
    assert len(children) == 2 and all(server.session(c)["status"] == "stopped" for c in children)
    removed = json.loads(cli("automl", "rm", s["name"], "-j").stdout)["removed"]
    assert removed == [s["name"], *children]
    for name in removed:
        owner, dataset, n = name.split("/")
        assert server.api.get(f"/api/sessions/{owner}/{dataset}/{n}").status_code == 404
    check_failed(cli("automl", "trials", s["name"], check=False))


def test_automl_commands_on_a_plain_session_say_it_is_not_one(server, cli):
    name = cli("run", "-a", "--epochs 1").stdout.split()[1]
    assert "is not an AutoML session" in check_failed(cli("automl", "trials", name, check=False))


def test_a_server_killed_mid_study_resumes_it_without_losing_or_duplicating_a_trial(server, cli):
    s = start(cli, "kill.json", config(args="--epochs 4 --hold 1", termination={"max_session_number": 4}))
    first = wait_for(lambda: (d := detail(cli, s["name"])) and len(d["trials"]) == 2 and all(t["session"] for t in d["trials"]) and d,
                     "two trials", timeout=60)
    server.stop(signal.SIGKILL)
    server.start()
    open_gate(server, *(t["session"] for t in first["trials"]))

    release_until_ended(server, cli, s["name"], timeout=240)  # later trials hold too
    assert server.session(s["name"])["status"] == "exited"
    d = detail(cli, s["name"])
    assert [t["number"] for t in d["trials"]] == [0, 1, 2, 3], d["trials"]
    assert {t["state"] for t in d["trials"]} == {"complete"}, why_trials_failed(server, cli, s["name"], d)
    children = [t["session"] for t in d["trials"]]
    assert len(set(children)) == 4
    assert [t["session"] for t in d["trials"][:2]] == [t["session"] for t in first["trials"]]  # the same children went on
    trial_sessions = [x for x in server.api.get("/api/sessions", params={"all": "true"}).json() if x["memo"].endswith(f"of {s['name']}")]
    assert sorted(x["name"] for x in trial_sessions) == sorted(children)  # no trial was started twice


def test_pbt_forks_a_better_trials_checkpoint_with_perturbed_parameters(server, cli):
    """The worse trial is the slower one here (--delay), so it reaches each compare step after
    the better one has, is compared with it, and is exploited: stopped, and a new trial forks
    the better one's latest checkpoint with perturbed parameters, training on from there."""
    space = {"lr": {"parameters": [0.0001, 1.0], "distribution": "log_uniform", "type": "float"}}
    s = start(cli, "pbt.json", config(h_params=space, args="--epochs 5 --delay 0.3", step={"epoch": 1},
                                      tune={"pbt": {"exploit": "truncation", "explore": "perturb", "fork": True}},
                                      termination={"max_session_number": 4}), "--seed", "3")
    assert s["scheduler"] == "pbt"
    assert ended(server, s["name"], timeout=240)["status"] == "exited"
    trials = detail(cli, s["name"])["trials"]
    forks = [t for t in trials if t["parent"] is not None]
    assert forks, trials
    by_number = {t["number"]: t for t in trials}
    for t in forks:
        donor = by_number[t["parent"]]
        child = server.session(t["session"])
        assert child["kind"] == "fork" and child["source"] == donor["session"]
        assert t["params"]["lr"] != donor["params"]["lr"] and f"--lr {t['params']['lr']!r}" in child["args"]
        log = server.api.get(f"/api/sessions/{t['session']}/logs").json()["text"]
        first_epoch = int(log.split("epoch ", 1)[1].split()[0])
        assert first_epoch == int(child["source_checkpoint"]) + 1  # it went on from the donor's checkpoint
        k = min(int(x) for x in t["steps"])
        assert t["steps"][str(k)] == donor["steps"][str(k)], (t, donor)  # its history up to the fork is its donor's
    exploited = [t for t in trials if t["state"] == "pruned"]
    assert len(exploited) >= len(forks) - sum(1 for t in forks if t["state"] == "running")
    log = cli("automl", "logs", s["name"]).stdout
    assert "exploited at compare step" in log and "forks trial" in log


def test_a_paused_trial_is_set_aside_then_resumed_from_its_checkpoint(server, cli):
    """Stop-and-go: `nsml pause` on a trial checkpoints it and frees its slot, which goes to a new
    trial; once the budget allows no new one, the paused trial comes back from its checkpoint
    (same session, next attempt) and completes."""
    s = start(cli, "stopgo.json", config(args="--epochs 3 --hold 1", population=1, termination={"max_session_number": 2}))
    first = wait_for(lambda: (d := detail(cli, s["name"]))["trials"] and d["trials"][0]["session"], "the first trial", timeout=60)
    wait_for(lambda: server.session(first)["pausable"] and server.api.get(f"/api/sessions/{first}/checkpoints").json(),
             "the first trial to bind its save and save once", timeout=60)
    cli("pause", first)
    assert server.wait(first, ("paused",), timeout=60)["status"] == "paused"

    release_until_ended(server, cli, s["name"], timeout=240)  # later trials hold too
    d = detail(cli, s["name"])
    assert [t["state"] for t in d["trials"]] == ["complete", "complete"]
    again = server.session(first)
    assert again["attempt"] == 2 and again["resumed_from"] and again["status"] == "exited"
    assert "trial 0 (" + first + ") was paused: resumed from its checkpoint" in cli("automl", "logs", s["name"]).stdout


def test_nsml_rm_of_a_study_takes_its_trials_with_it(server, cli):
    s = start(cli, "rm.json", config(args="--epochs 4 --hold 1"))
    d = wait_for(lambda: (d := detail(cli, s["name"])) and len(d["trials"]) == 2 and all(t["session"] for t in d["trials"]) and d,
                 "two trials", timeout=60)
    assert "still running" in check_failed(cli("rm", s["name"], check=False))
    cli("rm", "-f", s["name"])
    for name in [s["name"], *(t["session"] for t in d["trials"])]:
        owner, dataset, n = name.split("/")
        assert server.api.get(f"/api/sessions/{owner}/{dataset}/{n}").status_code == 404, name
