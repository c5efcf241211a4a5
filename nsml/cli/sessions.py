"""Session commands: run, ps, logs, stop, rm, memo, command, pull, download."""

import sys
import time
from pathlib import Path

import typer

from nsml.core import tags
from nsml.core.errors import InvalidInput
from nsml.core.naming import NO_DATASET
from nsml.core.policy import check_visibility
from nsml.core.resources import parse_size

from . import render
from .connection import CliError, api, session_path
from .datasets import parse_duration
from .transfer import download_tar, upload_folder

FOLLOW_POLL = 0.3


def run(
    dataset: str = typer.Option(None, "-d", "--dataset", help="Dataset the session reads (see `nsml dataset ls`); without it the session has none and is named OWNER/.nodata/N."),
    entry: str = typer.Option("main.py", "-e", "--entry", help="Python file to run, relative to the current folder."),
    args: str = typer.Option("", "-a", "--args", help='Arguments for the entry file, e.g. "--lr 0.01 --epochs 5".'),
    gpus: int = typer.Option(None, "-g", "--gpus", help="GPUs to allocate (default: 1 when the server has GPUs, else 0)."),
    cpus: float = typer.Option(None, "-c", "--cpus", help="CPUs to allocate (default 2, or fewer on a smaller machine)."),
    memory: str = typer.Option(None, "--memory", help="Memory to allocate, e.g. 8G (default 24G, or less on a smaller machine)."),
    shm_size: str = typer.Option(None, "--shm-size", help="Shared memory (/dev/shm) for the session, e.g. 2G (default 1G, at most --memory)."),
    memo: str = typer.Option("", "-m", "--memo", help="A description of this session."),
    folder: Path = typer.Option(Path("."), "--path", help="Folder to upload instead of the current one."),
    team: str = typer.Option(None, "--team", help="The team the session belongs to, one of yours (default: your default team, see `nsml team ls`)."),
    visibility: str = typer.Option(None, "--visibility", metavar="private|team|public", help="Who may read it: private (you and admins), team (also its team's members; the default) or public (every user)."),
    gpu_model: str = typer.Option(None, "--gpu-model", help="Only GPUs whose model contains this, e.g. A100 or H100 (the dashboard's Resources page lists them)."),
    priority: str = typer.Option(None, "--priority", metavar="low|normal|high", help="Its place in the queue: low, normal (the default) or high (admins only)."),
    time_limit: str = typer.Option(None, "--time-limit", help="Stop the session once it has run this long, e.g. 90m, 12h or 2d."),
    preemptible: bool = typer.Option(False, "--preemptible", help="Fill idle GPUs; when a regular session needs them, this one is checkpointed (its bound save), paused and requeued to resume from that checkpoint."),
):
    """Upload the current folder (minus .nsmlignore and the default ignores) and start ENTRY as a new session."""
    if visibility is not None:
        check_visibility(visibility)  # before uploading anything
    if not (folder / entry).is_file():
        py = sorted(p.name for p in folder.glob("*.py"))
        hint = f" Python files here: {', '.join(py[:8])}." if py else " There is no .py file here."
        raise CliError(f"Entry file '{entry}' does not exist in {folder.resolve()}; choose one with -e.{hint}")
    params = {"entry": entry, "args": args, "memo": memo}
    params.update({k: v for k, v in {"dataset": dataset, "gpus": gpus, "cpus": cpus, "memory": memory, "shm_size": shm_size,
                   "team": team, "visibility": visibility, "gpu_model": gpu_model, "priority": priority,
                   "time_limit": parse_duration(time_limit) if time_limit is not None else None,
                   "preemptible": "true" if preemptible else None}.items() if v is not None})
    if shm_size is not None:
        parse_size(shm_size)  # a clear error before uploading anything
    c = api()
    if dataset is not None:
        c.get(f"/api/datasets/{dataset}")  # "did you mean" before uploading anything
    session = upload_folder(c, "/api/sessions", folder, "code", params)
    render.console.print(f"Session {session['name']} is started")


DEFAULT_ROWS = 50  # a listing's rows unless told otherwise (-n N, --limit, --all-rows, -j)
COLUMNS = ["Name", "Created", "Args", "Status", "Type", "Summary", "Description"]


