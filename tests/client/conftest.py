"""Shared helpers for the user-library tests.

On-platform behaviour is tested in a child process whose environment carries the NSML_*
variables, exactly as the supervisor starts a session; the tests then read what the child left
in its spool. Off-platform behaviour is tested in this process.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from nsml.client import checkpoints, journal, metrics
from nsml.client.context import CONTEXT
from nsml.core import spool as spool_format

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# Which nsml.report() the children get: the C fast path ('c', where built) or the pure Python
# one ('python'); the spool fixture runs every on-platform test with each.
_report_impl = {'name': 'c'}


def clean_env(**extra):
    """The current environment without any NSML_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('NSML_')}
    if _report_impl['name'] == 'python':
        env['NSML_PURE_PYTHON_REPORT'] = '1'

    env['PYTHONPATH'] = os.pathsep.join(filter(None, [REPO, os.environ.get('PYTHONPATH')]))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_python(code, cwd, args=(), check=True, **env):
    """Run ``code`` as a script in a fresh interpreter; returns the CompletedProcess."""
    script = os.path.join(cwd, 'main.py')
    with open(script, 'w') as f:
        f.write(textwrap.dedent(code))
    proc = subprocess.run([sys.executable, script, *args], cwd=cwd, env=clean_env(**env),
                          capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f'script failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}')
    return proc


def read_journal(spool):
    """The journal's records as objects, batch lines expanded into the metrics records they
    stand for (nsml.core.spool.batch_records); asserts the file ends with a complete line."""
    path = os.path.join(spool, 'journal.ndjson')
    with open(path, 'rb') as f:
        data = f.read()
    assert data.endswith(b'\n'), data[-200:]
    records = []
    for line in data.decode().splitlines():
        record = json.loads(line)
        if record.get('k') == spool_format.BATCH:
            expanded = spool_format.batch_records(record)
            assert expanded is not None, line
            records.extend(expanded)
        else:
            records.append(record)
    return records


@pytest.fixture(params=['c', 'python'])
def spool(tmp_path, request):
    """A session's spool, for a child that runs on the platform with each nsml.report()."""
    _report_impl['name'] = request.param
    path = tmp_path / 'spool'
    path.mkdir()
    yield str(path)
    _report_impl['name'] = 'c'


@pytest.fixture
def workdir(tmp_path):
    path = tmp_path / 'work'
    path.mkdir()
    return str(path)


@pytest.fixture(autouse=True)
def off_platform(monkeypatch, tmp_path):
    """In-process tests run off the platform, in an empty working directory, with no bindings."""
    monkeypatch.setattr(CONTEXT, 'spool', '')
    monkeypatch.setattr(CONTEXT, 'session_name', '')
    monkeypatch.setattr(CONTEXT, 'server_url', '')
    monkeypatch.setattr(metrics, '_journal', None)
    if metrics._fast is not None:  # the C fast path keeps its own reference to the journal
        metrics._fast.configure(metrics.report, None, None, 0)
    monkeypatch.setattr(journal, '_instance', None)
    monkeypatch.setattr(checkpoints, '_bound', {'save': None, 'load': None, 'infer': None})
    monkeypatch.setattr(checkpoints, '_bound_kwargs', {})
    cwd = tmp_path / 'cwd'
    cwd.mkdir()
    monkeypatch.chdir(cwd)
