"""The `nsml` command line."""

import os
import sys

import typer
from rich.text import Text

from nsml.core.errors import NsmlError

from . import accounts, automl, datasets, interactive, models, relaunch, server, sessions, usage, web
from .render import err_console
from .usage import ClickException, NoArgsIsHelpError, UsageError

usage.install()  # classic help: SESSION, [PATH], no <bool> (see usage.py)

app = typer.Typer(
    name="nsml",
    help="NSML: push datasets, run training code as sessions, watch logs and metrics, keep checkpoints.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
    pretty_exceptions_enable=False,
)
app.add_typer(datasets.app, name="dataset")
app.add_typer(models.app, name="model")
app.add_typer(server.app, name="server")
app.add_typer(automl.app, name="automl")
sessions.register(app)
relaunch.register(app, datasets.app)
interactive.register(app)
accounts.register(app)
app.command("login")(server.login)
app.command("logout")(server.logout)
app.command("web")(web.web)
app.command("credit")(server.credit)
app.command("usage")(server.usage)


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
def _root(version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True, help="Show the version and the server in use.")):
    pass


def command():
    """The whole command tree as Click runs it, with its help text unwrapped."""
    return usage.polish(typer.main.get_command(app))


def main() -> None:
    code = 0
    try:
        # standalone_mode=False: usage errors come here as exceptions, to be printed as one line.
        result = command().main(prog_name="nsml", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except NoArgsIsHelpError as exc:  # `nsml` or `nsml dataset` alone: the list of commands
        sys.stdout.write(exc.format_message())
        code = 0
    except UsageError as exc:
        err_console.print(Text.assemble(("nsml:", "red"), f" {usage.one_line(exc)}"))
        code = exc.exit_code  # 2, as for every Unix tool's usage errors
    except ClickException as exc:
        err_console.print(Text.assemble(("nsml:", "red"), f" {exc.format_message()}"))
        code = exc.exit_code
    except typer.Abort:
        err_console.print(Text.assemble(("nsml:", "red"), " aborted"))
        code = 1
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
