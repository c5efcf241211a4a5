"""Users, teams, tokens, grants and the audit table (nsml.store.sql.identity), and the sessions
scope in SQL agreeing with the policy's `can`."""

import itertools
import time

import pytest

from nsml.core.errors import AlreadyExists, Conflict, NotFound
from nsml.core.policy import Action, can, session_scope
from nsml.core.resources import Resources
from tests.store.test_sql_store import files


def test_users_tokens_expire_and_revoke(store):
    store.add_user("alice", "tok-a", admin=True)
    store.add_user("bob")
    actor, token_id = store.actor_for_token("tok-a")
    assert actor.name == "alice" and actor.admin and actor.teams == frozenset()
    later = store.add_token("bob", "tok-b", "laptop", expires=time.time() + 60)
    assert store.actor_for_token("tok-b")[0].name == "bob"
    assert store.actor_for_token("tok-b", now=time.time() + 120) is None  # expired
    store.revoke_token("bob", later.id)
    assert store.actor_for_token("tok-b") is None
    with pytest.raises(NotFound):
        store.revoke_token("alice", later.id)  # not alice's token
    assert [t.label for t in store.list_tokens("bob")] == ["laptop"]
    store.add_user("alice", "tok-a2")  # the local token replaced (NSML_HOME/token rewritten)
    assert store.actor_for_token("tok-a") is None and store.actor_for_token("tok-a2")[0].name == "alice"
    with pytest.raises(AlreadyExists):
        store.add_user("bob", exist_ok=False)
    store.remove_user("bob")
    assert [u.name for u in store.list_users()] == ["alice"]


def test_teams_membership_and_default_team(store):
    store.add_user("alice")
    store.add_user("bob")
    store.add_team("vision", "alice")
    store.join_team("vision", "bob")
    with pytest.raises(Conflict):
        store.join_team("vision", "bob")
    assert store.get_team("vision").members == ("alice", "bob")
    assert store.get_user("bob").default_team == "vision"
    assert store.actor("bob").teams == frozenset({"vision"})


def test_grants_and_audit(store):
    store.add_user("alice")
    store.add_user("eve")
    store.put_dataset("digits", "alice", "", True, files(("train/x", "1")), False)
    store.grant_dataset("digits", "user:eve")
    assert store.get_dataset("digits").grants == ("user:eve",)
    store.grant_dataset("digits", "user:eve", grant=False)
    assert store.get_dataset("digits").grants == ()
    with pytest.raises(NotFound):
        store.grant_dataset("digits", "team:nobody")
    store.audit("alice", "stop", "alice/digits/1")
    assert [(e.actor, e.action, e.target) for e in store.audit_log()] == [("alice", "stop", "alice/digits/1")]


def test_the_sql_scope_selects_exactly_what_can_reads(store):
    for name in ("alice", "bob", "eve", "root"):
        store.add_user(name, admin=name == "root")
    store.add_team("vision", "alice")
    store.join_team("vision", "bob")
    store.add_team("nlp", "eve")
    for visibility, team in itertools.product(("private", "team", "public"), ("vision", "nlp", "")):
        store.create_session("alice", "digits", "main.py", "", Resources(1, 1, 0), "", "", files(("main.py", "x")),
                             team=team, visibility=visibility)
    everything = store.list_sessions()
    for name in ("alice", "bob", "eve", "root"):
        actor = store.actor(name)
        listed = {s.id for s in store.list_sessions(scope=session_scope(actor))}
        assert listed == {s.id for s in everything if can(actor, Action.READ, s)}, name
        total, page = store.search_sessions(scope=session_scope(actor), limit=100)
        assert total == len(listed) and {s.id for s in page} == listed


def test_a_database_from_before_users_keeps_its_tokens_and_admin(empty_database_url):
    """Migration 0005 on a real 0004 database: each user's one token becomes their first API
    token, the first user (the server's own) becomes the admin; and it downgrades again."""
    import hashlib

    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from nsml.store.sql import open_store
    from nsml.store.sql.engine import MIGRATIONS, make_engine

    engine = make_engine(empty_database_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))

    def to(revision, down=False):
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(cfg, revision)

    to("0004")
    with engine.begin() as conn:
        for name, token in (("alice", "tok-alice"), ("bob", "tok-bob")):
            conn.execute(text("INSERT INTO users (name, token_sha256, created) VALUES (:n, :t, 0)"),
                         {"n": name, "t": hashlib.sha256(token.encode()).hexdigest()})
    engine.dispose()
    store = open_store(empty_database_url)
    alice, _ = store.actor_for_token("tok-alice")
    bob, _ = store.actor_for_token("tok-bob")
    assert (alice.name, alice.admin, bob.name, bob.admin) == ("alice", True, "bob", False)
    store.close()
    to("0004", down=True)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT name, token_sha256 FROM users ORDER BY name")).all()
    assert [(n, t == hashlib.sha256(f"tok-{n}".encode()).hexdigest()) for n, t in rows] == [("alice", True), ("bob", True)]
