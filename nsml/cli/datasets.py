"""nsml dataset push | ls | fs | pull | rm | search."""

from pathlib import Path

import typer

from nsml.core.naming import check_dataset_name

from . import render
from .connection import CliError, api
from .transfer import download_tar, upload_folder

app = typer.Typer(help="Push, list, inspect, download and remove datasets.", no_args_is_help=True)


@app.command("push")
def push(
    name: str = typer.Argument(..., help="Dataset name: up to 20 letters, digits, '_' or '-'."),
    path: Path = typer.Argument(..., help="Folder with train/ (and optionally test/test_data, test/test_label, data_loader.py, evaluation.py)."),
    force: bool = typer.Option(False, "-f", "--force", help="Replace an existing dataset of that name (only once the new one is fully stored)."),
    desc: str = typer.Option("", "--desc", "--description", help="A description shown by `dataset ls`."),
    private: bool = typer.Option(False, "--private", help="Only you can read, change or delete it."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="List the files that were uploaded."),
    leaderboard: bool = typer.Option(False, "-l", "--leaderboard", help="Give it a leaderboard: submits are scored on test/ against test/test_label, by PATH/evaluation.py if there is one, else by accuracy."),
    metric: str = typer.Option(None, "--metric", help="Leaderboard metric: accuracy, mse, f1, roc-auc, or custom (evaluation.py); default custom when PATH has an evaluation.py, else accuracy. Implies -l."),
    order: str = typer.Option(None, "--order", help="Leaderboard order: desc (higher is better) or asc; default by metric (mse: asc)."),
    evaluation: Path = typer.Option(None, "-e", "--evaluation", help="Evaluation script, stored as the dataset's evaluation.py (metric custom)."),
    submit_interval: str = typer.Option(None, "--submit-interval", help="Least time between one user's ranked submits, e.g. 1h, 30m, 0 (no limit, the default)."),
    tags: list[str] = typer.Option(None, "--tag", help="A tag shown by `dataset ls`, e.g. --tag '#vision' (repeat for more; at most 7, each up to 50 characters, starting with #). A push -f without --tag keeps the old tags."),
):
    """Upload a folder as a dataset. The push is atomic: if it fails, nothing is kept.

    Layout: train/ for training sessions; for a leaderboard also test/test_data and
    test/test_label (hidden from sessions), and optionally data_loader.py and evaluation.py
    (see docs/leaderboards.md)."""
    check_dataset_name(name)
    if not path.exists():
        raise CliError(f"'{path}' does not exist.")
    if not path.is_dir():
        raise CliError(f"'{path}' is not a folder; a dataset is a folder with a train/ folder inside.")
    if not (path / "train").is_dir():
        raise CliError(f"'{path}' has no train/ folder; put the training files under {path / 'train'}.")
    extra = {}
    if evaluation is not None:
        if not evaluation.is_file():
            raise CliError(f"Evaluation script '{evaluation}' does not exist.")
        extra["evaluation.py"] = evaluation
        metric = metric or "custom"
    params = {"force": force, "description": desc, "private": private, "leaderboard": leaderboard}
    params.update({k: v for k, v in {"metric": metric, "order": order}.items() if v})
    if submit_interval is not None:
        params["submit_interval"] = parse_duration(submit_interval)
    if tags:
        params["tag"] = tags
    c = api()
    ds = upload_folder(c, f"/api/datasets/{name}", path, f"dataset {name}", params, ignore=False, extra=extra)
    if verbose:
        for f in c.get(f"/api/datasets/{name}/files"):
            render.console.print(f"  {f['path']}  {render.size(f['size'])}")
    render.console.print(f"Dataset {ds['name']} is pushed ({render.plural(ds['file_count'], 'file')}, {render.size(ds['size'])}" + (", with a hidden test split)" if ds["has_test"] else ")"))
    if ds["metric"]:
        how = "custom, scored by the dataset's evaluation.py" if ds["metric"] == "custom" else ds["metric"]
        render.console.print(f"Leaderboard: {how}, {'higher' if ds['order'] == 'desc' else 'lower'} is better"
                             + (f", one ranked submit per {submit_interval}" if ds["submit_interval"] else ""))
        if ds["metric"] != "custom" and (path / "evaluation.py").is_file():
            render.console.print(f"Its evaluation.py is not used: --metric {ds['metric']} names a built-in metric.")


def parse_duration(text: str) -> float:
    """Seconds in '90', '90s', '30m', '1h', '1d'."""
    from nsml.core.resources import parse_duration as seconds

    try:
        return seconds(text)
    except ValueError:
        raise CliError(f"'{text.strip().lower()}' is not a duration; write e.g. 90, 30m, 1h or 0.") from None


