"""Reading the files a session wrote, as its supervisor: never through a link the session made.

The supervisor has rights the session lacks (it may run as root), while the session owns its
spool and its working directory: between two looks it can swap any file or folder there for a
symbolic link to /etc/shadow or to the blob store, or for a FIFO that blocks whoever opens it. So
nothing there is opened by path. A folder is held open and gone down one name at a time,
relative to that descriptor, with O_NOFOLLOW (a link is refused, not followed) and O_NONBLOCK (a
FIFO opens at once and is refused as not a regular file); what is read, uploaded and removed is
what was checked. A file that belongs to someone other than the folder's owner (a hard link to
another user's file) is refused too: the session only ever creates files of its own.
"""

import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from nsml.core.spool import SpoolError

if TYPE_CHECKING:  # tarfile is slow to import, and the supervisor starts the user process first
    from nsml.store.archive import Member

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
CHUNK = 1 << 20


def open_dir(name: str, dir_fd: int | None = None, what: str | None = None) -> int:
    """A folder, opened without following a link at its last component; SpoolError if it is a
    link or not a folder (FileNotFoundError passes through)."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise SpoolError(_why(what or name, exc, "folder")) from None


def open_below(root_fd: int, relative: str, what: str | None = None) -> int:
    """The folder `relative` (a/b/c) under root_fd, one name at a time: no '..', no links."""
    fd = os.dup(root_fd)
    try:
        for part in relative.split("/"):
            if part in ("", ".", ".."):
                raise SpoolError(f"{relative!r} is not a plain path")
            sub = open_dir(part, fd, what or relative)
            os.close(fd)
            fd = sub
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_file(dir_fd: int, name: str, owner: int | None = None, what: str | None = None) -> tuple[int, os.stat_result]:
    """A regular file in dir_fd, by a name that must not be a link; (fd, its stat).

    SpoolError if it is a link, a FIFO, a device or a folder, or, with `owner`, if another user
    owns it. FileNotFoundError passes through (nothing written yet)."""
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise SpoolError(_why(what or name, exc, "file")) from None
    st = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(st.st_mode):
        problem = f"{what or name!r} is not a regular file"
    elif owner is not None and st.st_uid != owner:
        problem = f"{what or name!r} belongs to another user (uid {st.st_uid}): a hard link to a file that is not the session's?"
    if problem:
        os.close(fd)
        raise SpoolError(problem)
    return fd, st


def read_at_most(dir_fd: int, name: str, limit: int, owner: int | None = None) -> bytes | None:
    """A small file's bytes; None if it is missing; SpoolError if refused or over `limit`."""
    try:
        fd, st = open_file(dir_fd, name, owner)
    except FileNotFoundError:
        return None
    try:
        if st.st_size > limit:
            raise SpoolError(f"{name!r} holds {st.st_size} bytes, more than the {limit} allowed")
        return os.pread(fd, limit + 1, 0)[:limit]
    finally:
        os.close(fd)


def _why(what: str, exc: OSError, kind: str) -> str:
    import errno

    if exc.errno in (errno.ELOOP, errno.EMLINK):
        return f"{what!r} is a symbolic link; links are not followed"
    if exc.errno == errno.ENOTDIR:
        return f"{what!r} is not a {kind}" if kind == "folder" else f"{what!r} goes through something that is not a folder"
    return f"{what!r} cannot be opened: {exc.strerror}"


