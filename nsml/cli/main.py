"""The `nsml` command line."""

import os
import sys

import typer
from rich.text import Text

from nsml.core.errors import NsmlError

from . import datasets, models, relaunch, server, sessions, web
from .render import err_console

app = typer.Typer(
    name="nsml",
    help="NSML: push datasets, run training code as sessions, watch logs and metrics, keep checkpoints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(datasets.app, name="dataset")
app.add_typer(models.app, name="model")
app.add_typer(server.app, name="server")
sessions.register(app)
relaunch.register(app, datasets.app)
app.command("login")(server.login)
app.command("logout")(server.logout)
app.command("web")(web.web)


def _version(value: bool):
    if value:
        from nsml import __version__
        from .connection import resolve

        print(f"nsml {__version__}")
        try:
            s = resolve(start=False)
            print(f"Preconfigured connection: {s.url}")
        except NsmlError:
            print("Preconfigured connection: local (starts on first use)")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and the server in use.")):
    pass


def main() -> None:
    code = 0
    try:
        app()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except NsmlError as exc:
        err_console.print(Text.assemble(("nsml:", "red"), f" {exc}"))
        code = 1
    except KeyboardInterrupt:
        err_console.print("interrupted")
        code = 130
    # Skip the interpreter's teardown (0.1-0.5 s of module finalisation on a busy machine): every
    # command has finished its work and closed its files by now; only the streams need flushing.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
