"""nsml.load() of a session's checkpoint over HTTP.

First against a small stand-in server (an http.server speaking the one documented endpoint), to
cover the error answers precisely; then end to end against the real NSML server and real
sessions.
"""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import nsml
from nsml.client.context import CONTEXT
from nsml.client.errors import CheckpointNotFoundError
from tests.conftest import tar_of
from tests.conftest import write_dataset, write_project

TOKEN = 'secret-token'




class StandIn(BaseHTTPRequestHandler):
    """Stand-in for GET /api/sessions/S/checkpoints/NAME/archive (not the real server)."""

    archives = {}  # path -> list of answers, the last one repeated: (status, body)
    seen = []

    def do_GET(self):
        self.seen.append((self.path, self.headers.get('Authorization')))
        if self.headers.get('Authorization') != f'Bearer {TOKEN}':
            return self.answer(401, json.dumps({'detail': 'Invalid or expired token.'}).encode())
        answers = self.archives.get(self.path)
        if not answers:
            return self.answer(404, json.dumps({'detail': 'Not Found'}).encode())
        status, body = answers.pop(0) if len(answers) > 1 else answers[0]
        self.answer(status, body)

    def answer(self, status, body):
        self.send_response(status)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def stand_in(monkeypatch, spool):
    httpd = ThreadingHTTPServer(('127.0.0.1', 0), StandIn)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    StandIn.archives, StandIn.seen = {}, []
    monkeypatch.setattr(CONTEXT, 'server_url', f'http://127.0.0.1:{httpd.server_address[1]}')
    monkeypatch.setattr(CONTEXT, 'token', TOKEN)
    monkeypatch.setattr(CONTEXT, 'session_name', 'alice/toy/2')
    monkeypatch.setattr(CONTEXT, 'spool', spool)  # on the platform
    yield StandIn
    httpd.shutdown()
    httpd.server_close()


def read_all(dir_path):
    out = {}
    for root, _dirs, files in os.walk(dir_path):
        for name in files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, dir_path)] = open(path, 'rb').read()
    return out


def test_load_from_another_session(stand_in):
    stand_in.archives['/api/sessions/alice/toy/1/checkpoints/best%20one/archive'] = [
        (200, tar_of({'model': b'weights', 'sub/opt': b'state'}))]
    seen_dirs = []

    def load(dir_path, **kwargs):
        seen_dirs.append(dir_path)
        return read_all(dir_path), kwargs

    nsml.bind(load=load, real=True)
    files, kwargs = nsml.load('best one', session='alice/toy/1')
    assert files == {'model': b'weights', os.path.join('sub', 'opt'): b'state'}
    assert kwargs == {'real': True}
    assert stand_in.seen == [('/api/sessions/alice/toy/1/checkpoints/best%20one/archive',
                              f'Bearer {TOKEN}')]
    assert not os.path.exists(seen_dirs[0])  # the temporary directory is cleaned up


def test_missing_checkpoint_shows_the_servers_message(stand_in):
    detail = "Session alice/toy/1 has no checkpoint '9'. Its checkpoints: 0, 1."
    stand_in.archives['/api/sessions/alice/toy/1/checkpoints/9/archive'] = [
        (404, json.dumps({'detail': detail}).encode())]
    with pytest.raises(CheckpointNotFoundError) as err:
        nsml.load(9, load_fn=read_all, session='alice/toy/1')
    assert str(err.value) == f'nsml.load: {detail}'
    assert len(stand_in.seen) == 1  # another session's checkpoint is not waited for


def test_own_checkpoint_is_waited_for_while_it_uploads(stand_in):
    stand_in.archives['/api/sessions/alice/toy/2/checkpoints/3/archive'] = [
        (404, b'{"detail": "not yet"}'), (404, b'{"detail": "not yet"}'),
        (200, tar_of({'model': b'w3'}))]
    assert nsml.load(3, load_fn=read_all) == {'model': b'w3'}
    assert len(stand_in.seen) == 3


