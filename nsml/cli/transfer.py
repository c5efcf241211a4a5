"""Moving folders: upload as a streamed tar with a progress bar; download and unpack safely."""

import os
import shutil
from pathlib import Path

import httpx
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from nsml.core.errors import InvalidInput
from nsml.store.archive import archive_size, extract_to, load_ignore, stream_tar, walk_folder

from .connection import Api, CliError, check
from .render import err_console, size

# Never part of a code upload unless .nsmlignore re-includes them ('!nsml_checkpoints/'): version
# control, caches, virtual environments, and what the library writes when run off the platform.
DEFAULT_IGNORES = (".git/", "__pycache__/", "*.pyc", ".venv/", "venv/", "nsml_checkpoints/")
LARGE_CODE = 100 << 20  # a code upload above this gets a warning: data belongs in a dataset


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        console=err_console, transient=True, disable=not err_console.is_terminal,
    )


def upload_folder(api: Api, path: str, folder: Path, what: str, params: dict, ignore: bool = True, extra: dict[str, Path] | None = None) -> dict:
    """Stream `folder` as a tar to POST path; with ignore true (code), DEFAULT_IGNORES and
    .nsmlignore apply and a large upload is warned about.
    `extra`: more files, by their path in the upload (they replace folder files of that path)."""
    from nsml.store.archive import Member

    try:
        members = walk_folder(folder, load_ignore(folder, DEFAULT_IGNORES) if ignore else None)
    except InvalidInput as exc:
        raise CliError(str(exc)) from exc
    for rel, source in (extra or {}).items():
        members = [m for m in members if m.arcname != rel] + [Member(rel, source, source.stat().st_size)]
    total = archive_size(members)
    if ignore and sum(m.size for m in members) > LARGE_CODE:
        warn_large(members)
    with _progress() as progress:
        task = progress.add_task(f"uploading {what}", total=total)

        def body():
            for chunk in stream_tar(members):
                progress.advance(task, len(chunk))
                yield chunk

        try:
            return api.post(path, params=params, content=body(), headers={"Content-Type": "application/x-tar"})
        except InvalidInput as exc:  # a file changed while streaming
            raise CliError(str(exc)) from exc


def warn_large(members) -> None:
    """One line on stderr: how big, where most of it is, how to leave it out. A warning, not a
    question: scripts and CI run without a terminal, and Ctrl-C keeps nothing anyway."""
    total = sum(m.size for m in members)
    by_top: dict[str, int] = {}
    for m in members:
        top = m.arcname.split("/", 1)[0] + ("/" if "/" in m.arcname else "")
        by_top[top] = by_top.get(top, 0) + m.size
    biggest = [kv for kv in sorted(by_top.items(), key=lambda kv: -kv[1])[:3] if kv[1] >= total / 10]
    where = ", ".join(f"{name} {size(n)}" for name, n in biggest)
    err_console.print(
        f"nsml: warning: uploading {size(total)} of code (more than {LARGE_CODE >> 20} MB), mostly {where}; "
        "leave such files out with .nsmlignore and put data in a dataset (Ctrl-C stops the upload, nothing is kept)."
    )


def download_tar(api: Api, path: str, dest: Path, what: str, force: bool = False, params: dict | None = None) -> list[str]:
    """Download a tar from path and unpack it into dest (created; must be empty unless force)."""
    dest = Path(dest)
    dest = dest.resolve()
    occupied = any(dest.iterdir()) if dest.is_dir() else dest.exists()
    if occupied:
        if not force:
            raise CliError(f"'{dest}' already exists and is not empty; choose another path or add -f to overwrite.")
    tmp = dest.with_name(f".{dest.name}.nsml-part")
    try:
        try:
            with api.stream(path, params=params or {}) as resp:
                check(resp)  # a wrong name fails here, before anything is created
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
                total = int(resp.headers.get("X-NSML-Bytes", 0)) or None
                with _progress() as progress:
                    task = progress.add_task(f"downloading {what}", total=total)
                    reader = _StreamReader(resp.iter_bytes(), lambda n: progress.advance(task, n))
                    paths = extract_to(reader, tmp)
        except httpx.TransportError as exc:  # refused, or cut off half way (see the server's log)
            raise CliError(f"The download of {what} from {api.server.url} failed ({exc or type(exc).__name__}); nothing was kept.") from exc
        if force and dest.exists():
            shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
        elif dest.is_dir():
            dest.rmdir()
        os.replace(tmp, dest)
        return paths
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _StreamReader:
    """A file-like object over an iterator of byte chunks (what tarfile's stream mode reads)."""

    def __init__(self, chunks, on_read):
        self.chunks = chunks
        self.buffer = b""
        self.on_read = on_read

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self.buffer) < n:
            try:
                chunk = next(self.chunks)
            except StopIteration:
                break
            self.on_read(len(chunk))
            self.buffer += chunk
        if n < 0:
            out, self.buffer = self.buffer, b""
        else:
            out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out
