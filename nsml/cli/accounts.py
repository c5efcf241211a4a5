"""nsml user add | ls | rm | passwd, nsml team add | join | ls, nsml token ls | new | revoke, nsml audit.

A team server's accounts (docs/security.md): its admins add users and read the audit table; any
user makes teams and their own tokens. Passwords are asked on a terminal (twice where one is set)
and read from stdin's first line otherwise, so scripts and tests can feed them.
"""

import sys
import time

import typer

from . import render
from .connection import CliError, api

user_app = typer.Typer(help="Add, list and remove the users of a team server, and set passwords (admins; `passwd` also for yourself).", no_args_is_help=True)
team_app = typer.Typer(help="Make teams, add members, list them. Team members read each other's team-visible sessions.", no_args_is_help=True)
token_app = typer.Typer(help="Your API tokens: list them, make one for a script, revoke one.", no_args_is_help=True)


def read_password(prompt: str = "Password", confirm: bool = False, what: str = "the password") -> str:
    """Asked (hidden) on a terminal, twice with `confirm`; else the first line of stdin."""
    if sys.stdin.isatty():
        return typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise CliError(f"No terminal to ask for {what} and nothing on stdin; type it on a terminal, or pipe it in: "
                       "echo \"$PASSWORD\" | nsml ...")
    return line


