"""`nsml stop` sends SIGTERM: what was reported before it must still reach the journal.

Each script runs on the platform (NSML_* variables as the supervisor sets them) in its own process
group, and is signalled the way the supervisor does it: SIGTERM to the group.
"""

import os
import signal
import subprocess
import sys
import textwrap

from tests.client.conftest import clean_env, read_journal, run_python

ON_PLATFORM = {'NSML_IS_ON_NSML': 1, 'NSML_SESSION_NAME': 'alice/toy/1'}


def start(code, workdir, spool):
    script = os.path.join(workdir, 'main.py')
    with open(script, 'w') as f:
        f.write(textwrap.dedent(code))
    return subprocess.Popen([sys.executable, script], cwd=workdir, start_new_session=True,
                            env=clean_env(NSML_SPOOL=spool, **ON_PLATFORM),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(proc, when_printed):
    """Wait for the line ``when_printed`` on stdout, then SIGTERM the group; (rc, stderr)."""
    try:
        assert proc.stdout.readline().strip() == when_printed, proc.stderr.read()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, proc.stderr.read()


def test_values_pending_at_sigterm_are_written(spool, workdir):
    # The flusher is held off, so every value is still in memory when the signal comes: without
    # the handler the journal would be empty (see the next test's control).
    proc = start('''
        import atexit, sys, time, nsml
        from nsml.client import journal
        journal.FLUSH_INTERVAL = 3600
        atexit.register(lambda: print('atexit ran', file=sys.stderr))
        for i in range(500):
            nsml.report(step=i, loss=i / 10)
        try:
            print('ready', flush=True)
            time.sleep(60)
        finally:
            print('finally ran', file=sys.stderr)
            nsml.report(step=500, last=True)  # written by the atexit flush
    ''', workdir, spool)
    rc, err = stop(proc, 'ready')
    assert rc == 128 + signal.SIGTERM, err
    assert 'finally ran' in err and 'atexit ran' in err
    lines = read_journal(spool)
    assert [line['step'] for line in lines] == list(range(501))
    assert lines[-1]['v'] == {'last': True}


def test_a_handler_the_script_installed_is_kept(spool, workdir):
    # Control for the test above: the script sets SIG_DFL itself, so the process dies of the
    # signal at once and the held-back values are lost. SIG_IGN and Python handlers set before
    # the first report are left alone too.
    proc = start('''
        import signal, time, nsml
        from nsml.client import journal
        journal.FLUSH_INTERVAL = 3600
        nsml.report(step=0, loss=1.0)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        print('ready', flush=True)
        time.sleep(60)
    ''', workdir, spool)
    rc, err = stop(proc, 'ready')
    assert rc == -signal.SIGTERM, err
    assert open(os.path.join(spool, 'journal.ndjson')).read() == ''

    out = run_python('''
        import signal, nsml
        def mine(signum, frame):
            pass
        for kept in (signal.SIG_IGN, mine):
            signal.signal(signal.SIGTERM, kept)
            nsml.report(loss=1.0)
            print(signal.getsignal(signal.SIGTERM) is kept)
    ''', workdir, NSML_SPOOL=spool, **ON_PLATFORM).stdout.split()
    assert out == ['True', 'True']


def test_handler_is_installed_by_the_first_report_or_save_in_the_main_thread(spool, workdir):
    out = run_python('''
        import os, signal, threading, nsml
        def show(when):
            print(when, signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
        show('import')
        t = threading.Thread(target=nsml.report, kwargs={'loss': 1.0})  # cannot install there
        t.start(); t.join()
        show('thread-report')
        nsml.report(loss=2.0)  # the journal is open already: report() does not look again
        show('report')
        nsml.save('1', save_fn=lambda d: open(os.path.join(d, 'f'), 'w').close())
        show('save')
    ''', workdir, NSML_SPOOL=spool, **ON_PLATFORM).stdout.splitlines()
    assert out == ['import True', 'thread-report True', 'report True', 'save False']

    out = run_python('''
        import signal, nsml
        nsml.report(loss=1.0)
        print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
    ''', workdir).stdout.splitlines()  # off the platform: printed, nothing to flush
    assert out == ['loss=1.0', 'True']


def test_journal_holds_every_value_reported_before_the_signal(spool, workdir):
    # Reporting flat out when the signal comes: the script's `finally` prints the last step whose
    # report() returned. The signal may also land after a report() returned but before `last`
    # was updated, so the journal holds that step or the next one, with no gap before it.
    proc = start('''
        import itertools, sys, nsml
        last = None
        try:
            for i in itertools.count():
                nsml.report(step=i, value=i)
                last = i
                if i == 20000:
                    print('ready', flush=True)
        finally:
            print('last', last, file=sys.stderr)
    ''', workdir, spool)
    rc, err = stop(proc, 'ready')
    assert rc == 128 + signal.SIGTERM, err
    last = int(err.split('last ')[-1])
    steps = [line['step'] for line in read_journal(spool)]
    assert steps == list(range(len(steps)))
    assert last + 1 <= len(steps) <= last + 2


def test_sigterm_during_the_main_threads_own_journal_write(spool, workdir):
    # The signal lands while the main thread holds the journal's lock (as in save() or flush()):
    # the handler must neither deadlock nor cut that write short; the process stops after it.
    proc = start('''
        import os, signal, sys, nsml
        from nsml.client import journal
        journal.FLUSH_INTERVAL = 3600
        for i in range(100):
            nsml.report(step=i, loss=1.0)
        encode_run = journal.encode_run
        def encode_and_signal(run):  # the 100 reports are one run (journal.py)
            os.kill(os.getpid(), signal.SIGTERM)
            return encode_run(run)
        journal.encode_run = encode_and_signal
        try:
            print('ready', flush=True)
            journal.flush()
            print('flush returned', file=sys.stderr)
        finally:
            print('finally ran', file=sys.stderr)
    ''', workdir, spool)
    try:
        assert proc.stdout.readline().strip() == 'ready'
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    err = proc.stderr.read()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert 'finally ran' in err and 'flush returned' not in err
    assert [line['step'] for line in read_journal(spool)] == list(range(100))


def test_forked_child_writes_its_values_and_dies_of_the_signal(spool, workdir):
    # A child forked after the handler was installed inherits it; it writes its own values but
    # must not unwind the parent's copied stack (the parent's `finally` would run twice).
    out = run_python('''
        import os, signal, sys, nsml
        from nsml.client import journal
        journal.FLUSH_INTERVAL = 3600
        nsml.report(step=0, who='parent')
        journal.flush()
        try:
            pid = os.fork()
            if pid == 0:
                nsml.report(step=1, who='child')
                os.kill(os.getpid(), signal.SIGTERM)
                os._exit(3)  # not reached
        finally:
            print('finally in', 'child' if pid == 0 else 'parent')
        _, status = os.waitpid(pid, 0)
        print(os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM)
    ''', workdir, NSML_SPOOL=spool, **ON_PLATFORM).stdout.splitlines()
    assert out == ['finally in parent', 'True']
    assert [(line['step'], line['v']['who']) for line in read_journal(spool)] == \
        [(0, 'parent'), (1, 'child')]
