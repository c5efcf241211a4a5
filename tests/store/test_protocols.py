"""Each store implementation has every method of every capability protocol
(nsml.store.protocols), with the same parameters; the behaviour behind them is the rest of
tests/store, run against every implementation."""

import inspect

import pytest

from nsml.store import protocols
from nsml.store.sql import SqlStore

IMPLEMENTATIONS = [SqlStore]


def methods(protocol) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(fn) for name, fn in vars(protocol).items()
            if callable(fn) and not name.startswith("_")}


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("protocol", protocols.CAPABILITIES, ids=lambda p: p.__name__)
def test_every_method_is_there_with_the_same_parameters(implementation, protocol):
    wanted = methods(protocol)
    assert wanted, f"{protocol.__name__} lists no method"
    for name, signature in wanted.items():
        assert hasattr(implementation, name), f"{implementation.__name__} lacks {protocol.__name__}.{name}"
        have = inspect.signature(getattr(implementation, name))
        assert list(have.parameters) == list(signature.parameters), f"{name}: {have} is not {signature}"
        for p in signature.parameters.values():
            assert have.parameters[p.name].default == p.default, f"{name}({p.name}=…): default differs"


def test_the_public_surface_is_exactly_the_protocols(store):
    """No method a caller could use that no protocol promises anything about."""
    promised = {name for protocol in protocols.CAPABILITIES for name in methods(protocol)} | {"close"}
    public = {name for name, _ in inspect.getmembers(type(store), inspect.isfunction) if not name.startswith("_")}
    assert public - promised == set() and isinstance(store, protocols.Store)
