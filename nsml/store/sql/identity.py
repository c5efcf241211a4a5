"""Users, teams, API tokens, dataset grants and the audit table in SQL.

Passwords arrive hashed (nsml.server.passwords, argon2) and tokens as the token itself, stored
only as its SHA-256: the store never holds a secret it could leak.
"""

import hashlib
import time

from sqlalchemy import delete, func, select

from nsml.core import naming
from nsml.core.entities import AuditEntry, Team, Token, User
from nsml.core.errors import AlreadyExists, Conflict, NotFound, not_found
from nsml.core.policy import Actor

from .models import AuditRow, DatasetGrantRow, DatasetRow, TeamMemberRow, TeamRow, TokenRow, UserRow

LOCAL_LABEL = "local"  # the token in NSML_HOME/token, replaced when that file is


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class IdentityMixin:
    # -- users ----------------------------------------------------------------------------
    def add_user(self, name: str, token: str | None = None, *, password_hash: str = "", admin: bool = False,
                 exist_ok: bool = True) -> User:
        """The user NAME (made if missing; `admin`/`password_hash` set when made or given).
        `token`: their 'local' token becomes this one (the server's own user, the tests)."""
        naming.check_owner(name)
        with self._write() as orm:
            row = orm.scalar(select(UserRow).where(UserRow.name == name))
            if row is None:
                row = UserRow(name=name, token_sha256=None, created=time.time(), password_hash=password_hash,
                              admin=admin, default_team="")
                orm.add(row)
                orm.flush()
            elif not exist_ok:
                raise AlreadyExists(f"User '{name}' already exists.")
            else:
                if password_hash:
                    row.password_hash = password_hash
                if admin:
                    row.admin = True
            if token is not None:
                orm.execute(delete(TokenRow).where(TokenRow.user_id == row.id, TokenRow.label == LOCAL_LABEL))
                orm.flush()
                orm.add(TokenRow(user_id=row.id, sha256=token_hash(token), label=LOCAL_LABEL, created=time.time()))
            return self._user(orm, row)

    def get_user(self, name: str) -> User:
        with self._read() as orm:
            return self._user(orm, self._user_row(orm, name))

    def list_users(self) -> list[User]:
        with self._read() as orm:
            return [self._user(orm, r) for r in orm.scalars(select(UserRow).order_by(UserRow.name))]

    def user_count(self) -> int:
        with self._read() as orm:
            return orm.scalar(select(func.count()).select_from(UserRow)) or 0

    def remove_user(self, name: str) -> None:
        """Their tokens and memberships go; what they own (sessions, datasets) stays, under their name."""
        with self._write() as orm:
            row = self._user_row(orm, name)
            orm.execute(delete(TokenRow).where(TokenRow.user_id == row.id))
            orm.execute(delete(TeamMemberRow).where(TeamMemberRow.user_id == row.id))
            orm.delete(row)

    def password_hash(self, name: str) -> str | None:
        with self._read() as orm:
            return orm.scalar(select(UserRow.password_hash).where(UserRow.name == name))

    def set_password_hash(self, name: str, password_hash: str) -> None:
        with self._write() as orm:
            self._user_row(orm, name).password_hash = password_hash

    def user_for_token(self, token: str) -> str | None:
        actor = self.actor_for_token(token)
        return actor[0].name if actor else None

    def actor_for_token(self, token: str, now: float | None = None) -> tuple[Actor, int] | None:
        """(who holds this token, its id) while it is neither revoked nor expired."""
        now = time.time() if now is None else now
        with self._read() as orm:
            found = orm.execute(
                select(UserRow, TokenRow).join(TokenRow, TokenRow.user_id == UserRow.id)
                .where(TokenRow.sha256 == token_hash(token))
            ).first()
            if found is None:
                return None
            user, tok = found
            if tok.revoked is not None or (tok.expires is not None and tok.expires <= now):
                return None
            return Actor(user.name, bool(user.admin), frozenset(self._teams_of(orm, user.id))), tok.id

    def actor(self, name: str) -> Actor:
        with self._read() as orm:
            row = self._user_row(orm, name)
            return Actor(row.name, bool(row.admin), frozenset(self._teams_of(orm, row.id)))

    # -- tokens ---------------------------------------------------------------------------
    def add_token(self, user: str, token: str, label: str, expires: float | None) -> Token:
        with self._write() as orm:
            row = TokenRow(user_id=self._user_row(orm, user).id, sha256=token_hash(token), label=label,
                           created=time.time(), expires=expires)
            orm.add(row)
            orm.flush()
            return _token(row)

    def list_tokens(self, user: str) -> list[Token]:
        with self._read() as orm:
            uid = self._user_row(orm, user).id
            return [_token(r) for r in orm.scalars(select(TokenRow).where(TokenRow.user_id == uid).order_by(TokenRow.id))]

    def revoke_token(self, user: str, token_id: int) -> Token:
        with self._write() as orm:
            uid = self._user_row(orm, user).id
            row = orm.scalar(select(TokenRow).where(TokenRow.id == token_id, TokenRow.user_id == uid))
            if row is None:
                raise NotFound(f"{user} has no token {token_id}; `nsml token ls` lists them.")
            if row.revoked is None:
                row.revoked = time.time()
            return _token(row)

    def touch_token(self, token_id: int, audit_every: float = 3600.0) -> None:
        """Record a use (called once per cache period per token, by the server's auth); the audit
        table gets a 'token use' row when the token was not used for `audit_every` seconds."""
        now = time.time()
        with self._write() as orm:
            row = orm.get(TokenRow, token_id)
            if row is None:
                return
            if row.last_used is None or now - row.last_used >= audit_every:
                user = orm.get(UserRow, row.user_id)
                orm.add(AuditRow(at=now, actor=user.name if user else "?", action="token use",
                                 target=f"token {row.id}", detail=row.label))
            row.last_used = now

    # -- teams ----------------------------------------------------------------------------
    def add_team(self, name: str, owner: str) -> Team:
        naming.check_owner(name)
        with self._write() as orm:
            if orm.scalar(select(TeamRow).where(TeamRow.name == name)) is not None:
                raise AlreadyExists(f"Team '{name}' already exists.")
            user = self._user_row(orm, owner)
            team = TeamRow(name=name, owner=owner, created=time.time())
            orm.add(team)
            orm.flush()
            orm.add(TeamMemberRow(team_id=team.id, user_id=user.id))
            if not user.default_team:
                user.default_team = name
            return self._team(orm, team)

    def join_team(self, team: str, user: str) -> Team:
        with self._write() as orm:
            row = self._team_row(orm, team)
            member = self._user_row(orm, user)
            if orm.get(TeamMemberRow, (row.id, member.id)) is not None:
                raise Conflict(f"{user} is already a member of team {team}.")
            orm.add(TeamMemberRow(team_id=row.id, user_id=member.id))
            if not member.default_team:
                member.default_team = team
            orm.flush()
            return self._team(orm, row)

    def get_team(self, name: str) -> Team:
        with self._read() as orm:
            return self._team(orm, self._team_row(orm, name))

    def list_teams(self) -> list[Team]:
        with self._read() as orm:
            return [self._team(orm, r) for r in orm.scalars(select(TeamRow).order_by(TeamRow.name))]

    # -- dataset grants -------------------------------------------------------------------
    def grant_dataset(self, name: str, grantee: str, grant: bool = True) -> None:
        """Let `grantee` ('user:NAME' or 'team:NAME') read private dataset NAME (grant=False: no longer)."""
        kind, _, who = grantee.partition(":")
        with self._write() as orm:
            dataset_id = orm.scalar(select(DatasetRow.id).where(DatasetRow.name == name))
            if dataset_id is None:
                raise NotFound(f"Dataset '{name}' was not found.")
            if kind == "user":
                self._user_row(orm, who)
            else:
                self._team_row(orm, who)
            existing = orm.get(DatasetGrantRow, (dataset_id, grantee))
            if grant and existing is None:
                orm.add(DatasetGrantRow(dataset_id=dataset_id, grantee=grantee))
            elif not grant and existing is not None:
                orm.delete(existing)

    def _dataset_grants(self, orm, dataset_ids: list[int]) -> dict[int, tuple[str, ...]]:
        out: dict[int, list[str]] = {}
        if dataset_ids:
            for did, grantee in orm.execute(select(DatasetGrantRow.dataset_id, DatasetGrantRow.grantee)
                                            .where(DatasetGrantRow.dataset_id.in_(dataset_ids))
                                            .order_by(DatasetGrantRow.grantee)):
                out.setdefault(did, []).append(grantee)
        return {k: tuple(v) for k, v in out.items()}

    # -- audit ----------------------------------------------------------------------------
    def audit(self, actor: str, action: str, target: str = "", detail: str = "") -> None:
        with self._write() as orm:
            orm.add(AuditRow(at=time.time(), actor=actor[:64], action=action[:32], target=target[:256], detail=detail[:4096]))

    def audit_log(self, limit: int = 100, actor: str | None = None, action: str | None = None) -> list[AuditEntry]:
        with self._read() as orm:
            q = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
            if actor:
                q = q.where(AuditRow.actor == actor)
            if action:
                q = q.where(AuditRow.action == action)
            return [AuditEntry(r.at, r.actor, r.action, r.target, r.detail) for r in orm.scalars(q)]

    # -- helpers --------------------------------------------------------------------------
    @staticmethod
    def _user_row(orm, name: str) -> UserRow:
        row = orm.scalar(select(UserRow).where(UserRow.name == name))
        if row is None:
            raise not_found("User", name, [])
        return row

    @staticmethod
    def _team_row(orm, name: str) -> TeamRow:
        row = orm.scalar(select(TeamRow).where(TeamRow.name == name))
        if row is None:
            raise not_found("Team", name, [])
        return row

    @staticmethod
    def _teams_of(orm, user_id: int) -> list[str]:
        return list(orm.scalars(select(TeamRow.name).join(TeamMemberRow, TeamMemberRow.team_id == TeamRow.id)
                                .where(TeamMemberRow.user_id == user_id).order_by(TeamRow.name)))

    def _user(self, orm, row: UserRow) -> User:
        return User(row.name, bool(row.admin), row.default_team, tuple(self._teams_of(orm, row.id)), row.created,
                    bool(row.password_hash))

    @staticmethod
    def _team(orm, row: TeamRow) -> Team:
        members = orm.scalars(select(UserRow.name).join(TeamMemberRow, TeamMemberRow.user_id == UserRow.id)
                              .where(TeamMemberRow.team_id == row.id).order_by(UserRow.name))
        return Team(row.name, row.owner, tuple(members), row.created)


def _token(row: TokenRow) -> Token:
    return Token(row.id, row.label, row.created, row.expires, row.last_used, row.revoked)
