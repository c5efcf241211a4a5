"""Every API route goes through the one policy: a route that names a session or dataset in its
path gets it from an nsml.server.access dependency (or is a supervisor's, by scoped token), and
every other route knows its caller. Adding a route without either fails here."""

from fastapi.routing import APIRoute

from nsml.server import access, auth
from nsml.server.api import channel
from nsml.server.app import create_app
from nsml.server.settings import Settings

RESOURCE_DEPS = {access.readable_session, access.controlled_session, access.session_read_by_caller,
                 access.readable_dataset, access.controlled_dataset}
SUPERVISOR_DEPS = {auth.supervisor_of, channel.supervisor_caller}
CALLER_DEPS = {auth.current_actor, auth.current_user, auth.caller}
# Routes that name a dataset or session but cannot take it from a dependency, each with why; the
# route checks the policy itself (nsml.server.access.dataset_for / _check_owner).
CHECKED_INLINE = {
    ("POST", "/api/datasets/{name}"): "push creates the dataset, or replaces it through _check_owner",
}
OPEN = {"/api/health", "/api/login"}  # no caller needed (login checks a password itself)


def dependencies(dependant) -> set:
    found = set()
    for dep in dependant.dependencies:
        found.add(dep.call)
        found |= dependencies(dep)
    return found


def api_routes():
    app = create_app(Settings(home="/nonexistent-never-started"))
    found = []
    for route in app.routes:  # FastAPI ≥ 0.12x wraps each included router; its routes carry their full paths
        inner = getattr(route, "original_router", None)
        found += inner.routes if inner is not None else [route]
    return [r for r in found if isinstance(r, APIRoute) and r.path.startswith("/api/")]


def test_every_route_that_names_a_session_or_dataset_asks_the_policy():
    unchecked, anonymous = [], []
    routes = api_routes()
    assert len(routes) > 30
    for route in routes:
        deps = dependencies(route.dependant)
        names_resource = "{number}" in route.path or "/datasets/{name}" in route.path
        for method in route.methods:
            if (method, route.path) in CHECKED_INLINE:
                continue
            if names_resource and not deps & (RESOURCE_DEPS | SUPERVISOR_DEPS):
                unchecked.append(f"{method} {route.path}")
            if route.path not in OPEN and not deps & (RESOURCE_DEPS | SUPERVISOR_DEPS | CALLER_DEPS):
                anonymous.append(f"{method} {route.path}")
    assert unchecked == [], f"routes that read a session or dataset without the policy: {unchecked}"
    assert anonymous == [], f"routes that do not know their caller: {anonymous}"