class Folder:
    """A folder of the session's, held open: its files as archive members, streamed from the
    descriptors checked on the way, and its removal, all without following a link.

    `parent_fd` and `name`: where the folder is; the parent is kept open, so a link put in place
    of a folder above it later changes nothing.
    """

    def __init__(self, parent_fd: int, name: str, what: str):
        self.what = what
        self.parent_fd = os.dup(parent_fd)
        try:
            self.fd = open_dir(name, self.parent_fd, what)
        except BaseException:
            os.close(self.parent_fd)
            raise
        self.name = name
        self.owner = os.fstat(self.fd).st_uid
        self._ids: dict[str, tuple[int, int]] = {}  # arcname -> (st_dev, st_ino) as walked

    @classmethod
    def at(cls, path, what: str) -> "Folder":
        """A folder by its absolute path, which the platform made (the session cannot change
        the folders above it); only its last component is checked."""
        path = os.path.abspath(path)
        parent = os.open(os.path.dirname(path), DIR_FLAGS & ~os.O_NOFOLLOW)
        try:
            return cls(parent, os.path.basename(path), what)
        finally:
            os.close(parent)

    def member(self, rel: str) -> "Member":
        """One file of the folder as an archive member, checked as members() checks."""
        from nsml.store.archive import Member

        fd, st = self.open(rel)
        os.close(fd)
        self._ids[rel] = (st.st_dev, st.st_ino)
        return Member(rel, rel, st.st_size, st.st_mode & 0o777, st.st_mtime)

    def members(self, links: str = "refuse", skip: Callable[[str], bool] | None = None,
                refused: list[str] | None = None) -> list["Member"]:
        """Every regular file below, sorted. links="refuse": a link (or a FIFO, a device, a
        file of another user) refuses the whole folder (SpoolError); "skip": such entries are
        left out silently (links) or named in `refused` (anything else), if given."""
        from nsml.store.archive import Member

        out: list["Member"] = []

        def visit(fd: int, prefix: str) -> None:
            with os.scandir(fd) as it:
                entries = sorted(it, key=lambda e: e.name)
            for entry in entries:
                rel = prefix + entry.name
                if skip and skip(rel):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                    problem = None
                    if stat.S_ISLNK(st.st_mode):
                        problem = f"{rel!r} is a symbolic link; links are not followed"
                    elif stat.S_ISDIR(st.st_mode):
                        sub = open_dir(entry.name, fd, rel)
                        try:
                            visit(sub, rel + "/")
                        finally:
                            os.close(sub)
                        continue
                    elif not stat.S_ISREG(st.st_mode):
                        problem = f"{rel!r} is not a regular file"
                    elif st.st_uid != self.owner:
                        problem = f"{rel!r} belongs to another user (uid {st.st_uid})"
                except SpoolError as exc:
                    problem = str(exc)
                except FileNotFoundError:
                    continue  # removed while we looked: not part of the folder any more
                if problem:
                    if links == "refuse":
                        raise SpoolError(problem)
                    if refused is not None and not stat.S_ISLNK(st.st_mode):
                        refused.append(problem)
                    continue
                self._ids[rel] = (st.st_dev, st.st_ino)
                out.append(Member(rel, rel, st.st_size, st.st_mode & 0o777, st.st_mtime))

        visit(self.fd, "")
        return out

    def open(self, rel: str) -> tuple[int, os.stat_result]:
        """One of the folder's files by its relative path, checked again as it is opened."""
        head, _, name = rel.rpartition("/")
        parent = open_below(self.fd, head, rel) if head else os.dup(self.fd)
        try:
            return open_file(parent, name, self.owner, rel)
        finally:
            os.close(parent)

    def chunks(self, member: "Member") -> Iterator[bytes]:
        """The bytes of a member (stream_tar's open_source)."""
        from nsml.core.errors import InvalidInput

        try:
            fd, st = self.open(member.arcname)
        except (SpoolError, OSError) as exc:
            raise InvalidInput(f"'{member.arcname}' could not be read while it was being uploaded: {exc}") from None
        try:
            if (st.st_dev, st.st_ino) != self._ids.get(member.arcname, (st.st_dev, st.st_ino)):
                raise InvalidInput(f"'{member.arcname}' was replaced while it was being uploaded; try again.")
            while chunk := os.read(fd, CHUNK):
                yield chunk
        finally:
            os.close(fd)

    def digest(self, rel: str) -> str | None:
        """SHA-256 of one of its files; None if it cannot be read."""
        import hashlib

        try:
            fd, _ = self.open(rel)
        except (SpoolError, OSError):
            return None
        try:
            h = hashlib.sha256()
            while chunk := os.read(fd, CHUNK):
                h.update(chunk)
            return h.hexdigest()
        finally:
            os.close(fd)

    def remove(self) -> None:
        """Delete the folder, by its name in the parent held open: shutil.rmtree refuses a link
        put in its place and goes down by descriptors itself, never through a link."""
        shutil.rmtree(self.name, ignore_errors=True, dir_fd=self.parent_fd)

    def close(self) -> None:
        for fd in (self.fd, self.parent_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.fd = self.parent_fd = -1

    def __enter__(self) -> "Folder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def written_members(workdir, code_files: dict[str, str], refused: list[str] | None = None) -> list:
    """The files the session wrote in its working directory (a session_files.Folder): new ones,
    and code files whose content changed; links and __pycache__ are left out."""
    members = workdir.members(links="skip", skip=lambda rel: "__pycache__" in rel.split("/"), refused=refused)
    return [m for m in members if code_files.get(m.arcname) is None or workdir.digest(m.arcname) != code_files[m.arcname]]


def written_files(workdir: Path, code_files: dict[str, str]) -> list[tuple[str, Path]]:
    """written_members as (relative path, path) pairs, for readers that open by path."""
    with Folder.at(workdir, "the working directory") as folder:
        return [(m.arcname, Path(workdir) / m.arcname) for m in written_members(folder, code_files)]


def read_stage(spec: dict) -> dict | None:
    """How far a relaunched script got (nsml.client.protocol writes it); None before paused(),
    and None for anything but a small JSON object in a regular file of the session's."""
    import json

    from nsml.core import spool as codec

    try:
        fd = open_dir(spec["spool"])
        try:
            raw = read_at_most(fd, codec.RELAUNCH, codec.MAX_LINE, owner=os.fstat(fd).st_uid)
        finally:
            os.close(fd)
        stage = json.loads(raw) if raw is not None else None
    except (OSError, ValueError, RecursionError):  # SpoolError is a ValueError
        return None
    return stage if isinstance(stage, dict) else None
