"""A trial's code is hostile: what it reports and saves steers the study's driver on the server.
Real server, real sessions: a trial that reports NaN, infinity, text and booleans as the
measure, jumps its epoch to 1e18, floods its summary with keys and saves between each, must
neither hang the driver nor poison the search: the study goes on, the hostile trial ends with
the one finite measure it reported (or fails), the other trial completes, and the server still
answers."""

import json

import pytest

from tests.conftest import cli_in, write_project

from .test_automl_server import config, detail, ended, start
from .test_automl_server import server  # noqa: F401 (the fixture: that module's server)

pytest.importorskip("optuna")

HOSTILE = '''
import argparse, math
import nsml

p = argparse.ArgumentParser()
p.add_argument("--mode", default="train")
p.add_argument("--pause", type=int, default=0)
p.add_argument("--iteration", default="0")
p.add_argument("--kind", default="hostile")
p.add_argument("--epochs", type=int, default=4)
c = p.parse_args()
nsml.bind(save=lambda folder: open(folder + "/m", "w").write("x"), load=lambda folder: None)
if c.kind == "hostile":
    for epoch, value in ((0, float("nan")), (1, float("inf")), (2, "0.99"), (3, True)):
        try:
            nsml.report(step=epoch, epoch=epoch, val__score=value)
        except Exception as exc:  # the library refuses some: the script carries on
            print("refused:", type(exc).__name__, flush=True)
        nsml.save(epoch)
    nsml.report(step=4, epoch=1e18, val__score=0.5, **{f"k{i:04d}": i for i in range(300)})
    nsml.save("huge")
    nsml.report(step=5, epoch=-5, val__score=-1e308)
    nsml.save("negative")
else:
    for epoch in range(c.epochs):
        nsml.report(step=epoch, epoch=epoch, val__score=0.5 + epoch / 10)
        nsml.save(epoch)
'''


def test_hostile_measures_neither_hang_the_driver_nor_poison_the_search(server, tmp_path):
    cli = cli_in(server, tmp_path / "hostile")
    write_project(cli.cwd, HOSTILE)
    space = {"kind": {"parameters": ["hostile", "benign"], "distribution": "categorical", "type": "str"}}
    s = start(cli, "hostile.json", config(h_params=space, args="", step={"epoch": 1}, algorithm="grid", termination={}))
    parent = ended(server, s["name"], timeout=180)
    assert parent["status"] == "exited", parent
    trials = detail(cli, s["name"])["trials"]
    assert sorted(t["params"]["kind"] for t in trials) == ["benign", "hostile"]  # the grid: each once
    for t in trials:
        if t["params"]["kind"] == "hostile":
            assert t["state"] in ("complete", "fail")
            assert t["value"] is None or t["value"] in (0.5, -1e308), t
            assert len(t["steps"]) == 1000 and all(isinstance(v, float) for v in t["steps"].values())  # epoch 1e18: capped
        else:
            assert t["state"] == "complete" and t["value"] == pytest.approx(0.8)
    assert server.api.get("/api/health").status_code == 200
    ranked = json.loads(cli("automl", "rank", s["name"], "-j").stdout)
    assert all(isinstance(m["value"], float) for m in ranked)
