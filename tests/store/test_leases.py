"""Leases on SQLite and PostgreSQL: one holder at a time, renewal, expiry, release; and under
contention from threads, never two holders for one term."""

import threading

from nsml.store.sql import open_store


def test_one_holder_at_a_time_renewed_taken_over_once_expired_and_released(store):
    assert store.lease_holder("scheduler", now=100) is None
    assert store.take_lease("scheduler", "a", ttl=5, now=100)
    assert not store.take_lease("scheduler", "b", ttl=5, now=101)
    assert store.take_lease("scheduler", "a", ttl=5, now=104)  # renewed: now until 109
    assert not store.take_lease("scheduler", "b", ttl=5, now=108)
    assert store.lease_holder("scheduler", now=108) == "a"
    assert store.take_lease("scheduler", "b", ttl=5, now=110)  # a stopped renewing
    assert store.lease_holder("scheduler", now=110) == "b" and store.lease_holder("scheduler", now=116) is None
    store.release_lease("scheduler", "a")  # not a's any more: nothing happens
    assert store.lease_holder("scheduler", now=111) == "b"
    store.release_lease("scheduler", "b")
    assert store.take_lease("scheduler", "a", ttl=5, now=111)
    assert store.take_lease("sweep", "b", ttl=5, now=111)  # leases are independent


def test_contending_servers_never_both_hold_a_term(database_url):
    stores = [open_store(database_url) for _ in range(4)]
    winners: list[list[str]] = [[] for _ in range(30)]

    def contend(i: int) -> None:
        for term in range(30):
            if stores[i].take_lease("scheduler", f"server-{i}", ttl=0.5, now=1000 + term):
                winners[term].append(f"server-{i}")

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert all(len(w) == 1 for w in winners), winners  # each term (its lease expired) exactly one holder
