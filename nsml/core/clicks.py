"""Usability analytics: what the dashboard may record of its own use, and the summary of it.

NSML measured its own usability by clickstream; ours is opt-in (a server started with
--usage-analytics; off by default) and local: events go to this server's database and nowhere
else. An event says which kind of page (`session`, `compare`, …: the page template's name,
never its URL, so no session, dataset or metric name is recorded), which action (a view, a
leave with the time spent, a click on a named control), and when. This module checks events
and summarises them; it is pure.
"""

import re
from collections import Counter, defaultdict
from collections.abc import Iterable

from nsml.core.errors import InvalidInput

PAGES = ("home", "dataset", "session", "compare", "resources", "board", "usability", "login", "diff", "other")
_ACTION = re.compile(r"(view|leave|click:[a-z][a-z0-9-]{0,47})")
MAX_EVENTS = 100  # in one post
MAX_MS = 24 * 3600 * 1000
BACK_AND_FORTH_S = 60.0  # A -> B -> A within this long is going back and forth


def check_events(events: Iterable[dict]) -> list[tuple[str, str, int | None]]:
    """(page, action, ms) of each event, or InvalidInput naming what is not allowed."""
    out = []
    for i, event in enumerate(events):
        if i >= MAX_EVENTS:
            raise InvalidInput(f"At most {MAX_EVENTS} events in one post.")
        page, action, ms = event.get("page"), event.get("action"), event.get("ms")
        if page not in PAGES:
            raise InvalidInput(f"Event {i}: the page is one of {', '.join(PAGES)}.")
        if not isinstance(action, str) or not _ACTION.fullmatch(action):
            raise InvalidInput(f"Event {i}: the action is view, leave or click:NAME (lower case, digits, -).")
        if ms is not None and (type(ms) is not int or not 0 <= ms <= MAX_MS):
            raise InvalidInput(f"Event {i}: ms is a whole number of milliseconds, 0 to {MAX_MS}.")
        out.append((page, action, ms if action == "leave" else None))
    return out


def summarise(events: Iterable[tuple[float, str, str, str, int | None]]) -> dict:
    """From (at, user, page, action, ms) in time order: views and mean time per page, the most
    used controls, page-to-page moves, and moves straight back (A -> B -> A within
    BACK_AND_FORTH_S), which mark a page users had to leave to find something."""
    views, clicks, moves, back = Counter(), Counter(), Counter(), Counter()
    spent: dict[str, list[int]] = defaultdict(list)
    users = set()
    trail: dict[str, list[tuple[float, str]]] = defaultdict(list)  # user -> their views
    for at, user, page, action, ms in events:
        users.add(user)
        if action == "view":
            views[page] += 1
            seen = trail[user]
            if seen:
                moves[(seen[-1][1], page)] += 1
                if len(seen) >= 2 and seen[-2][1] == page != seen[-1][1] and at - seen[-2][0] <= BACK_AND_FORTH_S:
                    back[(page, seen[-1][1])] += 1
            seen.append((at, page))
            del seen[:-2]
        elif action == "leave" and ms is not None:
            spent[page].append(ms)
        else:
            clicks[(page, action[6:])] += 1
    return {
        "users": len(users),
        "pages": [{"page": p, "views": n, "mean_seconds": round(sum(spent[p]) / len(spent[p]) / 1000, 1) if spent[p] else None}
                  for p, n in views.most_common()],
        "controls": [{"page": p, "control": c, "clicks": n} for (p, c), n in clicks.most_common(20)],
        "moves": [{"from": a, "to": b, "count": n} for (a, b), n in moves.most_common(20)],
        "back_and_forth": [{"page": a, "via": b, "count": n} for (a, b), n in back.most_common(10)],
    }
