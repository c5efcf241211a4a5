"""Session tags (`nsml tag S +x -y`, the web, `tag:x` queries) and notes: what is allowed.

A tag is a short word: letters, digits and `_ . + -`, starting with a letter or digit, so it
reads the same in a query (`tag:baseline`), a URL and a shell without quoting.
"""

import re

from nsml.core.errors import InvalidInput

MAX_TAG = 64
MAX_TAGS = 32  # on one session
MAX_NOTE = 64 << 10  # characters of markdown
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,%d}" % (MAX_TAG - 1))


def check_tag(tag: str) -> str:
    """The tag, or InvalidInput saying what a tag may be."""
    if not isinstance(tag, str) or not _TAG.fullmatch(tag):
        raise InvalidInput(f"{tag!r} is not a tag: a tag is 1 to {MAX_TAG} letters, digits and _ . + -, "
                           "starting with a letter or digit")
    return tag


def check_note(note: str) -> str:
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise InvalidInput(f"A note is at most {MAX_NOTE} characters of text.")
    return note


def parse_changes(words: list[str]) -> tuple[list[str], list[str]]:
    """`+x -y z` as (added, removed): a bare word is added. For `nsml tag`."""
    add, remove = [], []
    for word in words:
        if word.startswith("-"):
            remove.append(check_tag(word[1:]))
        else:
            add.append(check_tag(word[1:] if word.startswith("+") else word))
    return add, remove
