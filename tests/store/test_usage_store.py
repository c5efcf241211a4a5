"""The store's usage samples on SQLite and PostgreSQL: thinning to the first sample of each
minute (PostgreSQL rounds a CAST to an integer, so it buckets with FLOOR), each run's end
summary (`final`) kept by it, and every running session's newest sample in one call (the
resources page's)."""

import time

from nsml.core.entities import FileEntry
from nsml.core.resources import Resources
from nsml.core.states import Status


def running(store):
    s = store.create_session("alice", "digits", "main.py", "", Resources(1, 1 << 30, 0), "", "", [FileEntry("main.py", 1, "0" * 64)])
    return store.move_session(s.id, Status.RUNNING, started=time.time())


def test_thinning_keeps_every_end_of_run_summary(store):
    session = running(store)
    for t in range(0, 120, 5):
        store.add_usage(session.id, 1000.0 + t, 1.0, 1, [])
    store.add_usage(session.id, 1117.5, 40.0, 5 << 20, [], final=True)  # a run's end, mid-minute
    store.thin_usage(before=2000.0, spacing=60.0)
    kept = store.usage(session.id)
    assert [s.at for s in kept] == [1000.0, 1020.0, 1080.0, 1117.5]  # the first of each minute, and the end
    assert [s.final for s in kept] == [False, False, False, True] and kept[-1].cpu == 40.0


def test_latest_usage_is_each_sessions_newest_sample_in_one_call(store):
    a, b, c = running(store), running(store), running(store)
    for t in range(3):
        store.add_usage(a.id, 100.0 + t, 10.0 * t, 1 << 20, [{"index": 0, "util": 5.0, "memory": 1}])
    store.add_usage(b.id, 50.0, 1.0, 2, [], final=True)
    latest = store.latest_usage([a.id, b.id, c.id, a.id], since=60.0)
    assert set(latest) == {a.id}  # b's only sample is older than `since`; c has none
    assert latest[a.id].at == 102.0 and latest[a.id].cpu == 20.0 and latest[a.id].gpus[0]["util"] == 5.0
    both = store.latest_usage([a.id, b.id])
    assert set(both) == {a.id, b.id} and both[b.id].final and not both[a.id].final
    assert store.latest_usage([]) == {}


def test_old_samples_are_thinned_to_the_first_of_each_minute_on_either_database(store):
    session = running(store)
    for t in range(0, 600, 5):
        store.add_usage(session.id, 1000.0 + t, 1.0, 1, [])
    assert store.thin_usage(before=1000.0 + 300, spacing=60.0) == 60 - 6
    kept = [s.at for s in store.usage(session.id)]
    assert kept[:6] == [1000.0, 1020.0, 1080.0, 1140.0, 1200.0, 1260.0]  # minutes 16 (from 960 s), 17, ...
    assert kept[6:] == [1000.0 + t for t in range(300, 600, 5)]
