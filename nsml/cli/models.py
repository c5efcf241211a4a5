"""nsml model ls | rm | pull: checkpoints made by nsml.save()."""

from pathlib import Path
from urllib.parse import quote

import typer

from . import render
from .connection import api, session_path
from .transfer import download_tar

app = typer.Typer(help="List, download and delete a session's checkpoints.", no_args_is_help=True)


@app.command("ls")
def ls(session: str = typer.Argument(..., help="OWNER/DATASET/N"), json_out: bool = typer.Option(False, "-j", "--json", help="Print JSON.")):
    """List checkpoints: name, last modified, seconds since the previous one, summary, size."""
    ckpts = api().get(session_path(session) + "/checkpoints")
    if json_out:
        return render.as_json(ckpts)
    render.table(
        ["Checkpoint", "Last Modified", "Elapsed", "Summary", "Size"],
        [[c["name"], render.ago(c["created"]), f"{c['elapsed']:.3f}", render.summary(c["summary"]), render.size(c["size"])] for c in ckpts],
    )


@app.command("rm")
def rm(session: str = typer.Argument(..., help="OWNER/DATASET/N"), checkpoint: str = typer.Argument(..., help="Name or glob, e.g. '2*' or '*'.")):
    """Delete one checkpoint, or every checkpoint matching a glob."""
    removed = api().delete(session_path(session) + "/checkpoints", params={"pattern": checkpoint})["removed"]
    word = "checkpoint" if len(removed) == 1 else "checkpoints"
    render.console.print(f"Removed {word} {', '.join(removed)} of {session}")


@app.command("pull")
def pull(
    session: str = typer.Argument(..., help="OWNER/DATASET/N"),
    checkpoint: str = typer.Argument(..., help="Checkpoint name (see `nsml model ls`)."),
    path: Path = typer.Argument(None, help="Folder to create (default: ./CHECKPOINT)."),
    force: bool = typer.Option(False, "-f", "--force", help="Replace an existing folder."),
):
    """Download a checkpoint's files."""
    path = path or Path(checkpoint)
    url = f"{session_path(session)}/checkpoints/{quote(checkpoint, safe='')}/archive"
    files = download_tar(api(), url, path, f"checkpoint {checkpoint}", force)
    render.console.print(f"Checkpoint {checkpoint} of {session} pulled into {path} ({render.plural(len(files), 'file')})")
