"""The server's journal ingest (nsml/server/ingest.py): concurrent posts answered each with its
own result, taken together, and drained at shutdown; on a real SQLite store."""

import asyncio
import json

import pytest

from nsml.core.errors import Conflict
from nsml.core.resources import Resources
from nsml.server.ingest import JournalIngest
from nsml.store.sql import open_store
from nsml.store.sql.metrics import JournalPost


def line(step: int) -> bytes:
    return (json.dumps({"k": "m", "w": 1.0, "s": False, "step": step, "v": {"loss": step / 10}}) + "\n").encode()


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path / 'nsml.db'}")
    yield s
    s.close()


@pytest.mark.parametrize("threads,max_posts", [(1, 64), (3, 4)], ids=["sqlite-like", "postgres-like"])
def test_concurrent_posts_each_get_their_answer_and_are_all_stored(store, threads, max_posts):
    sessions = [store.create_session("alice", "digits", "main.py", "", Resources(1, 1 << 30, 0), "", "", []) for _ in range(20)]
    ingest = JournalIngest(store, threads=threads, max_posts=max_posts)
    data = b"".join(line(i) for i in range(50))

    async def main():
        posts = [ingest.ingest(JournalPost(s.id, 0, data, heartbeat=7.0)) for s in sessions]
        posts.append(ingest.ingest(JournalPost(sessions[0].id, len(data) + 1, data)))  # past what it has
        return await asyncio.gather(*posts, return_exceptions=True)

    results = asyncio.run(main())
    assert results[:20] == [len(data)] * 20 and isinstance(results[20], Conflict)
    for s in sessions:
        assert store.series_keys(s.id) == {"loss": 50}
        assert store.session_by_id(s.id).heartbeat == 7.0
    ingest.close()
    assert not any(t.is_alive() for t in ingest._running)


def test_after_close_a_post_is_refused_not_dropped(store):
    ingest = JournalIngest(store)
    ingest.close()
    with pytest.raises(RuntimeError, match="shutting down"):
        asyncio.run(ingest.ingest(JournalPost(1, 0, line(0))))
