"""nsml fork | submit | infer: relaunch a session's code at one of its checkpoints."""

import json
import sys
import time

import typer
from rich.text import Text

from nsml.core.naming import parse_session_name

from . import render
from .connection import CliError, api, session_path

POLL = 0.3
INFER_START_WAIT = 900.0  # seconds `nsml infer` waits for a new infer session to load its model


def fork(
    session: str = typer.Argument(..., help="Session to fork, e.g. alice/digits/3."),
    checkpoint: str = typer.Option(None, "-c", "--checkpoint", help="Checkpoint to start from (default: the latest)."),
    args: str = typer.Option(None, "-a", "--args", help="Arguments for the entry file instead of the original ones."),
    gpus: int = typer.Option(None, "-g", "--gpus", help="GPUs (default: as the forked session)."),
    cpus: float = typer.Option(None, "--cpu", "--cpus", help="CPUs (default: as the forked session)."),
    memory: str = typer.Option(None, "--memory", help="Memory, e.g. 8G (default: as the forked session)."),
):
    """Start a new session from a checkpoint: the code is relaunched with --pause 1 --iteration
    CHECKPOINT, nsml.paused() loads it, and training goes on."""
    params = {k: v for k, v in {"checkpoint": checkpoint, "args": args, "gpus": gpus, "cpus": cpus, "memory": memory}.items() if v is not None}
    new = api().post(session_path(session) + "/fork", params=params)
    render.console.print(f"Session {new['name']} is started (forked from {session} at checkpoint {new['source_checkpoint']})")


def resume(session: str = typer.Argument(..., help="A paused, stopped or failed session, e.g. alice/digits/3.")):
    """Restart a paused, stopped or failed session from its latest checkpoint, under the same name.

    The new attempt relaunches the code with its original arguments plus --pause 1 --iteration
    CHECKPOINT, so nsml.paused() loads it and training goes on; its log and metrics continue
    those of the earlier attempts. A session paused before it started is simply queued again."""
    s = api().post(session_path(session) + "/resume")
    if not s["resumed_from"] and s["attempt"] == 1:
        render.console.print(f"Session {s['name']} is queued again")
        return
    render.console.print(f"Session {s['name']} is resumed from checkpoint {s['resumed_from']} (attempt {s['attempt']})")


PAUSE_WAIT = 900.0  # seconds `nsml pause` waits for the checkpoint (the server stops it after its grace period)


