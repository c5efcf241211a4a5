"""Who may do what: the one authorisation policy of the platform (docs/security.md).

`can(actor, action, resource)` is a pure function of the three. Every API route reaches a
session or dataset only through a dependency that asks it (nsml.server.access); listings use
`session_scope`/`dataset_scope`, the same rules in the shape a database query can apply, and a
contract test checks that the two agree on every combination.

Sessions: the owner and admins may do everything; members of the session's team may READ a
`team`-visible one, every user a `public` one; only the owner (or an admin) CONTROLs it: stop,
remove, memo, fork, resume, submit, infer, exec, sh, checkpoint removal.
Datasets: a public one is READ (listed, pulled, used, its board shown) by every user, a private
one by its owner, admins, and the users and teams it was granted to (`nsml dataset change -u/-t`);
only its owner or an admin CONTROLs it: push -f, change, remove, grant.
"""

from dataclasses import dataclass, field
from enum import Enum

from .errors import Forbidden, NotFound

VISIBILITIES = ("private", "team", "public")
DEFAULT_VISIBILITY = "team"


class Action(str, Enum):
    READ = "read"        # see it: listings, logs, graphs, code, outputs, checkpoints, boards
    CONTROL = "control"  # change it or spend its owner's resources through it


@dataclass(frozen=True)
class Actor:
    """Who calls: a user (by token or login cookie), with the teams they belong to."""

    name: str
    admin: bool = False
    teams: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class SessionScope:
    """The sessions an actor may read, as a query can select them: all of them, or those whose
    owner is `owner`, whose visibility is public, or team-visible with a team in `teams`."""

    everything: bool
    owner: str = ""
    teams: frozenset[str] = frozenset()


@dataclass(frozen=True)
class DatasetScope:
    """The datasets an actor may read: all, or public ones, their own, and those granted to
    `grantees` (entries 'user:NAME' and 'team:NAME', as stored)."""

    everything: bool
    owner: str = ""
    grantees: frozenset[str] = frozenset()


def grantees(actor: Actor) -> frozenset[str]:
    """How grants to this actor are written: the user and each of their teams."""
    return frozenset({f"user:{actor.name}"} | {f"team:{t}" for t in actor.teams})


def can(actor: Actor, action: Action, resource) -> bool:
    """May `actor` do `action` to `resource` (a core Session or Dataset)?"""
    if actor.admin or resource.owner == actor.name:
        return True
    if action is not Action.READ:
        return False
    if hasattr(resource, "visibility"):  # a session
        if resource.visibility == "public":
            return True
        return resource.visibility == "team" and bool(resource.team) and resource.team in actor.teams
    if not resource.private:  # a dataset
        return True
    return bool(grantees(actor) & set(resource.grants))


def require(actor: Actor, action: Action, resource, what: str):
    """`resource` if allowed; else NotFound for one the actor may not even read (its existence
    is not revealed), Forbidden for one they read but may not change. `what` names it
    ("Dataset 'digits'", "Session alice/digits/3")."""
    if can(actor, action, resource):
        return resource
    if action is not Action.READ and can(actor, Action.READ, resource):
        raise Forbidden(f"{what} belongs to {resource.owner}; only they or an admin may do that.")
    raise NotFound(f"{what} does not exist.")


def session_scope(actor: Actor) -> SessionScope:
    return SessionScope(everything=True) if actor.admin else SessionScope(False, actor.name, actor.teams)


def dataset_scope(actor: Actor) -> DatasetScope:
    return DatasetScope(everything=True) if actor.admin else DatasetScope(False, actor.name, grantees(actor))


def check_visibility(value: str) -> str:
    from .errors import InvalidInput

    if value not in VISIBILITIES:
        raise InvalidInput(f"Visibility must be one of {', '.join(VISIBILITIES)}, not {value!r}.")
    return value


def require_admin(actor: Actor, what: str) -> None:
    """Users, other people's tokens and the audit table are the admins' (`what`: the action)."""
    if not actor.admin:
        raise Forbidden(f"Only an admin may {what}.")


def may_manage_team(actor: Actor, team_owner: str) -> bool:
    """Who adds members to a team: its owner, or an admin."""
    return actor.admin or actor.name == team_owner