def test_own_checkpoint_that_never_comes(stand_in, monkeypatch):
    monkeypatch.setattr('nsml.client.checkpoints.OTHER_WAIT_S', 1.0)
    with pytest.raises(CheckpointNotFoundError, match=r'^nsml.load: Not Found$'):
        nsml.load(3, load_fn=read_all)
    assert len(stand_in.seen) >= 2


def test_refused_token(stand_in, monkeypatch):
    monkeypatch.setattr(CONTEXT, 'token', 'wrong')
    with pytest.raises(PermissionError, match=r'refused access to alice/toy/1: Invalid or expired'):
        nsml.load(1, load_fn=read_all, session='alice/toy/1')


def test_unsafe_archive_is_refused(stand_in):
    stand_in.archives['/api/sessions/alice/toy/1/checkpoints/1/archive'] = [
        (200, tar_of({'../escaped': b'x'}))]
    with pytest.raises(RuntimeError, match=r'archive from the server cannot be extracted safely'):
        nsml.load(1, load_fn=read_all, session='alice/toy/1')


def test_bad_session_name_and_no_server(monkeypatch):
    monkeypatch.setattr(CONTEXT, 'server_url', 'http://127.0.0.1:9')
    with pytest.raises(ValueError, match=r'session must be a full name like "owner/dataset/3"'):
        nsml.load(1, load_fn=read_all, session='alice/toy')
    monkeypatch.setattr(CONTEXT, 'server_url', '')
    with pytest.raises(RuntimeError, match=r'NSML_SERVER_URL is not set'):
        nsml.load(1, load_fn=read_all, session='alice/toy/1')


def test_unreachable_server(monkeypatch, spool):
    monkeypatch.setattr(CONTEXT, 'server_url', 'http://127.0.0.1:9')  # discard port: refused
    with pytest.raises(ConnectionError, match=r'cannot reach the NSML server at http://127.0.0.1:9'):
        nsml.load(1, load_fn=read_all, session='alice/toy/1')


SAVER = '''
import os, nsml
def save(dir_path):
    with open(os.path.join(dir_path, 'weights'), 'w') as f:
        f.write('weights of epoch %d' % epoch)
def load(dir_path):
    print('loaded:', open(os.path.join(dir_path, 'weights')).read())
nsml.bind(save=save, load=load)
for epoch in range(2):
    nsml.report(summary=True, step=epoch, train__loss=1.0 / (epoch + 1))
    nsml.save(epoch)
nsml.load(1)   # this session's own checkpoint, possibly still being uploaded
'''

LOADER = '''
import os, nsml
def load(dir_path):
    print('loaded from session 1:', open(os.path.join(dir_path, 'weights')).read())
nsml.bind(load=load)
nsml.load(checkpoint='0', session='alice/toy/1')
try:
    nsml.load(checkpoint='9', session='alice/toy/1')
except FileNotFoundError as exc:
    print(exc)
'''


def test_sessions_save_and_load_through_the_real_server(server, cli, tmp_path):
    write_dataset(tmp_path / 'ds')
    cli('dataset', 'push', 'toy', tmp_path / 'ds')
    write_project(cli.cwd, SAVER)
    cli('run', '-d', 'toy')
    assert server.wait('alice/toy/1')['status'] == 'exited', cli('logs', 'alice/toy/1').stdout
    assert 'loaded: weights of epoch 1' in cli('logs', 'alice/toy/1').stdout
    checkpoints = {c['name']: c for c in
                   server.api.get('/api/sessions/alice/toy/1/checkpoints').json()}
    assert sorted(checkpoints) == ['0', '1']
    # Each checkpoint's summary is what was reported just before it was saved.
    assert checkpoints['0']['summary'] == {'step': 0, 'train/loss': 1.0}
    assert checkpoints['1']['summary'] == {'step': 1, 'train/loss': 0.5}

    write_project(cli.cwd, LOADER)
    cli('run', '-d', 'toy')
    assert server.wait('alice/toy/2')['status'] == 'exited', cli('logs', 'alice/toy/2').stdout
    logs = cli('logs', 'alice/toy/2').stdout
    assert 'loaded from session 1: weights of epoch 0' in logs
    assert "nsml.load: Session alice/toy/1 has no checkpoint '9'. Its checkpoints: 0, 1." in logs
