"""The policy at every route: FastAPI dependencies that hand a route the session or dataset it
names only when nsml.core.policy allows the caller that action on it.

A route that names a session or dataset takes it from one of these (tests/api/test_policy.py
enumerates the routes and fails on one that does not), so no route reads one unchecked. What a
caller may not even read is answered 404 with "did you mean" names drawn from what they may read,
so its existence is not revealed; what they read but may not change, 403.
"""

from fastapi import Depends, Request

from nsml.core import naming
from nsml.core.entities import Dataset, Session
from nsml.core.errors import NotFound, not_found
from nsml.core.policy import Action, Actor, can, dataset_scope, require, session_scope

from .auth import caller, current_actor
from .state import ServerState, state


def session_for(st: ServerState, actor: Actor, name: str, action: Action = Action.READ) -> Session:
    try:
        session = st.store.get_session(name)
    except NotFound:
        session = None
    if session is None or not can(actor, Action.READ, session):
        known = [s.name for s in st.store.list_sessions(removed=True, scope=session_scope(actor))]
        raise not_found("Session", name, known)
    return require(actor, action, session, f"Session {name}")


def dataset_for(st: ServerState, actor: Actor, name: str, action: Action = Action.READ) -> Dataset:
    try:
        dataset = st.store.get_dataset(name)
    except NotFound:
        dataset = None
    if dataset is None or not can(actor, Action.READ, dataset):
        raise not_found("Dataset", name, [d.name for d in readable_datasets(st, actor)])
    return require(actor, action, dataset, f"Dataset '{name}'")


def readable_datasets(st: ServerState, actor: Actor, pattern: str | None = None) -> list[Dataset]:
    scope = dataset_scope(actor)  # datasets are few: the policy itself filters them
    return [d for d in st.store.list_datasets(pattern) if scope.everything or can(actor, Action.READ, d)]


def readable_session(owner: str, dataset: str, number: int, request: Request,
                     actor: Actor = Depends(current_actor)) -> Session:
    return session_for(state(request), actor, naming.session_name(owner, dataset, number))


def controlled_session(owner: str, dataset: str, number: int, request: Request,
                       actor: Actor = Depends(current_actor)) -> Session:
    return session_for(state(request), actor, naming.session_name(owner, dataset, number), Action.CONTROL)


def session_read_by_caller(owner: str, dataset: str, number: int, request: Request,
                           actor: Actor = Depends(caller)) -> Session:
    """As readable_session, where the caller may also be a live session's supervisor reading on
    its owner's behalf (`nsml.load(session=...)`)."""
    return session_for(state(request), actor, naming.session_name(owner, dataset, number))


def readable_dataset(name: str, request: Request, actor: Actor = Depends(current_actor)) -> Dataset:
    return dataset_for(state(request), actor, name)


def controlled_dataset(name: str, request: Request, actor: Actor = Depends(current_actor)) -> Dataset:
    return dataset_for(state(request), actor, name, Action.CONTROL)
