"""Users, teams, API tokens, logins, dataset grants and the audit table (docs/security.md).

The server's own user (the one whose token is NSML_HOME/token) is its first admin. Admins add
and remove users and read the audit table; any user makes teams (and owns them), and a team's
owner or an admin adds members. A token is shown once, when it is made; the store keeps only
its SHA-256. Passwords are hashed with argon2 (nsml.server.passwords).
"""

import secrets
import time

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from nsml.core import naming
from nsml.core.entities import Dataset, Team, Token, User
from nsml.core.errors import Forbidden, InvalidInput, Unauthorized
from nsml.core.policy import Actor, may_manage_team, require_admin

from .. import auth, passwords
from ..access import controlled_dataset
from ..auth import current_actor
from ..state import state

router = APIRouter(prefix="/api", tags=["users, teams, tokens"])
MAX_TOKEN_DAYS = 3650
DEFAULT_TOKEN_DAYS = 90  # a login's token; `nsml token new --days` chooses another


class UserPublic(BaseModel):
    name: str
    admin: bool
    default_team: str
    teams: list[str]
    created: float
    has_password: bool

    @classmethod
    def of(cls, u: User) -> "UserPublic":
        return cls(name=u.name, admin=u.admin, default_team=u.default_team, teams=list(u.teams), created=u.created,
                   has_password=u.has_password)


class TeamPublic(BaseModel):
    name: str
    owner: str
    members: list[str]
    created: float

    @classmethod
    def of(cls, t: Team) -> "TeamPublic":
        return cls(name=t.name, owner=t.owner, members=list(t.members), created=t.created)


class NewToken(BaseModel):
    """A token, shown this once."""

    user: str
    token: str
    id: int
    expires: float | None


class NewUser(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    password: str | None = Field(default=None, max_length=passwords.MAX_LENGTH)
    admin: bool = False
    team: str | None = Field(default=None, max_length=64)


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=passwords.MAX_LENGTH)
    label: str = Field(default="login", max_length=64)
    days: float = Field(default=DEFAULT_TOKEN_DAYS, gt=0, le=MAX_TOKEN_DAYS)


class TokenRequest(BaseModel):
    label: str = Field(default="", max_length=64)
    days: float | None = Field(default=None, gt=0, le=MAX_TOKEN_DAYS)  # None: never expires


class PasswordChange(BaseModel):
    password: str = Field(min_length=1, max_length=passwords.MAX_LENGTH)


class TeamRequest(BaseModel):
    name: str = Field(min_length=1, max_length=64)


class MemberRequest(BaseModel):
    user: str = Field(min_length=1, max_length=64)


class GrantRequest(BaseModel):
    """Let a user or a team read a private dataset (revoke: no longer). Exactly one of user, team."""

    user: str | None = Field(default=None, max_length=64)
    team: str | None = Field(default=None, max_length=64)
    revoke: bool = False


class AuditPublic(BaseModel):
    at: float
    actor: str
    action: str
    target: str
    detail: str


def issue_token(st, user: str, label: str, days: float | None) -> NewToken:
    token = secrets.token_urlsafe(32)
    expires = time.time() + days * 86400 if days else None
    row = st.store.add_token(user, token, label, expires)
    return NewToken(user=user, token=token, id=row.id, expires=expires)


# -- login ----------------------------------------------------------------------------------------
@router.post("/login", response_model=NewToken)
async def login(body: Login, request: Request) -> NewToken:
    """A new API token for a username and password (what `nsml login URL` and the web's login
    page use). A wrong name or password gets the same answer, in the same time."""
    st = state(request)
    stored = st.store.password_hash(body.username)
    if stored:
        ok = await run_in_threadpool(passwords.verify, body.password, stored)
    else:
        await run_in_threadpool(passwords.burn, body.password)
        ok = False
    if not ok:
        st.audit(body.username, "login failed", body.username)
        raise Unauthorized("Wrong username or password.")
    st.audit(body.username, "login", body.username, body.label)
    return issue_token(st, body.username, body.label, body.days)


# -- users ----------------------------------------------------------------------------------------
@router.get("/users", response_model=list[UserPublic])
def list_users(request: Request, actor: Actor = Depends(current_actor)) -> list[UserPublic]:
    require_admin(actor, "list users")
    return [UserPublic.of(u) for u in state(request).store.list_users()]


@router.get("/users/me", response_model=UserPublic)
def me(request: Request, actor: Actor = Depends(current_actor)) -> UserPublic:
    return UserPublic.of(state(request).store.get_user(actor.name))


@router.post("/users", response_model=NewToken, status_code=201)
async def add_user(body: NewUser, request: Request, actor: Actor = Depends(current_actor)) -> NewToken:
    """A new user (admins only), with a first API token to hand them; `password` lets them
    `nsml login` with it instead; `team`: a team to put them in."""
    require_admin(actor, "add users")
    naming.check_owner(body.name)
    st = state(request)
    hashed = await run_in_threadpool(passwords.hash_password, body.password) if body.password else ""
    if body.team:
        st.store.get_team(body.team)
    st.store.add_user(body.name, password_hash=hashed, admin=body.admin, exist_ok=False)
    if body.team:
        st.store.join_team(body.team, body.name)
    st.audit(actor.name, "user add", body.name, "admin" if body.admin else "")
    return issue_token(st, body.name, "first", None)


