"""The journal ingest: one thread takes every journal post waiting and stores them together.

A hundred sessions each posting their journal a few times a second used to mean a few hundred
write transactions a second, each taken in turn behind the store's one writer (SQLite) or with
a commit of its own (PostgreSQL), every one of them with the threads waiting for the writer
handing the interpreter back and forth. Measured with bench/load.py (100 sessions): all forty
of the server's worker threads blocked on the writer, and the lag of the metrics, not their
number, the limit. Here the posts queue; one thread takes all that are waiting (up to
MAX_POSTS, MAX_BYTES), ingests them in one transaction (SqlStore.ingest_journals) and answers
each. An idle server answers a lone post at once: the thread waits for nothing but the first.
On PostgreSQL several such threads run (for_store).
"""

import asyncio
import logging
import threading
from collections import deque

from nsml.core.errors import StorageFull
from nsml.store.sql.metrics import JournalPost

MAX_POSTS = 64         # posts in one transaction
MAX_BYTES = 24 << 20   # and their bytes (a post carries at most 16 MiB)
# PostgreSQL does the database's work in processes of its own and locks rows, not the whole
# database: there several threads ingest at once, each in smaller transactions, so that a
# session's row (which its heartbeat also updates) is never locked for long. SQLite has one
# writer at a time: one thread, the largest batches.
POSTGRES_THREADS = 4
POSTGRES_MAX_POSTS = 8


def for_store(store) -> "JournalIngest":
    if store.engine.dialect.name == "sqlite":
        return JournalIngest(store)
    return JournalIngest(store, threads=POSTGRES_THREADS, max_posts=POSTGRES_MAX_POSTS)


class JournalIngest:
    """`await ingest(post)` → the post's new journal offset, or the exception it met."""

    def __init__(self, store, threads: int = 1, max_posts: int = MAX_POSTS):
        self.store = store
        self.threads, self.max_posts = threads, max_posts
        self._waiting: deque = deque()  # (post, loop, future)
        self._wake = threading.Condition()
        self._closed = False
        self._running: list[threading.Thread] = []

    async def ingest(self, post: JournalPost) -> int:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._wake:
            if self._closed:
                raise RuntimeError("the server is shutting down")
            if len(self._running) < min(self.threads, len(self._waiting) + 1):  # a thread per waiting post, up to `threads`
                thread = threading.Thread(target=self._run, name=f"nsml-journal-ingest-{len(self._running)}", daemon=True)
                self._running.append(thread)
                thread.start()
            self._waiting.append((post, loop, future))
            self._wake.notify()
        return await future

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking posts; those already queued are still ingested (their supervisors
        would otherwise send them again to the next server)."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
            running = list(self._running)
        for thread in running:
            thread.join(timeout)

    def _take(self) -> list:
        with self._wake:
            while not self._waiting and not self._closed:
                self._wake.wait()
            taken, size = [], 0
            while self._waiting and len(taken) < self.max_posts:
                post = self._waiting[0][0]
                if taken and size + len(post.data) > MAX_BYTES:
                    break
                taken.append(self._waiting.popleft())
                size += len(post.data)
            # In session order (stable: one session's posts keep theirs), so that two threads'
            # transactions take the sessions' row locks in the same order and never deadlock.
            return sorted(taken, key=lambda item: item[0].session_id)

    def _run(self) -> None:
        while True:
            taken = self._take()
            if not taken:
                return  # closed, and nothing left
            try:
                results = self.store.ingest_journals([post for post, _, _ in taken])
            except Exception as exc:  # noqa: BLE001 - the commit failed (a full disk): every post hears it
                if not isinstance(exc, StorageFull):
                    logging.getLogger("nsml.ingest").exception("journal ingest failed")
                results = [exc] * len(taken)
            for (_, loop, future), result in zip(taken, results):
                try:
                    loop.call_soon_threadsafe(_settle, future, result)
                except RuntimeError:  # that event loop has closed: nobody waits for this answer
                    pass


def _settle(future: asyncio.Future, result) -> None:
    if future.done():  # the caller went away (its client disconnected)
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