@app.command("change")
def change(
    name: str = typer.Argument(..., help="Dataset name."),
    desc: str = typer.Option(None, "--desc", "--description", help="New description."),
    metric: str = typer.Option(None, "--metric", help="Leaderboard metric (accuracy, mse, f1, roc-auc, custom); 'none' removes the leaderboard."),
    order: str = typer.Option(None, "--order", help="desc (higher is better) or asc."),
    submit_interval: str = typer.Option(None, "--submit-interval", help="Least time between one user's ranked submits, e.g. 1h; 0 = no limit."),
    tags: list[str] = typer.Option(None, "--tag", help="Replace the tags: --tag '#a' --tag '#b' (at most 7, starting with #); --tag none removes them."),
    users: list[str] = typer.Option(None, "-u", "--user", help="Let this user read the private dataset (repeat for more)."),
    teams: list[str] = typer.Option(None, "-t", "--team", help="Let this team's members read the private dataset (repeat for more)."),
    revoke: bool = typer.Option(False, "--revoke", help="Take the access of the -u users and -t teams away instead."),
):
    """Change a dataset's description, tags or leaderboard settings, or who reads a private one
    (-u USER, -t TEAM; --revoke to take it away). Its owner or an admin."""
    if revoke and not (users or teams):
        raise CliError("--revoke takes access away from the users and teams named with -u USER or -t TEAM; name at least one.")
    grantees = [{"user": u} for u in users or []] + [{"team": t} for t in teams or []]
    c = api()
    for who in grantees:
        granted = c.post(f"/api/datasets/{name}/grants", json={**who, "revoke": revoke})
    if grantees:
        named = ", ".join(f"{k}:{v}" for who in grantees for k, v in who.items())
        render.console.print(f"Dataset {name}: " + (f"{named} may no longer read it" if revoke else f"{named} may read it")
                             + f" (granted: {', '.join(granted) or 'nobody'})")
        if not any(v is not None for v in (desc, metric, order, submit_interval)) and not tags:
            return
    body = {"description": desc, "order": order}
    if tags:
        body["tags"] = [] if [t.lower() for t in tags] == ["none"] else tags
    if metric is not None:
        body["metric"] = "" if metric.lower() == "none" else metric
    if submit_interval is not None:
        body["submit_interval"] = parse_duration(submit_interval)
    ds = c.patch(f"/api/datasets/{name}", json={k: v for k, v in body.items() if v is not None})
    board = f"leaderboard {ds['metric']} ({ds['order']})" if ds["metric"] else "no leaderboard"
    render.console.print(f"Dataset {ds['name']}: {board}" + (f", tags {' '.join(ds['tags'])}" if ds.get("tags") else ""))
    if metric is not None and ds["metric"]:
        render.console.print(f"Submissions scored another way are scored again with {ds['metric']} from their kept predictions; "
                             f"those that cannot be are archived, never ranked (nsml dataset board {ds['name']}).")


def _rows(datasets):
    return [[d["name"], render.size(d["size"]), render.ago(d["updated"]), d["owner"], d["description"], _tag_cell(d)] for d in datasets]


def _tag_cell(d: dict) -> str:
    return " ".join([*d.get("tags", []), *(["private"] if d["private"] else [])])  # tags start with #


@app.command("ls")
def ls(json_out: bool = typer.Option(False, "-j", "--json", help="Print JSON.")):
    """List datasets."""
    datasets = api().get("/api/datasets")
    if json_out:
        return render.as_json(datasets)
    render.table(["Name", "Size", "Last Modified", "Author", "Description", "Tag"], _rows(datasets))


@app.command("search")
def search(pattern: str = typer.Argument(..., help="Name or glob, e.g. 'kin_*'."), json_out: bool = typer.Option(False, "-j", "--json", help="Print JSON.")):
    """Find datasets by name (glob * and ?; a plain word matches anywhere in the name)."""
    if not any(ch in pattern for ch in "*?["):
        pattern = f"*{pattern}*"
    datasets = api().get("/api/datasets", params={"pattern": pattern})
    if json_out:
        return render.as_json(datasets)
    if not datasets:
        raise CliError(f"No dataset matches '{pattern}'.")
    render.table(["Name", "Size", "Last Modified", "Author", "Description", "Tag"], _rows(datasets))


@app.command("fs")
def fs(name: str = typer.Argument(..., help="Dataset name."), json_out: bool = typer.Option(False, "-j", "--json", help="Print JSON.")):
    """List the files inside a dataset."""
    files = api().get(f"/api/datasets/{name}/files")
    if json_out:
        return render.as_json(files)
    render.table(["Path", "Size"], [[f["path"], render.size(f["size"])] for f in files])


@app.command("pull")
def pull(name: str = typer.Argument(..., help="Dataset name."), path: Path = typer.Argument(..., help="Folder to create."), force: bool = typer.Option(False, "-f", "--force", help="Overwrite an existing folder.")):
    """Download a dataset into a folder."""
    files = download_tar(api(), f"/api/datasets/{name}/archive", path, f"dataset {name}", force)
    render.console.print(f"Dataset {name} pulled into {path} ({render.plural(len(files), 'file')})")


@app.command("rm")
def rm(
    name: str = typer.Argument(..., help="Dataset name."),
    force: bool = typer.Option(False, "-f", "--force", help="Remove it even though sessions were run on it (they keep their logs and checkpoints but can no longer be forked or submitted)."),
):
    """Delete a dataset (its owner only)."""
    api().delete(f"/api/datasets/{name}", params={"force": force})
    render.console.print(f"Dataset {name} is removed")
