"""Download a checkpoint archive from the NSML server (used by ``nsml.load``).

``GET /api/sessions/OWNER/DATASET/N/checkpoints/NAME/archive`` with ``Authorization: Bearer
NSML_TOKEN`` answers a tar of the checkpoint directory (docs/internals.md). It is streamed
straight into ``tarfile``, so a large checkpoint is never held in memory whole.
"""

import json
import os
import tarfile
import urllib.error
import urllib.parse
import urllib.request

from nsml.client.context import CONTEXT
from nsml.client.errors import CheckpointNotFoundError

TIMEOUT_S = 60


def archive_url(server_url, session, name):
    parts = session.split('/') if isinstance(session, str) else []
    if len(parts) != 3 or not all(parts):
        raise ValueError(f'nsml.load: session must be a full name like "owner/dataset/3", '
                         f'got {session!r}')
    quote = urllib.parse.quote
    path = '/'.join(quote(part, safe='') for part in parts)
    return f'{server_url}/api/sessions/{path}/checkpoints/{quote(name, safe="")}/archive'


def download_checkpoint(session, name, directory, server_url=None, token=None):
    """Extract checkpoint ``name`` of ``session`` into the existing ``directory``."""
    server_url = (server_url or CONTEXT.server_url).rstrip('/')
    token = token if token is not None else CONTEXT.token
    if not server_url and CONTEXT.spool and session:
        gateway = os.path.join(CONTEXT.spool, 'supervisor.sock')  # nsml.core.spool.SOCKET
        if os.path.exists(gateway):  # sandboxed: no token here, the supervisor fetches it
            return _download_via_supervisor(gateway, session, name, directory)
    if not server_url:
        raise RuntimeError('nsml.load: loading a checkpoint of a session needs the NSML server, '
                           'and NSML_SERVER_URL is not set (run the script on NSML, or load a '
                           'local checkpoint without session=)')
    if not session:
        raise RuntimeError('nsml.load: NSML_SESSION_NAME is not set, so there is no current '
                           'session to load from; pass session="owner/dataset/N"')
    url = archive_url(server_url, session, name)
    request = urllib.request.Request(url, headers={'Authorization': f'Bearer {token}'})
    # The server is reached directly: a proxy from the user's image must not get in the way.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=TIMEOUT_S) as response:
            _extract(response, directory)
    except urllib.error.HTTPError as exc:
        detail = _detail(exc)
        if exc.code == 404:
            raise CheckpointNotFoundError(
                f'nsml.load: {detail or f"no checkpoint {name!r} in session {session}"}') from None
        if exc.code in (401, 403):
            raise PermissionError(f'nsml.load: the server refused access to {session}: '
                                  f'{detail or exc.reason}') from None
        raise RuntimeError(f'nsml.load: the server answered {exc.code} for checkpoint {name!r} '
                           f'of {session}: {detail or exc.reason}') from None
    except urllib.error.URLError as exc:
        raise ConnectionError(f'nsml.load: cannot reach the NSML server at {server_url}: '
                              f'{exc.reason}') from None


def _download_via_supervisor(gateway, session, name, directory):
    import shutil

    from nsml.core import wire

    try:
        answer = wire.ask(gateway, {'op': 'load', 'session': session, 'checkpoint': name}, timeout=TIMEOUT_S * 10)
    except (OSError, ValueError) as exc:
        raise ConnectionError(f'nsml.load: the session\'s supervisor did not answer: {exc}') from None
    if 'dir' not in answer:
        detail, status = answer.get('error', 'no answer'), answer.get('status')
        if status == 404:
            raise CheckpointNotFoundError(f'nsml.load: {detail}')
        if status in (401, 403):
            raise PermissionError(f'nsml.load: the server refused access to {session}: {detail}')
        raise RuntimeError(f'nsml.load: checkpoint {name!r} of {session}: {detail}')
    source = os.path.join(CONTEXT.spool, answer['dir'])
    try:
        for entry in os.listdir(source):
            shutil.move(os.path.join(source, entry), os.path.join(directory, entry))
    finally:
        shutil.rmtree(source, ignore_errors=True)


def _detail(error):
    """The server's own message: FastAPI puts it in {"detail": ...}."""
    try:
        body = error.read()
        detail = json.loads(body).get('detail')
    except Exception:  # not JSON, or the body could not be read: fall back to the status
        return ''
    return detail if isinstance(detail, str) else json.dumps(detail) if detail else ''


def _extract(stream, directory):
    try:
        _extract_tar(stream, directory)
    except tarfile.TarError as exc:  # includes the 'data' filter's refusals
        raise RuntimeError(f'nsml.load: the checkpoint archive from the server cannot be '
                           f'extracted safely: {exc}') from None


def _extract_tar(stream, directory):
    with tarfile.open(fileobj=stream, mode='r|*') as archive:
        if hasattr(tarfile, 'data_filter'):
            # Refuses absolute paths, '..', device files and links leaving the directory.
            archive.extractall(directory, filter='data')
        else:  # Python before 3.11.4: do the essential part of that check ourselves
            for member in archive:
                target = os.path.realpath(os.path.join(directory, member.name))
                if not target.startswith(os.path.realpath(directory) + os.sep) or \
                        member.issym() or member.islnk() or member.isdev():
                    raise tarfile.TarError(f'unsafe member {member.name!r}')
                archive.extract(member, directory)