def ps(
    all_: bool = typer.Option(False, "-a", "--all", help="Include sessions that ended."),
    last: int = typer.Option(None, "-n", "--last", min=0, metavar="N", help="Only the last N sessions (all N are shown)."),
    dataset: str = typer.Option(None, "-d", "--data", "--dataset", help="Only sessions of this dataset."),
    search: str = typer.Option(None, "-s", "--search", help="Only sessions whose name matches this glob."),
    query: str = typer.Option(None, "-q", "--query", metavar="QUERY",
                              help="Only sessions the query selects, e.g. 'lr < 0.01 and val/acc >= 0.95', "
                                   "'tag:baseline', 'kind:submit' (docs/web.md, Queries)."),
    json_out: bool = typer.Option(False, "-j", "--json", help="Print JSON: every session listed, unless --limit, --page or --offset says otherwise."),
    limit: int = typer.Option(None, "--limit", min=0, metavar="N", help=f"Show at most N rows, newest first (default {DEFAULT_ROWS}; 0: every row)."),
    all_rows: bool = typer.Option(False, "--all-rows", help="Show every row (the same as --limit 0)."),
    page: int = typer.Option(None, "--page", min=1, metavar="P", help=f"Show page P of --limit rows (default {DEFAULT_ROWS}); 1 is the newest."),
    offset: int = typer.Option(None, "--offset", min=0, metavar="N", help="Skip the N newest rows."),
):
    """List sessions, newest first (running and queued ones unless -a).

    Shows the newest 50 and says how many more there are; --page, --limit N or --all-rows show
    others. A screenful on a terminal is a table; more rows, or output to a pipe or file, are
    plain aligned lines, one per session."""
    size, skip = rows_wanted(limit, all_rows, page, offset, last, json_out)
    params = {"all": all_, **({"limit": size} if size is not None else {}), **({"offset": skip} if skip else {})}
    params.update({k: v for k, v in {"last": last, "dataset": dataset, "pattern": search, "query": query}.items()
                   if v is not None})
    resp = api().request("GET", "/api/sessions", params=params)
    sessions = resp.json()
    total = resp.headers.get("X-Total-Count")
    if total is None:  # a server from before paging sends the whole listing
        total, sessions = len(sessions), sessions[skip:None if size is None else skip + size]
    if json_out:
        render.as_json(sessions)
    else:
        columns, rows = COLUMNS, [ps_row(s) for s in sessions]
        if len({s.get("node") for s in sessions if s.get("node")}) > 1:  # a cluster: where each one runs
            columns = [*COLUMNS[:4], "Node", *COLUMNS[4:]]
            rows = [[*r[:4], s.get("node") or "", *r[4:]] for r, s in zip(rows, sessions)]
        render.listing(columns, rows)
    hint = paging_hint(int(total), skip, len(sessions), size, page is None and offset is not None)
    if hint:
        render.err_console.print(hint)


def rows_wanted(limit: int | None, all_rows: bool, page: int | None, offset: int | None, last: int | None,
                json_out: bool) -> tuple[int | None, int]:
    """(rows to ask for, None for all; how many of the newest to skip) from ps's options."""
    if page is not None and offset is not None:
        raise CliError("Give --page or --offset, not both.")
    if all_rows and limit:
        raise CliError(f"--all-rows shows every row and --limit {limit} only {limit}; give one of them.")
    if all_rows or limit == 0:
        size = None
    elif limit is not None:
        size = limit
    elif page is not None or offset is not None:
        size = DEFAULT_ROWS
    else:  # JSON is for scripts, and -n N asked for N: all of it
        size = None if json_out or last else DEFAULT_ROWS
    if page is None:
        return size, offset or 0
    if size is None and page > 1:
        raise CliError(f"--page {page} needs a page size: give --limit N, not --all-rows or --limit 0.")
    return size, (page - 1) * (size or 0)


def paging_hint(total: int, skip: int, shown: int, size: int | None, by_offset: bool) -> str:
    """'Sessions 1-50 of 10,000, newest first. More: --page 2 (or --limit N, --all-rows).' when
    the listing holds more than is shown; '' when it is all there."""
    if shown == total:
        return ""
    paged = bool(size) and not by_offset and skip % size == 0  # where --page N says it
    if not shown:
        if not total:
            return ""
        where, pages = (f"page {skip // size + 1}", f" ({-(-total // size):,} pages of {size})") if paged else (f"--offset {skip}", "")
        return f"Nothing to show at {where}: there are {render.plural(total, 'session')}{pages}."
    rows = f"Session {skip + 1:,}" if shown == 1 else f"Sessions {skip + 1:,}-{skip + shown:,}"
    text = f"{rows} of {total:,}, newest first."
    if skip + shown < total:
        step = f"--page {skip // size + 2}" + (f" --limit {size}" if size != DEFAULT_ROWS else "") if paged else f"--offset {skip + shown}"
        text += f" More: {step} (or --limit N, --all-rows)."
    return text


