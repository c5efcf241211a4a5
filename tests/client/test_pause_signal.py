"""`nsml pause` sends SIGUSR1: the library saves a checkpoint through the bound save, says so in
the journal and ends the script; or, when the save raises, says that and lets it run on.

Each script runs on the platform (NSML_* variables as the supervisor sets them) in its own
process group, and is signalled as the executor does it: SIGUSR1 to its main process.
"""

import os
import signal

from tests.client.conftest import read_journal, run_python
from tests.client.test_stop import ON_PLATFORM, start
from tests.conftest import wait_for


def pause(proc, when_printed):
    """Wait for the line ``when_printed`` on stdout, then SIGUSR1 the process; (rc, stdout, stderr)."""
    try:
        assert proc.stdout.readline().strip() == when_printed, proc.stderr.read()
        os.kill(proc.pid, signal.SIGUSR1)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, proc.stdout.read(), proc.stderr.read()


def kinds(records):
    return [(r['k'], r.get('e') or r.get('name')) if r['k'] in ('g', 'c') else (r['k'], r.get('step')) for r in records]


def test_a_pause_saves_through_the_bound_save_reports_it_and_exits(spool, workdir):
    proc = start('''
        import os, sys, time, nsml
        state = {"next": 0}
        def save(folder):
            with open(os.path.join(folder, "state"), "w") as f:
                f.write(str(state["next"]))
        nsml.bind(save=save)
        for i in range(3):
            nsml.report(step=i, value=i)
            state["next"] = i + 1
        try:
            print("ready", flush=True)
            time.sleep(60)
        finally:
            print("finally ran", file=sys.stderr)
    ''', workdir, spool)
    rc, _, err = pause(proc, 'ready')
    assert rc == 0 and 'finally ran' in err, err
    records = read_journal(spool)
    name = records[-1]['name']
    assert name.startswith('paused-') and f'nsml: paused at checkpoint {name}' in err
    assert kinds(records) == [('g', 'ready'), ('m', 0), ('m', 1), ('m', 2), ('c', name), ('g', 'paused')]
    folder = os.path.join(spool, records[-2]['dir'])
    assert open(os.path.join(folder, 'state')).read() == '3'


def test_without_a_save_or_with_a_handler_of_its_own_nothing_is_installed(spool, workdir):
    out = run_python('''
        import signal, nsml
        nsml.bind(infer=lambda data: data)  # nothing to save
        nsml.report(loss=1.0)
        print(signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL)
        mine = lambda signum, frame: None
        signal.signal(signal.SIGUSR1, mine)
        nsml.bind(save=lambda folder: None)  # the script's own handler is kept
        print(signal.getsignal(signal.SIGUSR1) is mine)
    ''', workdir, NSML_SPOOL=spool, **ON_PLATFORM).stdout.split()
    assert out == ['True', 'True']
    assert [r['k'] for r in read_journal(spool)] == ['m']  # no "ready": the platform refuses a pause

    out = run_python('''
        import signal, nsml
        nsml.bind(save=lambda folder: None)
        print(signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL)
    ''', workdir).stdout.split()  # off the platform: nobody sends it
    assert out == ['True']


def test_a_save_that_raises_is_reported_and_the_script_runs_on(spool, workdir):
    proc = start('''
        import os, sys, time, nsml
        def save(folder):
            open(os.path.join(folder, "half"), "w").close()
            raise OSError("the disk is full")
        nsml.bind(save=save)
        nsml.report(step=0, value=0)
        print("ready", flush=True)
        for _ in range(600):  # the handler runs within one of these sleeps
            time.sleep(0.05)
            if os.path.exists("failed"):
                break
        nsml.report(step=1, value=1)
        print("ran on", flush=True)
    ''', workdir, spool)
    try:
        assert proc.stdout.readline().strip() == 'ready', proc.stderr.read()
        os.kill(proc.pid, signal.SIGUSR1)
        # The script learns of the failure from the journal, as the platform does.
        wait_for(lambda: any(r.get('e') == 'failed' for r in _records(spool)) or proc.poll() is not None,
                 "the failure in the journal", timeout=30)
        assert proc.poll() is None, proc.stderr.read()
        open(os.path.join(workdir, 'failed'), 'w').close()
        assert proc.stdout.readline().strip() == 'ran on'
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err = proc.stderr.read()
    records = read_journal(spool)
    assert kinds(records) == [('g', 'ready'), ('m', 0), ('g', 'failed'), ('m', 1)]
    assert records[2]['error'] == 'OSError: the disk is full'
    assert 'nsml: the pause failed: saving checkpoint paused-' in err and 'raise OSError("the disk is full")' in err
    assert os.listdir(os.path.join(spool, 'checkpoints')) == []  # nothing half-written is left


def _records(spool):
    try:
        return read_journal(spool)
    except AssertionError:  # a line being written
        return []


def test_a_pause_asked_during_a_save_waits_for_it(spool, workdir):
    # The signal lands inside the script's own nsml.save(): the pause must not run the save
    # inside itself; it comes once that save has returned, as the next checkpoint.
    out = run_python('''
        import os, signal, nsml
        calls = []
        def save(folder):
            calls.append(len(calls))
            if len(calls) == 1:
                os.kill(os.getpid(), signal.SIGUSR1)  # handled at the next bytecode: here, mid-save
                calls.append("after the signal")
            open(os.path.join(folder, "f"), "w").write(repr(calls))
        nsml.bind(save=save)
        try:
            nsml.save("regular")
        finally:
            print(calls)
    ''', workdir, NSML_SPOOL=spool, **ON_PLATFORM).stdout.strip()
    assert out == "[0, 'after the signal', 2]"
    records = read_journal(spool)
    assert kinds(records)[:2] == [('g', 'ready'), ('c', 'regular')]
    assert kinds(records)[2][1].startswith('paused-') and kinds(records)[3] == ('g', 'paused')


def test_a_pause_while_reporting_flat_out_keeps_every_line_whole_and_in_order(spool, workdir):
    proc = start('''
        import itertools, nsml
        state = {"last": None}
        nsml.bind(save=lambda folder: open(folder + "/last", "w").write(str(state["last"])))
        for i in itertools.count():
            nsml.report(step=i, value=i)
            state["last"] = i
            if i == 20000:
                print("ready", flush=True)
    ''', workdir, spool)
    rc, _, err = pause(proc, 'ready')
    assert rc == 0, err
    records = read_journal(spool)  # every line parses
    assert records[0]['k'] == 'g' and records[-1]['e'] == 'paused' and records[-2]['k'] == 'c'
    steps = [r['step'] for r in records[1:-2]]
    assert steps == list(range(len(steps)))  # no gap, no repeat: the checkpoint comes after them all
    saved = int(open(os.path.join(spool, records[-2]['dir'], 'last')).read())
    assert saved in (len(steps) - 1, len(steps) - 2)  # the signal may land between report() and the update


def test_a_forked_child_ignores_the_signal(spool, workdir):
    out = run_python('''
        import os, signal, time, nsml
        nsml.bind(save=lambda folder: None)
        pid = os.fork()
        if pid == 0:
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.1)
            os._exit(7)  # still here: the pause is its parent's
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    ''', workdir, NSML_SPOOL=spool, **ON_PLATFORM).stdout.split()
    assert out == ['7']
    assert [r.get('e') for r in read_journal(spool)] == ['ready']
