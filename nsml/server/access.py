"""The policy at every route: FastAPI dependencies that hand a route the session or dataset it
names only when nsml.core.policy allows the caller that action on it.

A route that names a session or dataset takes it from one of these (tests/api/test_policy_routes.py
enumerates the routes and fails on one that does not), so no route reads one unchecked. What a
caller may not even read is answered 404 with "did you mean" names drawn from what they may read,
so its existence is not revealed; what they read but may not change, 403.
"""

from collections.abc import Callable

from fastapi import Depends, Request

from nsml.core import naming
from nsml.core.entities import Dataset, Session
from nsml.core.errors import NotFound, not_found
from nsml.core.policy import Action, Actor, can, dataset_scope, require, session_scope

from .auth import caller, current_actor
from .state import ServerState, state


def session_for(st: ServerState, actor: Actor, name: str, action: Action = Action.READ) -> Session:
    return _checked(actor, action, _get(st.store.get_session, name), "Session", name, f"Session {name}",
                    lambda: [s.name for s in st.store.list_sessions(removed=True, scope=session_scope(actor))])


def dataset_for(st: ServerState, actor: Actor, name: str, action: Action = Action.READ) -> Dataset:
    return _checked(actor, action, _get(st.store.get_dataset, name), "Dataset", name, f"Dataset '{name}'",
                    lambda: [d.name for d in readable_datasets(st, actor)])


def _get(lookup: Callable, name: str):
    try:
        return lookup(name)
    except NotFound:
        return None


def _checked(actor: Actor, action: Action, found, kind: str, name: str, label: str, readable_names: Callable[[], list[str]]):
    """What one may not read reads as missing (its "did you mean" drawn only from what one may read)."""
    if found is None or not can(actor, Action.READ, found):
        raise not_found(kind, name, readable_names())
    return require(actor, action, found, label)


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
