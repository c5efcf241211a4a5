"""nsml exec | sh: look inside a running session, through the channel its supervisor holds."""

import sys

import typer

from .connection import CliError, api, session_path

# Everything after SESSION belongs to the expression or the command, dashes included
# (`nsml sh S ls -la`); options go before SESSION.
_REST = {"allow_interspersed_args": False}


def exec_(
    session: str = typer.Argument(..., help="A running session, e.g. alice/digits/3."),
    code: list[str] = typer.Argument(..., metavar="EXPR", help="An expression or statements; several words are joined with spaces."),
    timeout: float = typer.Option(30.0, "-t", "--timeout", help="Seconds the code may run in the session."),
):
    """Evaluate Python in the scope a running session registered.

    The scope is the one the script gave nsml.report(scope=locals()) or
    nsml.paused(scope=locals()), e.g. nsml exec alice/digits/3 config. An expression prints its repr; statements print what they print (nsml exec S 'print(epoch)');
    an exception prints its traceback on stderr and exits with status 1. Assignments stay
    visible to later nsml exec calls."""
    if timeout <= 0 or timeout > 600:
        raise CliError("--timeout must be more than 0 and at most 600 seconds.")
    answer = api().post(session_path(session) + "/exec", json={"code": " ".join(code), "timeout": timeout}, timeout=timeout + 30)
    sys.stdout.write(answer["output"])
    sys.stdout.flush()
    if not answer["ok"]:
        sys.stderr.write(answer["error"].rstrip("\n") + "\n")
        raise typer.Exit(1)


def sh(
    session: str = typer.Argument(..., help="A running session, e.g. alice/digits/3."),
    command: list[str] = typer.Argument(..., metavar="CMD", help="The command; its words are joined with spaces and run by /bin/sh, as ssh does."),
    timeout: float = typer.Option(60.0, "-t", "--timeout", help="Seconds before the command is ended."),
):
    """Run a shell command in a running session's working directory (/app).

    E.g. nsml sh alice/digits/3 ls -la; prints its output and exits with its exit code. Quote what the local shell must not expand: nsml sh S 'ls *.pt | wc -l'."""
    if timeout <= 0 or timeout > 600:
        raise CliError("--timeout must be more than 0 and at most 600 seconds.")
    answer = api().post(session_path(session) + "/sh", json={"command": " ".join(command), "timeout": timeout}, timeout=timeout + 30)
    sys.stdout.write(answer["stdout"])
    sys.stdout.flush()
    sys.stderr.write(answer["stderr"])
    sys.stderr.flush()
    code = answer["exit_code"]
    if code is None or code < 0:  # ended by a signal (the time limit, say): as a shell reports it
        code = 128 + (-code if code else 9)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("exec", context_settings=_REST)(exec_)
    app.command("sh", context_settings=_REST)(sh)