@router.delete("/users/{name}")
def remove_user(name: str, request: Request, actor: Actor = Depends(current_actor)) -> dict:
    """Remove a user (admins only): their tokens stop working; what they own stays, under their name."""
    require_admin(actor, "remove users")
    if name == actor.name:
        raise InvalidInput("You cannot remove yourself; another admin can.")
    st = state(request)
    st.store.remove_user(name)
    auth.forget_cached()  # their tokens stop working on the next request
    st.audit(actor.name, "user rm", name)
    return {"removed": name}


@router.put("/users/{name}/password")
async def set_password(name: str, body: PasswordChange, request: Request, actor: Actor = Depends(current_actor)) -> dict:
    """Set a user's password: your own, or anyone's as an admin."""
    if name != actor.name:
        require_admin(actor, "set another user's password")
    st = state(request)
    st.store.get_user(name)
    st.store.set_password_hash(name, await run_in_threadpool(passwords.hash_password, body.password))
    st.audit(actor.name, "password", name)
    return {"user": name}


# -- tokens ---------------------------------------------------------------------------------------
# Token (a frozen dataclass of nsml.core.entities) is its own public shape: it never holds the token.
@router.get("/tokens", response_model=list[Token])
def list_tokens(request: Request, actor: Actor = Depends(current_actor)) -> list[Token]:
    """Your tokens (never the tokens themselves)."""
    return state(request).store.list_tokens(actor.name)


@router.post("/tokens", response_model=NewToken, status_code=201)
def new_token(body: TokenRequest, request: Request, actor: Actor = Depends(current_actor)) -> NewToken:
    st = state(request)
    st.audit(actor.name, "token new", actor.name, body.label)
    return issue_token(st, actor.name, body.label, body.days)


@router.delete("/tokens/{token_id}", response_model=Token)
def revoke_token(request: Request, token_id: int = Path(ge=1, le=2**31 - 1),
                 actor: Actor = Depends(current_actor)) -> Token:
    """Revoke one of your tokens; it stops working within seconds (the server's cache)."""
    st = state(request)
    revoked = st.store.revoke_token(actor.name, token_id)
    st.audit(actor.name, "token revoke", actor.name, str(token_id))
    auth.forget_cached()
    return revoked


# -- teams ----------------------------------------------------------------------------------------
@router.get("/teams", response_model=list[TeamPublic])
def list_teams(request: Request, actor: Actor = Depends(current_actor)) -> list[TeamPublic]:
    """Every team (names and members are no secret among a server's users)."""
    return [TeamPublic.of(t) for t in state(request).store.list_teams()]


@router.post("/teams", response_model=TeamPublic, status_code=201)
def add_team(body: TeamRequest, request: Request, actor: Actor = Depends(current_actor)) -> TeamPublic:
    """A new team, owned by (and holding) its maker."""
    st = state(request)
    team = st.store.add_team(body.name, actor.name)
    st.audit(actor.name, "team add", body.name)
    return TeamPublic.of(team)


@router.post("/teams/{team}/members", response_model=TeamPublic)
def join_team(team: str, body: MemberRequest, request: Request, actor: Actor = Depends(current_actor)) -> TeamPublic:
    """Add a user to a team: its owner or an admin."""
    st = state(request)
    found = st.store.get_team(team)
    if not may_manage_team(actor, found.owner):
        raise Forbidden(f"Only team {team}'s owner ({found.owner}) or an admin may add members.")
    joined = st.store.join_team(team, body.user)
    st.audit(actor.name, "team join", team, body.user)
    auth.forget_cached()  # the member's teams change now, not after the cache period
    return TeamPublic.of(joined)


# -- dataset grants -------------------------------------------------------------------------------
@router.post("/datasets/{name}/grants", response_model=list[str])
def grant(name: str, body: GrantRequest, request: Request, dataset: Dataset = Depends(controlled_dataset),
          actor: Actor = Depends(current_actor)) -> list[str]:
    """Let a user or team read private dataset NAME (NSML's `dataset change -u/-t`); its owner or
    an admin. Returns who has been granted it."""
    if (body.user is None) == (body.team is None):
        raise InvalidInput("Name exactly one of user or team to grant the dataset to.")
    grantee = f"user:{body.user}" if body.user else f"team:{body.team}"
    st = state(request)
    st.store.grant_dataset(dataset.name, grantee, grant=not body.revoke)
    st.audit(actor.name, "revoke" if body.revoke else "grant", dataset.name, grantee)
    return list(st.store.get_dataset(dataset.name).grants)


# -- audit ----------------------------------------------------------------------------------------
@router.get("/audit", response_model=list[AuditPublic])
def audit(request: Request, limit: int = Query(100, ge=1, le=10000), user: str | None = Query(None, max_length=64),
          action: str | None = Query(None, max_length=32), actor: Actor = Depends(current_actor)) -> list[AuditPublic]:
    """Who did what, newest first (admins only)."""
    require_admin(actor, "read the audit table")
    return [AuditPublic(**e.__dict__) for e in state(request).store.audit_log(limit, user, action)]
