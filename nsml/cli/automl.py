"""`nsml automl …` (spec §2.7, §6; docs/automl.md): hyper-parameter search whose every trial is
an ordinary session. run, ps, trials, stop, rm, memo, rank, logs; all with -j."""

import json
import tempfile
from pathlib import Path

import typer

from nsml.core.automl_config import parse_config
from nsml.core.errors import InvalidInput
from nsml.core.policy import check_visibility

from . import render
from .connection import CliError, api, session_path

app = typer.Typer(help="Hyper-parameter search: a study's trials are ordinary sessions, queued fairly with everyone's work.",
                  no_args_is_help=True)
CONFIG_MEMBER = ".nsml-automl.json"  # where the server reads the config in the upload (nsml.server.api.automl)
JSON = typer.Option(False, "-j", "--json", help="Print the answer as JSON.")


def study_path(name: str) -> str:
    return session_path(name).replace("/api/sessions/", "/api/automl/", 1)


def read_study_config(path: Path) -> dict:
    """The config file as data (JSON for .json, else YAML), checked here so a bad one fails
    before anything is uploaded."""
    from nsml.scheduler.config_files import read_config

    if not path.is_file():
        raise CliError(f"No AutoML config at {path}; give one with -c (docs/automl.md has an example).")
    data = read_config(path, "the AutoML config")
    parse_config(data, where=f"the AutoML config {path}")
    return data


@app.command()
def run(
    config: Path = typer.Option(Path("config.json"), "-c", "--config", help="The study's config, JSON or YAML (spec §6; docs/automl.md)."),
    memo: str = typer.Option("", "-m", "--memo", help="A description of the study, shown in listings and on the web."),
    folder: Path = typer.Option(Path("."), "--path", help="The code folder to upload instead of the current one."),
    dataset: str = typer.Option(None, "-d", "--dataset", help="The dataset its trials read (overrides the config's `dataset`)."),
    entry: str = typer.Option(None, "-e", "--entry", help="The entry file (overrides the config's `entry`)."),
    team: str = typer.Option(None, "--team", help="The team the study and its trials belong to (default: your default team)."),
    visibility: str = typer.Option(None, "--visibility", metavar="private|team|public", help="Who may read the study and its trials."),
    priority: str = typer.Option(None, "--priority", metavar="low|normal|high", help="Its trials' place in the queue (high: admins)."),
    seed: int = typer.Option(None, "--seed", min=0, help="Seed of the search (a fixed one makes it repeatable; default: random)."),
    as_json: bool = JSON,
):
    """Start a study: upload the code, then its trials run as child sessions, `population` at a time.

    Each trial gets `--NAME VALUE` for every h_param (after the config's `args`); its measure
    is read from its saved models (the value of `measure` reported before each nsml.save)."""
    data = read_study_config(config)
    if dataset is not None:
        data["dataset"] = dataset
    if entry is not None:
        data["entry"] = entry
    study = parse_config(data, where=f"the AutoML config {config}")
    if not (folder / study.entry).is_file():
        raise CliError(f"The entry file {study.entry} is not in {folder.resolve()}; set `entry` in the config or use -e.")
    if visibility is not None:
        check_visibility(visibility)
    params = {k: v for k, v in {"memo": memo, "team": team, "visibility": visibility, "priority": priority, "seed": seed}.items() if v is not None}
    c = api()
    if study.dataset:
        c.get(f"/api/datasets/{study.dataset}")  # "did you mean" before uploading anything
    from .transfer import upload_folder

    with tempfile.TemporaryDirectory() as tmp:
        sent = Path(tmp) / "config.json"
        sent.write_text(json.dumps(data))
        s = upload_folder(c, "/api/automl", folder, "code", params, extra={CONFIG_MEMBER: sent})
    if as_json:
        render.as_json(s)
        return
    budget = f"up to {s['max_trials']} trials" if s["max_trials"] else "until stopped or its budget is spent"
    render.console.print(f"AutoML session {s['name']} is started: {s['algorithm']}"
                         f"{' + ' + s['scheduler'] if s['scheduler'] != 'none' else ''}, {s['population']} at a time, {budget}, "
                         f"{s['order']} {s['measure']}. Follow it with nsml automl ps or nsml automl trials {s['name']}.")


COLUMNS = ["Name", "Status", "Search", "Trials", "Best", "Measure", "Created", "Description"]


@app.command()
def ps(
    all_: bool = typer.Option(False, "-a", "--all", help="Include studies that ended."),
    dataset: str = typer.Option(None, "-d", "--dataset", help="Only studies of this dataset."),
    last: int = typer.Option(None, "-n", "--last", min=0, metavar="N", help="Only the last N studies."),
    search: str = typer.Option(None, "-s", "--search", help="Only studies whose name matches this glob."),
    user: str = typer.Option(None, "-u", "--user", help="Only this user's studies."),
    as_json: bool = JSON,
):
    """List AutoML studies, newest first (running ones unless -a)."""
    import fnmatch

    params = {"all": str(all_).lower(), **({"dataset": dataset} if dataset else {})}
    rows = api().get("/api/automl", params=params)
    if search:
        rows = [r for r in rows if fnmatch.fnmatchcase(r["name"], search)]
    if user:
        rows = [r for r in rows if r["owner"] == user]
    if last is not None:
        rows = rows[:last]
    if as_json:
        render.as_json(rows)
        return
    if not rows:
        render.console.print("No AutoML sessions" + ("" if all_ else " running (-a lists ended ones too)"))
        return
    render.table(COLUMNS, [[r["name"], _status(r), f"{r['algorithm']}" + (f"+{r['scheduler']}" if r["scheduler"] != "none" else ""),
                            _counts(r), "" if r["best_value"] is None else f"{r['best_value']:.4g} (#{r['best_trial']})",
                            f"{'↑' if r['order'] == 'descending' else '↓'} {r['measure']}", render.ago(r["created"]), r["memo"]]
                           for r in rows])