def pause(
    session: str = typer.Argument(..., help="A running or queued session, e.g. alice/digits/3."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until it has paused (the default), or return once asked."),
    requeue: bool = typer.Option(False, "--requeue", help="Queue it again from that checkpoint as soon as it has paused (what a preemption does)."),
):
    """Checkpoint a running session and set it aside, its resources released; nsml resume continues it.

    The platform sends SIGUSR1 to the script, whose library saves checkpoint paused-<time>
    through the bound save (nsml.bind(save=...)) and ends it; a script without one is refused
    (stop it instead). A queued session is paused at once. nsml resume relaunches it with
    --pause 1 --iteration CHECKPOINT, which nsml.paused(scope=locals()) loads."""
    c = api()
    path = session_path(session)
    s = c.post(path + "/pause", params={"requeue": "true"} if requeue else None)
    name, attempt = s["name"], s["attempt"]
    if s["status"] == "paused":
        render.console.print(f"Session {name} is paused (it had not started); nsml resume {name} queues it again")
        return
    if s["status"] == "queued":  # --requeue of a queued session: it holds nothing
        render.console.print(f"Session {name} is queued; it holds no resources to give back")
        return
    if not wait:
        render.console.print(f"Session {name} is pausing")
        return
    deadline = time.monotonic() + PAUSE_WAIT
    with render.err_console.status(f"Checkpointing {name}…"):
        while s["status"] == "running" and s["pause_requested"] and time.monotonic() < deadline:
            time.sleep(POLL)
            s = c.get(path)
    if s["status"] == "paused":
        again = " and queued again" if requeue else f"; nsml resume {name} continues it"
        render.console.print(f"Session {name} is paused at checkpoint {s['pause_checkpoint']}{again}")
    elif requeue and s["attempt"] > attempt:  # paused and queued again before this looked
        render.console.print(f"Session {name} is paused at checkpoint {s['resumed_from']} and queued again (attempt {s['attempt']})")
    elif s["status"] == "running" and s["pause_error"]:
        raise CliError(f"The pause of {name} failed: its save raised {s['pause_error']}. The session keeps running; "
                       f"fix the save function (see nsml logs {name}), or end it with nsml stop {name}.")
    elif s["status"] == "running":
        render.console.print(f"Session {name} is still pausing (see nsml logs {name})")
    else:
        raise CliError(f"Session {name} ended ({s['status']}) without pausing: {s['error'] or 'see nsml logs ' + name}")


def submit(
    session: str = typer.Argument(..., help="Session whose checkpoint to score."),
    checkpoint: str = typer.Argument(..., help="Checkpoint to score (see `nsml model ls SESSION`)."),
    test: bool = typer.Option(False, "-t", "--test", help="Run the whole pipeline to debug it: says whether the evaluator returned a score, never which, nor ranks it (a few per hour)."),
    batch_size: int = typer.Option(None, "-b", "--batch-size", metavar="N",
                                   help="Batch size, passed as batch_size=N to the dataset's data loader and to your infer where they take a batch_size parameter (against OOM or timeouts)."),
):
    """Score a checkpoint on the dataset's hidden test set and put it on the leaderboard.

    The code is relaunched with --pause 1 --mode test; nsml.paused() loads the checkpoint and
    predicts the test data, which the dataset's evaluation then scores."""
    c = api()
    params = {"checkpoint": checkpoint, "test": test, **({"batch_size": batch_size} if batch_size is not None else {})}
    sub = c.post(session_path(session) + "/submit", params=params)
    render.err_console.print(f"Submit of {session} checkpoint {sub['checkpoint']} runs as {sub['runner']}")
    shown, queued_since = "", time.monotonic()
    with render.err_console.status("") as spinner:
        while sub["status"] in ("running", "evaluating"):
            step = _progress(sub)
            if sub["runner_status"] == "queued" and time.monotonic() - queued_since > 3:
                step += _holders(c)
            if step != shown:
                spinner.update(step)
                shown = step
            time.sleep(POLL)
            sub = c.get(f"/api/submissions/{sub['id']}")
    if sub.get("notice"):
        render.err_console.print(Text.assemble(("Warning: ", "yellow"), sub["notice"]))
    if sub["status"] == "failed":
        step = f"{sub['step']} failed" if sub["step"] else "the submit failed"
        render.err_console.print(Text.assemble(("Error: ", "red"), f"{step} ({sub['runner']}):"))
        render.err_console.print(Text(sub["error"]))
        raise typer.Exit(1)
    if sub["test"]:  # the server never tells a test submit's score: it would be an oracle on the labels
        render.console.print("Test submit OK: the evaluator returned a score (not shown for test submits, which are not ranked)")
        return
    render.console.print(f"Score: {sub['score']}")
    render.console.print("Done")


def _holders(c) -> str:
    """Who holds the machine while a submit waits (an infer session started with -c, say)."""
    running = c.get("/api/resources").get("running", [])
    return f" (held by {', '.join(running[:4])}; see nsml ps)" if running else ""


def _progress(sub: dict) -> str:
    if sub["status"] == "evaluating":
        return "Evaluating the predictions…"
    if sub["runner_status"] == "queued":
        return "Waiting for resources…"
    return "Loading the checkpoint and predicting the test set…"


def infer(
    target: str = typer.Argument(..., help="SESSION/CHECKPOINT, or SESSION with the checkpoint as the next argument."),
    checkpoint: str = typer.Argument(None, help="Checkpoint (default: the latest)."),
    dataset: str = typer.Option(None, "--dataset", "-d", help="Mount this dataset instead of the session's."),
    stop: bool = typer.Option(False, "--stop", help="Stop the infer session of this checkpoint instead."),
    as_json: bool = typer.Option(False, "--json", help="Read stdin as one JSON value and print the output as JSON."),
    gpus: int = typer.Option(None, "-g", "--gpus", help="GPUs for a new infer session (default: as the session)."),
    cpus: float = typer.Option(None, "-c", "--cpus", help="CPUs to reserve for a new infer session (default none: it idles between requests)."),
    memory: str = typer.Option(None, "--memory", help="Memory to reserve for a new infer session, e.g. 4G (default none)."),
):
    """Run a checkpoint's infer function on stdin, one input per line; prints one output per line.

    The first call starts an infer session that loads the model once and keeps serving
    (also over HTTP: POST /api/sessions/INFER_SESSION/infer); later calls reuse it.
    `nsml infer --stop` or `nsml rm` ends it."""
    session, checkpoint = _split_target(target, checkpoint)
    c = api()
    if stop:
        _stop_infer(c, session, checkpoint)
        return
    if as_json:
        try:
            data = json.loads(sys.stdin.read())
        except ValueError as exc:
            raise CliError(f"stdin is not JSON ({exc}); without --json each line is one input.") from None
    else:
        data = [line.rstrip("\r\n") for line in sys.stdin]
        if not data:
            raise CliError("Nothing to infer: give the inputs on stdin, one per line, e.g. echo Hello | nsml infer SESSION/CHECKPOINT.")
    params = {k: v for k, v in {"checkpoint": checkpoint, "feed": dataset, "gpus": gpus, "cpus": cpus, "memory": memory}.items() if v is not None}
    runner = c.post(session_path(session) + "/infer-session", params=params)
    output = _ask(c, runner, data)
    if as_json:
        print(json.dumps(output, ensure_ascii=False))
        return
    for item in output if isinstance(output, list) else [output]:
        print(_line(item))


def _split_target(target: str, checkpoint: str | None) -> tuple[str, str | None]:
    parts = target.split("/")
    if len(parts) >= 4 and checkpoint is None:
        return "/".join(parts[:3]), "/".join(parts[3:])
    parse_session_name(target)  # a clear error for a malformed name
    return target, checkpoint


def _ask(c, runner: dict, data):
    deadline = time.monotonic() + INFER_START_WAIT
    with render.err_console.status(f"Loading the model in {runner['name']}…"):
        while True:
            resp = c.http.post(session_path(runner["name"]) + "/infer", json={"data": data})
            if resp.status_code == 409 and "still loading" in resp.text and time.monotonic() < deadline:
                continue  # the server waited 30 s already; ask again
            from .connection import check

            check(resp)
            return resp.json()["output"]


def _line(item) -> str:
    """Strings as they are; NSML's (probability, prediction) pairs as the prediction; else JSON."""
    if isinstance(item, str):
        return item
    if isinstance(item, list) and len(item) == 2 and isinstance(item[0], (int, float)) and not isinstance(item[0], bool):
        return _line(item[1])
    return json.dumps(item, ensure_ascii=False)


def _stop_infer(c, session: str, checkpoint: str | None) -> None:
    running = [s for s in c.get("/api/sessions") if s["kind"] == "infer" and s["source"] == session
               and (checkpoint is None or s["source_checkpoint"] == checkpoint)]
    if not running:
        raise CliError(f"No infer session of {session}{'/' + checkpoint if checkpoint else ''} is running.")
    for s in running:
        c.post(session_path(s["name"]) + "/stop")
        render.console.print(f"Infer session {s['name']} is stopped")


def board(
    name: str = typer.Argument(..., help="Dataset name."),
    every: bool = typer.Option(False, "--all", help="Every submission, not just each user's best."),
    archived: bool = typer.Option(False, "--archived", help="The archived submissions: scored another way (an earlier metric or test split) and not scorable again."),
    json_out: bool = typer.Option(False, "-j", "--json", help="Print JSON."),
):
    """Show a dataset's leaderboard: each user's best score (or --all submissions).

    Only scores computed the board's current way are ranked: after a metric change the kept
    predictions are scored again, and what cannot be is archived (--archived)."""
    data = api().get(f"/api/datasets/{name}/board", params={"all": every})
    if json_out:
        return render.as_json(data)
    if archived:
        _archived(data)
        return
    order = "Descending" if data["order"] == "desc" else "Ascending"
    render.console.print(f"{data['dataset']} · {data['metric']} · {order}" + (" · all submissions" if every else ""))
    if not data["rows"]:
        render.console.print("No scored submissions yet: nsml submit SESSION CHECKPOINT")
    else:
        render.table(["Rank", "User", "Score", "Session", "Checkpoint", "Count", "Time"],
                     [[r["rank"], r["owner"], render.value(r["score"]), r["session"] + (" (removed)" if r.get("removed") else ""),
                       r["checkpoint"], r["count"], render.ago(r["created"])] for r in data["rows"]])
    if n := data.get("rescoring"):
        render.console.print(f"{render.plural(n, 'earlier submission')} {'is' if n == 1 else 'are'} being scored again with "
                             f"{data['metric']}; shown once scored.")
    if n := len(data.get("archived", [])):
        render.console.print(f"{render.plural(n, 'submission')} scored another way {'is' if n == 1 else 'are'} archived, not ranked: "
                             f"nsml dataset board --archived {data['dataset']}")


def _archived(data: dict) -> None:
    rows = data.get("archived", [])
    render.console.print(f"{data['dataset']} · archived: scored another way than {data['metric']}, never ranked")
    if not rows:
        render.console.print("No archived submissions.")
        return
    render.table(["User", "Score", "Scored with", "Session", "Checkpoint", "Why", "Time"],
                 [[r["owner"], render.value(r["score"]), r["scored_with"] or "?", r["session"], r["checkpoint"], r["reason"],
                   render.ago(r["created"])] for r in rows])


def register(app: typer.Typer, dataset_app: typer.Typer) -> None:
    app.command("fork")(fork)
    app.command("resume")(resume)
    app.command("pause")(pause)
    app.command("submit")(submit)
    app.command("infer")(infer)
    dataset_app.command("board")(board)