def ps_row(s: dict) -> list[str]:
    """One session as ps shows it, in COLUMNS' order."""
    status = s["status"].capitalize()
    notes = [str(s["exit_code"])] if s["status"] == "failed" and s["exit_code"] is not None else []
    if s.get("attempt", 1) > 1:  # nsml resume ran it again
        notes.append(f"attempt {s['attempt']}")
    if s.get("queue_position"):
        notes.append(f"#{s['queue_position']} in queue")
    if s.get("zombie"):
        notes.append(f"zombie? GPU {', '.join(map(str, s['zombie']))} idle")
    if s["status"] == "running" and s.get("pause_requested"):  # nsml pause (or a preemption) under way
        notes.append("pausing" if s["pause_requested"] == "pause" else "preempted, pausing")
    if notes:
        status += f" ({', '.join(notes)})"
    info = render.summary(s["summary"]) or render.summary(s["last_values"])
    if s["status"] in ("failed", "lost") and s["error"]:
        info = s["error"].splitlines()[-1][:120]
    if s.get("queue_reason"):
        info = s["queue_reason"]
    if s["status"] == "paused":  # set aside, resources released: what brings it back
        at = f"at checkpoint {s['pause_checkpoint']}" if s.get("pause_checkpoint") else "before it started"
        info = f"paused {at}; nsml resume {s['name']} continues it"
    return [s["name"], render.ago(s["created"]), s["entry"] + (" " + s["args"] if s["args"] else ""), status,
            session_type(s), info, s["memo"]]


TYPES = {"normal": "normal", "fork": "normal/fork", "submit": "submit", "submit_test": "submit(test)", "infer": "infer"}


def session_type(s: dict) -> str:
    """NSML's type column; a fork says where it came from."""
    kind = TYPES.get(s.get("kind", "normal"), s.get("kind", ""))
    if s.get("preemptible"):  # run --preemptible: it gives its GPUs back when a regular session needs them
        kind += ", preemptible"
    return f"{kind} ({s['source']}:{s['source_checkpoint']})" if s.get("kind") == "fork" else kind


def logs(
    session: str = typer.Argument(..., help="OWNER/DATASET/N"),
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing until the session ends."),
    tail: int = typer.Option(None, "-n", "--tail", help="Only the last N lines."),
):
    """Print a session's stdout and stderr (live with -f; also after it ended).

    With -f it exits once the session ends: with status 0 if the session exited cleanly, 1 if it
    failed or was stopped."""
    c = api()
    path = session_path(session) + "/logs"
    params = {"tail": tail} if tail is not None else {"offset": 0}
    chunk = c.get(path, params=params)
    out = sys.stdout
    while True:
        out.write(chunk["text"])
        out.flush()
        if not follow or chunk["done"]:
            break
        if not chunk["text"]:
            time.sleep(FOLLOW_POLL)
        chunk = c.get(path, params={"offset": chunk["offset"]})
    if chunk["done"] or not follow:
        s = c.get(session_path(session))
        if s["status"] == "failed":
            render.err_console.print(f"Session {s['name']} failed: {s['error'].splitlines()[0] if s['error'] else 'exit code ' + str(s['exit_code'])}")
        elif follow and s["status"] == "stopped":
            render.err_console.print(f"Session {s['name']} was stopped")
        if follow and s["status"] in ("failed", "stopped"):
            raise typer.Exit(1)  # so `nsml logs -f S && nsml submit S ...` stops at a failed run


def stop(session: str = typer.Argument(..., help="OWNER/DATASET/N")):
    """Stop a running or queued session (its logs, metrics and checkpoints are kept)."""
    c = api()
    c.post(session_path(session) + "/stop")
    for _ in range(100):  # wait briefly so `ps` right after shows the final state
        s = c.get(session_path(session))
        if s["status"] not in ("running", "queued"):
            break
        time.sleep(0.2)
    state = "stopping" if s["status"] == "running" else s["status"]  # still shutting down after 20 s
    render.console.print(f"Session {s['name']} is {state}")


def rm(
    patterns: list[str] = typer.Argument(..., help="Session names or globs, e.g. 'alice/digits/*'.", metavar="SESSION"),
    force: bool = typer.Option(False, "-f", "--force", help="Also remove running sessions (they are killed)."),
    skip: bool = typer.Option(False, "-s", "--skip", help="Skip the deletion from storage: the sessions leave every listing, but their code, outputs, logs and checkpoints stay usable by name (model pull, fork, submit, nsml.load) until removed again without -s."),
):
    """Delete sessions with their logs, metrics, checkpoints and files (or, with -s, only take
    them out of the listings)."""
    removed = api().delete("/api/sessions", params={"pattern": patterns, "force": force, "skip": skip})["removed"]
    for name in removed:
        render.console.print(f"Session {name} is removed" + (" from the listings (its stored files are kept)" if skip else ""))


