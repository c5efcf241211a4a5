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
):
    """Upload a folder as a dataset. The push is atomic: if it fails, nothing is kept."""
    check_dataset_name(name)
    if not path.exists():
        raise CliError(f"'{path}' does not exist.")
    if not path.is_dir():
        raise CliError(f"'{path}' is not a folder; a dataset is a folder with a train/ folder inside.")
    if not (path / "train").is_dir():
        raise CliError(f"'{path}' has no train/ folder; put the training files under {path / 'train'}.")
    c = api()
    ds = upload_folder(c, f"/api/datasets/{name}", path, f"dataset {name}", {"force": force, "description": desc, "private": private}, ignore=False)
    if verbose:
        for f in c.get(f"/api/datasets/{name}/files"):
            render.console.print(f"  {f['path']}  {render.size(f['size'])}")
    render.console.print(f"Dataset {ds['name']} is pushed ({ds['file_count']} files, {render.size(ds['size'])}" + (", with a hidden test split)" if ds["has_test"] else ")"))


def _rows(datasets):
    return [[d["name"], render.size(d["size"]), render.ago(d["updated"]), d["owner"], d["description"], "private" if d["private"] else ""] for d in datasets]


@app.command("ls")
def ls(json_out: bool = typer.Option(False, "-j", "--json", help="Print JSON.")):
    """List datasets."""
    datasets = api().get("/api/datasets")
    if json_out:
        return render.as_json(datasets)
    render.table(["Name", "Size", "Last Modified", "Author", "Description", "Tag"], _rows(datasets))


@app.command("search")
def search(pattern: str = typer.Argument(..., help="Name or glob, e.g. 'kin_*'."), json_out: bool = typer.Option(False, "-j", "--json")):
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
def fs(name: str, json_out: bool = typer.Option(False, "-j", "--json")):
    """List the files inside a dataset."""
    files = api().get(f"/api/datasets/{name}/files")
    if json_out:
        return render.as_json(files)
    render.table(["Path", "Size"], [[f["path"], render.size(f["size"])] for f in files])


@app.command("pull")
def pull(name: str, path: Path = typer.Argument(..., help="Folder to create."), force: bool = typer.Option(False, "-f", "--force", help="Overwrite an existing folder.")):
    """Download a dataset into a folder."""
    files = download_tar(api(), f"/api/datasets/{name}/archive", path, f"dataset {name}", force)
    render.console.print(f"Dataset {name} pulled into {path} ({len(files)} files)")


@app.command("rm")
def rm(name: str):
    """Delete a dataset."""
    api().delete(f"/api/datasets/{name}")
    render.console.print(f"Dataset {name} is removed")