def until(ts: float | None) -> str:
    """'in 3 days', 'never', 'expired'."""
    if not ts:
        return "never"
    left = ts - time.time()
    if left <= 0:
        return "expired"
    left *= 1.001  # a token made a moment ago for 1 day expires 'in 1 day', not 'in 23 hours'
    for unit, seconds in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if left >= seconds:
            n = int(left // seconds)
            return f"in {n} {unit}{'s' if n != 1 else ''}"
    return "in under a minute"


def _how_to_log_in(url: str, name: str, token: str, password: bool) -> None:
    render.console.print(f"Their token, shown only this once: {token}")
    render.console.print("They log in with:")
    if password:
        render.console.print(f"  nsml login {url} --user {name}     (asks for the password)")
    render.console.print(f"  nsml login {url} --token {token}")


# -- users ----------------------------------------------------------------------------------------
@user_app.command("add")
def user_add(
    name: str = typer.Argument(..., help="The new user's name (letters, digits, '_' or '-'); it prefixes their sessions."),
    admin: bool = typer.Option(False, "--admin", help="Make them an admin too (they manage users and read the audit table)."),
    password: bool = typer.Option(False, "--password", help="Give them a password for `nsml login URL --user NAME` (asked twice on a terminal, else read from stdin)."),
    team: str = typer.Option(None, "--team", help="A team to put them in (their default team for `nsml run`)."),
    json_out: bool = typer.Option(False, "-j", "--json", help="Print JSON (with the token)."),
):
    """Add a user (admins only). Prints their first API token once, and how they log in with it
    (or with the password, given --password)."""
    body = {"name": name, "admin": admin}
    if password:
        body["password"] = read_password(f"Password for {name}", confirm=True, what=f"{name}'s password")
    if team:
        body["team"] = team
    c = api()
    new = c.post("/api/users", json=body)
    if json_out:
        return render.as_json(new)
    render.console.print(f"User {name} is added" + (" as an admin" if admin else "") + (f", in team {team}" if team else ""))
    _how_to_log_in(c.server.url, name, new["token"], password)


@user_app.command("ls")
def user_ls(json_out: bool = typer.Option(False, "-j", "--json", help="Print JSON.")):
    """List the users (admins only)."""
    users = api().get("/api/users")
    if json_out:
        return render.as_json(users)
    rows = [[u["name"], "admin" if u["admin"] else "", ", ".join(u["teams"]), u["default_team"],
             "yes" if u["has_password"] else "no", render.ago(u["created"])] for u in users]
    render.table(["Name", "Role", "Teams", "Default Team", "Password", "Created"], rows)


@user_app.command("rm")
def user_rm(name: str = typer.Argument(..., help="The user to remove.")):
    """Remove a user (admins only): their tokens stop working within seconds; their sessions and
    datasets stay, under their name."""
    api().delete(f"/api/users/{name}")
    render.console.print(f"User {name} is removed")


@user_app.command("passwd")
def user_passwd(name: str = typer.Argument(None, help="Whose password (default: yours; another user's: admins only).")):
    """Set a password: asked twice on a terminal, else read from stdin's first line. Tokens
    already made keep working (`nsml token revoke` ends yours)."""
    c = api()
    name = name or c.get("/api/users/me")["name"]
    secret = read_password(f"New password for {name}", confirm=True, what=f"{name}'s new password")
    c.request("PUT", f"/api/users/{name}/password", json={"password": secret})
    render.console.print(f"Password of {name} is set")


# -- teams ----------------------------------------------------------------------------------------
@team_app.command("add")
def team_add(name: str = typer.Argument(..., help="The team's name.")):
    """Make a team: you own it and are its first member."""
    team = api().post("/api/teams", json={"name": name})
    render.console.print(f"Team {team['name']} is added; add members with: nsml team join {team['name']} USER")


@team_app.command("join")
def team_join(team: str = typer.Argument(..., help="The team."), user: str = typer.Argument(..., help="The user to add to it.")):
    """Add USER to TEAM (its owner or an admin). A user's first team becomes their default one."""
    t = api().post(f"/api/teams/{team}/members", json={"user": user})
    render.console.print(f"User {user} is in team {t['name']} (members: {', '.join(t['members'])})")


@team_app.command("ls")
def team_ls(json_out: bool = typer.Option(False, "-j", "--json", help="Print JSON.")):
    """List every team with its owner and members."""
    teams = api().get("/api/teams")
    if json_out:
        return render.as_json(teams)
    render.table(["Name", "Owner", "Members", "Created"],
                 [[t["name"], t["owner"], ", ".join(t["members"]), render.ago(t["created"])] for t in teams])


# -- tokens ---------------------------------------------------------------------------------------
def _token_state(t: dict) -> str:
    if t["revoked"]:
        return "revoked"
    if t["expires"] and t["expires"] <= time.time():
        return "expired"
    return "active"


@token_app.command("ls")
def token_ls(json_out: bool = typer.Option(False, "-j", "--json", help="Print JSON.")):
    """List your tokens (never the tokens themselves, which the server does not keep)."""
    tokens = api().get("/api/tokens")
    if json_out:
        return render.as_json(tokens)
    rows = [[t["id"], t["label"], render.ago(t["created"]), until(t["expires"]) if not t["revoked"] else "",
             render.ago(t["last_used"]) or "never", _token_state(t)] for t in tokens]
    render.table(["ID", "Label", "Created", "Expires", "Last Used", "Status"], rows)


@token_app.command("new")
def token_new(
    label: str = typer.Option("", "--label", "-l", help="What it is for, shown by `nsml token ls`."),
    days: float = typer.Option(None, "--days", help="Days it is valid (default: it never expires; at most 3650)."),
    json_out: bool = typer.Option(False, "-j", "--json", help="Print JSON (with the token)."),
):
    """Make an API token for a script or another machine; it is shown only this once."""
    c = api()
    body = {"label": label}
    if days is not None:
        body["days"] = days
    new = c.post("/api/tokens", json=body)
    if json_out:
        return render.as_json(new)
    expiry = f"expires {until(new['expires'])}" if new["expires"] else "never expires"
    render.console.print(f"Token {new['id']}" + (f" ({label})" if label else "") + f" {expiry}; it is shown only this once:")
    render.console.print(new["token"])
    render.console.print(f"Use it with: nsml login {c.server.url} --token TOKEN, or NSML_SERVER_URL={c.server.url} NSML_TOKEN=TOKEN nsml ...")


@token_app.command("revoke")
def token_revoke(token_id: int = typer.Argument(..., help="The token's ID (see `nsml token ls`).", metavar="ID")):
    """Revoke one of your tokens: it stops working within seconds."""
    t = api().delete(f"/api/tokens/{token_id}")
    render.console.print(f"Token {t['id']}" + (f" ({t['label']})" if t["label"] else "") + " is revoked")


# -- audit ----------------------------------------------------------------------------------------
def audit(
    user: str = typer.Option(None, "-u", "--user", help="Only what this user did."),
    action: str = typer.Option(None, "-a", "--action", help="Only this action, e.g. login, stop, grant, revoke, user add, team join."),
    last: int = typer.Option(100, "-n", "--last", help="The last N entries."),
    json_out: bool = typer.Option(False, "-j", "--json", help="Print JSON."),
):
    """Who did what on the server, newest first (admins only): logins and failed ones, stops,
    removals, submits, forks, grants, users, teams and tokens."""
    params = {"limit": last}
    params.update({k: v for k, v in {"user": user, "action": action}.items() if v})
    entries = api().get("/api/audit", params=params)
    if json_out:
        return render.as_json(entries)
    render.table(["When", "User", "Action", "Target", "Detail"],
                 [[render.ago(e["at"]), e["actor"], e["action"], e["target"], e["detail"]] for e in entries])


def register(app: typer.Typer) -> None:
    app.add_typer(user_app, name="user")
    app.add_typer(team_app, name="team")
    app.add_typer(token_app, name="token")
    app.command("audit")(audit)
