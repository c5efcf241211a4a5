"""Which sandbox sessions run in, decided once when a server starts (docs/security.md).

The embedded single-user server must work on any machine with zero setup: where no sandbox
can run it warns once and runs sessions unconfined (`ps` and the web show it). A team server
holds other people's data: it refuses to start without a sandbox unless `--sandbox none` is
given on purpose.
"""

from nsml.core.errors import InvalidInput
from nsml.scheduler import bwrap

CHOICES = ("auto", "bwrap", "none")


def choose(requested: str, team: bool) -> tuple[bwrap.Mode, str]:
    """(the mode, a line for the operator: what is in force, or a warning)."""
    if requested not in CHOICES:
        raise InvalidInput(f"--sandbox must be one of {', '.join(CHOICES)}, not {requested!r}.")
    if requested == "none":
        mode = bwrap.Mode("none", "turned off with --sandbox none")
        return mode, "Sandbox: none (--sandbox none): sessions run unconfined, as this server's OS user."
    mode = bwrap.probe()
    if mode.sandboxed:
        return mode, f"Sandbox: {mode.name} ({mode.detail})."
    if requested == "bwrap" or team:
        raise InvalidInput(
            f"No session sandbox can run here: {mode.detail}. A team server will not run other people's code "
            "unconfined; install bubblewrap, or start it with --sandbox none to accept that."
        )
    return mode, (f"Warning: no session sandbox here ({mode.detail}); sessions run unconfined as your own "
                  "OS user (--sandbox none). See docs/security.md.")