def _status(r: dict) -> str:
    return "stopping" if r["study_status"] == "stopping" and r["status"] == "running" else r["status"]


def _counts(r: dict) -> str:
    parts = [f"{r[k]} {k}" for k in ("running", "complete", "pruned", "fail") if r[k]]
    of = f"/{r['max_trials']}" if r["max_trials"] else ""
    return f"{r['trial_count']}{of}: " + ", ".join(parts) if parts else f"0{of}"


@app.command()
def trials(session: str = typer.Argument(..., help="The AutoML session, OWNER/DATASET/N."), as_json: bool = JSON):
    """A study's trials: each one's parameters, state, measure and session."""
    d = api().get(study_path(session))
    if as_json:
        render.as_json(d)
        return
    names = [p for p in d["config"]["h_params"]]
    render.console.print(f"{d['name']}: {_status(d)}, {_counts(d)}" + (f" — {d['error']}" if d["error"] else ""))
    rows = [[t["number"], t["session"], t["state"], "" if t["value"] is None else f"{t['value']:.4g}",
             *(render.value(t["params"].get(n)) for n in names)] for t in d["trials"]]
    render.table(["#", "Session", "State", d["measure"], *names], rows)


@app.command()
def stop(session: str = typer.Argument(..., help="The AutoML session, OWNER/DATASET/N."),
         force: bool = typer.Option(False, "-f", "--force", help="Stop its running trials now too."),
         as_json: bool = JSON):
    """Start no more trials; the study ends once its running trials have (-f: they are stopped now)."""
    s = api().post(study_path(session) + "/stop", params={"force": str(force).lower()})
    if as_json:
        render.as_json(s)
        return
    render.console.print(f"AutoML session {s['name']} is stopping: no new trials"
                         + ("; its running trials are being stopped" if force else f"; {s['running']} running trial(s) finish first"))


@app.command()
def rm(session: str = typer.Argument(..., help="The AutoML session, OWNER/DATASET/N."), as_json: bool = JSON):
    """Remove a study with every trial's session (running ones are killed), their logs and checkpoints."""
    r = api().delete(study_path(session))
    if as_json:
        render.as_json(r)
        return
    render.console.print(f"Removed {r['removed'][0]} and {render.plural(len(r['removed']) - 1, 'trial session')}")


@app.command()
def memo(session: str = typer.Argument(..., help="The AutoML session, OWNER/DATASET/N."),
         text: str = typer.Argument(..., help="The new description ('' clears it)."), as_json: bool = JSON):
    """Set a study's description."""
    s = api().patch(session_path(session) + "/memo", json={"memo": text})
    if as_json:
        render.as_json({"name": s["name"], "memo": s["memo"]})
        return
    render.console.print(f"Memo of {s['name']} is {'set' if text else 'cleared'}")


@app.command()
def rank(session: str = typer.Argument(..., help="The AutoML session, OWNER/DATASET/N."),
         measure: str = typer.Option(None, "--measure", help="Rank by this reported key instead of the study's measure."),
         count: int = typer.Option(5, "--count", min=1, help="How many models to show."),
         order: str = typer.Option(None, "--order", metavar="descending|ascending", help="descending: higher is better (default: the study's)."),
         as_json: bool = JSON):
    """The best saved model of each trial, best first: one per session, ready for nsml submit."""
    params = {"count": count, **({"measure": measure} if measure else {}), **({"order": order} if order else {})}
    models = api().get(study_path(session) + "/rank", params=params)
    if as_json:
        render.as_json(models)
        return
    if not models:
        render.console.print("No trial has saved a model with that measure yet")
        return
    render.table(["Rank", "Session", "Checkpoint", measure or "Measure", "Parameters"],
                 [[i + 1, m["session"], m["checkpoint"], f"{m['value']:.6g}", render.summary(m["params"])] for i, m in enumerate(models)])


@app.command()
def logs(session: str = typer.Argument(..., help="The AutoML session, OWNER/DATASET/N."),
         follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing until the study ends."),
         tail: int = typer.Option(None, "-n", "--tail", help="Only the last N lines."),
         as_json: bool = JSON):
    """What the study decided, line by line: trials queued, pruned, completed, resumed; why it ended."""
    if as_json:
        c = api()
        params = {"tail": tail} if tail is not None else {"offset": 0}
        render.as_json(c.get(session_path(session) + "/logs", params=params))
        return
    from .sessions import logs as session_logs

    try:
        session_logs(session, follow, tail)
    except InvalidInput as exc:
        raise CliError(str(exc)) from exc
