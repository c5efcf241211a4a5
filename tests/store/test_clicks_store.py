"""The usability events store (ClickStore) on SQLite and PostgreSQL."""


def test_events_are_kept_in_order_read_since_and_forgotten(store):
    store.add_ui_events("alice", 100.0, [("home", "view", None), ("home", "leave", 2000)])
    store.add_ui_events("bob", 200.0, [("session", "click:tab-graphs", None)])
    assert [(round(at), user, page, action, ms) for at, user, page, action, ms in store.ui_events(0)] == [
        (100, "alice", "home", "view", None), (100, "alice", "home", "leave", 2000), (200, "bob", "session", "click:tab-graphs", None)]
    assert [e[1] for e in store.ui_events(150.0)] == ["bob"]
    assert store.forget_ui_events(150.0) == 2
    assert [e[1] for e in store.ui_events(0)] == ["bob"]
    store.add_ui_events("carol", 300.0, [])
    assert len(store.ui_events(0)) == 1
