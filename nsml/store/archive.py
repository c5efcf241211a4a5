"""Tar archives: how folders travel between the CLI, the server and sessions.

The writer streams a tar without a temporary file (so uploads can show exact progress); the
reader checks every entry before any byte is stored: no absolute paths, no '..', no links,
no devices. Folders are walked with symlinks followed only while they stay inside the folder.
"""

import os
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from nsml.core.errors import InvalidInput

BLOCK = 512
RECORD = 20 * BLOCK  # tar pads the archive to whole records, as tarfile does
CHUNK = 1 << 20


@dataclass(frozen=True)
class Member:
    """One regular file to put in an archive: its name inside, where its bytes are, its size."""

    arcname: str
    source: Path
    size: int
    mode: int = 0o644
    mtime: float = 0.0


def check_utf8(name: str) -> str:
    """Refuse a name that is not UTF-8 (tarfile hands such bytes over as lone surrogates, which
    neither the store nor a JSON answer can hold); the error shows the bad bytes escaped."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        try:
            shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a surrogate that stands for no byte
            shown = name.encode("utf-8", "backslashreplace").decode()
        raise InvalidInput(f"Archive entry '{shown}' has a name that is not UTF-8; rename it.") from None
    return name


def safe_relpath(name: str) -> str:
    """Normalise an archive or upload path, refusing anything that could escape its folder."""
    check_utf8(name)
    raw = name.replace("\\", "/")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise InvalidInput(f"'{name}' is an absolute path; archives may only hold relative paths.")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if not parts:
        raise InvalidInput(f"'{name}' is not a file name.")
    if ".." in parts:
        raise InvalidInput(f"'{name}' points outside its folder ('..' is not allowed).")
    if any("\x00" in p for p in parts):
        raise InvalidInput(f"'{name}' contains a NUL byte.")
    return "/".join(parts)


def load_ignore(root: Path, extra_patterns: Iterable[str] = ()) -> Callable[[str, bool], bool]:
    """A predicate telling whether a relative path is excluded by .nsmlignore (gitignore syntax)."""
    import pathspec

    lines = list(extra_patterns)
    ignore_file = root / ".nsmlignore"
    if ignore_file.is_file():
        lines += ignore_file.read_text(errors="replace").splitlines()
    if not lines:
        return lambda rel, is_dir: False
    spec = pathspec.GitIgnoreSpec.from_lines(lines)
    return lambda rel, is_dir: spec.match_file(rel + "/" if is_dir else rel)


def walk_folder(root: Path, ignore: Callable[[str, bool], bool] | None = None) -> list[Member]:
    """Every regular file below root, sorted; symlinks are followed only inside root.

    Ignored paths are skipped before any check, so .nsmlignore is the way out of a bad link.
    A link outside root and a link to a folder that contains it (a loop) are refused with a
    message naming the link; a dangling link inside root names no file and is skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise InvalidInput(f"'{root}' is not a folder.")
    real_root = root.resolve()
    members: list[Member] = []

    def visit(folder: Path, rel_folder: str, ancestors: frozenset[Path]) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise InvalidInput(f"Cannot read '{rel_folder or root}': {exc.strerror}.") from exc
        for entry in entries:
            rel = f"{rel_folder}{entry.name}"
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()
                if ignore and ignore(rel, is_dir):
                    continue
                if entry.is_symlink():
                    _check_link(rel, path, real_root, ancestors, ignorable=ignore is not None)
                if is_dir:
                    visit(path, rel + "/", ancestors | {path.resolve()})
                elif entry.is_file():
                    st = path.stat()
                    members.append(Member(rel, path, st.st_size, st.st_mode & 0o777, st.st_mtime))
            except OSError as exc:
                raise InvalidInput(f"Cannot read '{rel}': {exc.strerror}.") from exc

    visit(root, "", frozenset({real_root}))
    return members


def _check_link(rel: str, path: Path, real_root: Path, ancestors: frozenset[Path], ignorable: bool) -> None:
    way_out = "remove it or add it to .nsmlignore" if ignorable else "remove it"
    try:
        target = path.resolve()
    except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError on a cycle of links
        raise InvalidInput(f"'{rel}' is a symbolic link that points back to itself; {way_out}.") from None
    if not target.is_relative_to(real_root):
        raise InvalidInput(
            f"'{rel}' is a symbolic link to {target}, outside the folder being uploaded; "
            f"copy the file in, or {way_out}."
        )
    if target in ancestors:
        raise InvalidInput(f"'{rel}' is a symbolic link to {target}, a folder that contains the link (a loop); {way_out}.")


def _header(member: Member) -> bytes:
    info = tarfile.TarInfo(member.arcname)
    info.size = member.size
    info.mode = member.mode
    info.mtime = int(member.mtime)
    return info.tobuf(format=tarfile.PAX_FORMAT)


def archive_size(members: list[Member]) -> int:
    """The exact length of stream_tar(members): headers, padded data, end blocks, record padding."""
    total = sum(len(_header(m)) + -(-m.size // BLOCK) * BLOCK for m in members)
    total += 2 * BLOCK
    return total + -total % RECORD


def stream_tar(members: Iterable[Member], open_source: Callable[[Member], Iterator[bytes]] | None = None) -> Iterator[bytes]:
    """Yield an uncompressed tar of members chunk by chunk (no temporary file)."""
    written = 0
    for m in members:
        header = _header(m)
        yield header
        written += len(header)
        sent = 0
        chunks = open_source(m) if open_source else _file_chunks(m.source)
        for chunk in chunks:
            sent += len(chunk)
            if sent > m.size:
                raise InvalidInput(f"'{m.arcname}' grew while it was being uploaded; try again.")
            yield chunk
        if sent != m.size:
            raise InvalidInput(f"'{m.arcname}' changed size while it was being uploaded; try again.")
        pad = -m.size % BLOCK
        if pad:
            yield b"\0" * pad
        written += m.size + pad
    end = 2 * BLOCK
    written += end
    end += -written % RECORD
    yield b"\0" * end


def _file_chunks(path: Path) -> Iterator[bytes]:
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
    except OSError as exc:
        raise InvalidInput(f"'{path}' could not be read while it was being uploaded ({exc.strerror}); try again.") from exc


def read_tar(fileobj, store_file: Callable[[str, Iterator[bytes], int], None]) -> int:
    """Check each entry of a tar stream and hand regular files to store_file(path, chunks, size).

    Raises InvalidInput on the first entry that is a link, a device, an absolute path or '..'.
    Returns the number of files stored.
    """
    count = 0
    try:
        with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
            for info in tar:
                check_utf8(info.name)
                check_utf8(info.linkname)
                if info.isdir():
                    safe_relpath(info.name)
                    continue
                if info.issym() or info.islnk():
                    raise InvalidInput(
                        f"Archive entry '{info.name}' is a link to '{info.linkname}'; links are not accepted."
                    )
                if not info.isfile():
                    raise InvalidInput(f"Archive entry '{info.name}' is not a regular file.")
                rel = safe_relpath(info.name)
                src = tar.extractfile(info)
                store_file(rel, iter(lambda: src.read(CHUNK), b""), info.size)
                count += 1
    except tarfile.TarError as exc:
        raise InvalidInput(f"The upload is not a valid tar archive ({exc}).") from exc
    return count


def extract_to(fileobj, dest: Path) -> list[str]:
    """Unpack a tar stream into dest with the same checks as read_tar; returns the paths."""
    dest = Path(dest)
    paths: list[str] = []

    def store(rel: str, chunks: Iterator[bytes], size: int) -> None:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
        paths.append(rel)

    read_tar(fileobj, store)
    return paths
