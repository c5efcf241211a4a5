"""The policy (nsml.core.policy): `can` on every combination of actor and resource, and the
scopes listings use agreeing with it; the store's SQL form of the scope is checked against
`can` in tests/store/test_sql_store.py."""

import itertools

import pytest

from nsml.core.entities import Dataset, Session
from nsml.core.errors import Forbidden, NotFound
from nsml.core.policy import Action, Actor, can, dataset_scope, require, session_scope
from nsml.core.resources import Resources
from nsml.core.states import Status

OWNER = Actor("alice", teams=frozenset({"vision"}))
MEMBER = Actor("bob", teams=frozenset({"vision", "nlp"}))
STRANGER = Actor("eve", teams=frozenset({"nlp"}))
ADMIN = Actor("root", admin=True)
ACTORS = (OWNER, MEMBER, STRANGER, ADMIN)


def session(visibility: str, team: str = "vision") -> Session:
    return Session(1, "alice", "digits", 1, "main.py", "", Status.RUNNING, Resources(1, 1, 0), 0.0,
                   team=team, visibility=visibility)


def dataset(private: bool, grants=()) -> Dataset:
    return Dataset("digits", "alice", "", private, 0, 0, 0.0, 0.0, 1, False, grants=tuple(grants))


@pytest.mark.parametrize("visibility, team, readers", [
    ("private", "vision", {"alice", "root"}),
    ("team", "vision", {"alice", "bob", "root"}),
    ("team", "", {"alice", "root"}),  # a session in no team is its owner's
    ("public", "vision", {"alice", "bob", "eve", "root"}),
])
def test_sessions_are_read_by_owner_team_or_everyone_and_controlled_by_owner_and_admins(visibility, team, readers):
    s = session(visibility, team)
    assert {a.name for a in ACTORS if can(a, Action.READ, s)} == readers
    assert {a.name for a in ACTORS if can(a, Action.CONTROL, s)} == {"alice", "root"}


@pytest.mark.parametrize("private, grants, readers", [
    (False, (), {"alice", "bob", "eve", "root"}),
    (True, (), {"alice", "root"}),
    (True, ("user:eve",), {"alice", "eve", "root"}),
    (True, ("team:nlp",), {"alice", "bob", "eve", "root"}),
])
def test_datasets_are_read_when_public_or_granted_and_controlled_by_owner_and_admins(private, grants, readers):
    d = dataset(private, grants)
    assert {a.name for a in ACTORS if can(a, Action.READ, d)} == readers
    assert {a.name for a in ACTORS if can(a, Action.CONTROL, d)} == {"alice", "root"}


def test_require_hides_what_cannot_be_read_and_refuses_what_cannot_be_changed():
    assert require(OWNER, Action.CONTROL, session("private"), "Session alice/digits/1").number == 1
    with pytest.raises(NotFound, match="does not exist"):
        require(STRANGER, Action.READ, session("team"), "Session alice/digits/1")
    with pytest.raises(NotFound):  # not even readable: no hint that it exists
        require(STRANGER, Action.CONTROL, session("private"), "Session alice/digits/1")
    with pytest.raises(Forbidden, match="belongs to alice; only they or an admin"):
        require(MEMBER, Action.CONTROL, session("team"), "Session alice/digits/1")


def scope_reads(scope, s: Session) -> bool:
    """The session scope as the store applies it (nsml.store.sql.sessions.in_scope), in Python."""
    return scope.everything or s.owner == scope.owner or s.visibility == "public" or (
        s.visibility == "team" and bool(s.team) and s.team in scope.teams)


def test_the_listing_scopes_agree_with_can_on_every_combination():
    for actor, visibility, team in itertools.product(ACTORS, ("private", "team", "public"), ("vision", "nlp", "")):
        s = session(visibility, team)
        assert scope_reads(session_scope(actor), s) == can(actor, Action.READ, s), (actor, visibility, team)
    for actor, private, grants in itertools.product(ACTORS, (False, True), ((), ("user:eve",), ("team:vision",))):
        d = dataset(private, grants)
        scope = dataset_scope(actor)
        listed = scope.everything or not d.private or d.owner == scope.owner or bool(scope.grantees & set(d.grants))
        assert listed == can(actor, Action.READ, d), (actor, private, grants)