def memo(session: str = typer.Argument(..., help="OWNER/DATASET/N"), text: str = typer.Argument(..., help="The new description ('' clears it).")):
    """Set a session's description."""
    s = api().patch(session_path(session) + "/memo", json={"memo": text})
    render.console.print(f"Memo of {s['name']} is {'set' if text else 'cleared'}")


def tag(session: str = typer.Argument(..., help="OWNER/DATASET/N"),
        changes: list[str] = typer.Argument(None, metavar="[+TAG | -TAG]...",
                                            help="+x (or x) puts tag x on, -x takes it off; none: show the tags.")):
    """Tag a session (`nsml tag alice/digits/3 +baseline -draft`), or show its tags.

    Tags are words of letters, digits and _ . + -; `nsml ps -q tag:baseline` lists the sessions
    that have one. Put `--` before the first -TAG so it is not read as an option."""
    try:
        add, remove = tags.parse_changes(changes or [])
    except InvalidInput as exc:
        raise CliError(str(exc)) from None
    if add or remove:
        got = api().post(session_path(session) + "/tags", json={"add": add, "remove": remove})["tags"]
    else:
        got = api().get(session_path(session) + "/tags")["tags"]
    render.console.print(f"Tags of {session}: " + (" ".join(got) if got else "none"), markup=False, highlight=False)


def command(session: str = typer.Argument(..., help="OWNER/DATASET/N")):
    """Print the command the session was started with, and (as a comment) its resources."""
    s = api().get(session_path(session))
    render.console.print(s["command"])
    render.console.print("# " + resources(s))


def resources(s: dict) -> str:
    """'1 GPU, 2 CPU, 24.00 GB memory, 1.00 GB shared memory, dataset digits'."""
    parts = [f"{s['gpus']} GPU", f"{s['cpus']:g} CPU", f"{render.size(s['memory'])} memory"]
    if s.get("shm_size"):
        parts.append(f"{render.size(s['shm_size'])} shared memory")
    parts.append(f"dataset {s['dataset']}" if s["dataset"] != NO_DATASET else "no dataset")
    return ", ".join(parts)


def pull(
    session: str = typer.Argument(..., help="OWNER/DATASET/N"),
    path: Path = typer.Argument(None, help="Folder to create (default: ./OWNER_DATASET_N)."),
    force: bool = typer.Option(False, "-f", "--force", help="Replace an existing folder."),
):
    """Download the code a session was started with."""
    path = path or Path(session.replace("/", "_"))
    files = download_tar(api(), session_path(session) + "/code", path, "code", force)
    render.console.print(f"Code of {session} pulled into {path} ({render.plural(len(files), 'file')})")


def download(
    session: str = typer.Argument(..., help="OWNER/DATASET/N"),
    path: Path = typer.Argument(None, help="Folder to create (default: ./OWNER_DATASET_N_output)."),
    force: bool = typer.Option(False, "-f", "--force", help="Replace an existing folder."),
    single: str = typer.Option(None, "-s", "--single", help="Only this file or folder, e.g. '/app/model.txt' or 'results/'."),
):
    """Download the files a session wrote in its working directory (all, or one with -s).

    As in NSML, names may hold only letters, digits, spaces and . _ - + [ ] { } ( ) '"""
    path = path or Path(session.replace("/", "_") + "_output")
    if single:
        check_file_name(single, "-s")
    check_file_name(path.name, "PATH")
    params = {"only": single} if single else None
    files = download_tar(api(), session_path(session) + "/outputs", path, "outputs", force, params=params)
    render.console.print(f"{render.plural(len(files), 'file')} of {session} downloaded into {path}")


FILE_NAME_PUNCTUATION = set(" ._-+[]{}()'")


def check_file_name(name: str, what: str) -> None:
    """NSML's whitelist for download names: letters, digits, space and . _ - + [ ] { } ( ) '
    ('/' separates the folders of a path)."""
    for ch in name:
        if not (ch.isalnum() or ch in FILE_NAME_PUNCTUATION or ch == "/"):
            raise CliError(f"{what} '{name}' contains {ch!r}, which download does not allow; "
                           "names may hold only letters, digits, spaces and . _ - + [ ] { } ( ) '.")


def register(app: typer.Typer) -> None:
    for fn in (run, ps, logs, stop, memo, tag, command, pull, download):
        app.command(fn.__name__)(fn)
    app.command("rm")(rm)
