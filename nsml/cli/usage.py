"""How the command line presents itself: --help pages and usage errors.

Typer's own help shows `<bool>` after every flag, `<str>` after every argument and `{session}`
for a required one, and keeps the line breaks of docstrings wherever they were wrapped in the
source. NSML's users expect classic Unix help: `SESSION`, `[PATH]`, `-n, --tail INTEGER`, and
paragraphs that the terminal wraps. These few overrides give that, for this process only.

A usage error (a missing argument, an unknown option) is one `nsml: ...` line like every other
error, with the usage and a pointer to --help, not a framed box.
"""

import inspect

import typer.core

try:  # newer Typer runs a vendored copy of Click and raises its exceptions
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, NoSuchOption, UsageError
except ImportError:  # older Typer: Click itself
    from click.exceptions import ClickException, NoArgsIsHelpError, NoSuchOption, UsageError

_TYPE_WORDS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "path": "PATH", "bool": "BOOLEAN"}


def _argument_name(self) -> str:
    return (self.metavar or self.name or "").upper()


def _argument_usage(self) -> str:
    name = _argument_name(self)
    name = name if self.required else f"[{name}]"
    return name + ("..." if self.nargs != 1 else "")


def _option_type(self, ctx) -> str | None:
    if self.is_flag or self.count:
        return None  # a flag takes no value: nothing to show
    if self.metavar is not None:
        return self.metavar
    label = self.display_type(ctx).strip("<>")  # Typer's 'int', 'str', 'path', 'list[str]', 'a|b'
    if label.startswith("list[") and label.endswith("]"):
        label = label[5:-1]
    return _TYPE_WORDS.get(label.lower(), label.upper() if "|" not in label else label)


def install() -> None:
    """Older Typer versions print classic help already; only the newer one needs this."""
    arg, opt = typer.core.TyperArgument, typer.core.TyperOption
    if hasattr(arg, "_usage_display_name") and hasattr(arg, "display_name_raw"):
        arg.display_name_raw = property(_argument_name)
        arg._usage_display_name = _argument_usage
        arg.display_type_rich = lambda self, ctx: None
    if hasattr(opt, "display_type_rich") and hasattr(opt, "display_type"):
        opt.display_type_rich = _option_type


def unwrap(text: str | None) -> str | None:
    """Docstring paragraphs as single lines, so help wraps at the terminal's width, not at
    the source's. Paragraphs are separated by blank lines; indented lines stay as they are."""
    if not text:
        return text
    out = []
    for para in inspect.cleandoc(text).split("\n\n"):
        lines = para.splitlines()
        if any(line.startswith((" ", "\b", "$ ")) for line in lines):
            out.append(para)
        else:
            out.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(out)


def polish(command):
    """Unwrap the help of `command`, its parameters and all its subcommands (in place)."""
    command.help = unwrap(command.help)
    command.short_help = unwrap(command.short_help)
    for param in command.params:
        if getattr(param, "help", None):
            param.help = unwrap(param.help)
    for sub in getattr(command, "commands", {}).values():
        polish(sub)
    return command


def one_line(exc: UsageError) -> str:
    """'No such option --fo; did you mean --follow? Usage: nsml logs [OPTIONS] SESSION (nsml logs --help)'."""
    ctx = exc.ctx
    if isinstance(exc, NoSuchOption):
        where = ctx.command_path if ctx else "nsml"
        message = f"{where} has no option {exc.option_name}"
        if exc.possibilities:
            message += f"; did you mean {' or '.join(sorted(exc.possibilities))}?"
    else:
        message = exc.format_message().strip()
    message = " ".join(message.split())
    message += "" if message.endswith((".", "?")) else "."
    if ctx is None:
        return message
    usage = " ".join(ctx.command.collect_usage_pieces(ctx))
    return f"{message} Usage: {ctx.command_path} {usage} (see {ctx.command_path} --help)."
