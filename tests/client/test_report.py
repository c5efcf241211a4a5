"""nsml.report(): local printing, validation, and the journal lines a session writes."""

import inspect
import math
import os
import time

import pytest

import nsml
from nsml.client import scope
from tests.client.conftest import read_journal, run_python


class Tensor:
    """Stands in for torch.Tensor: not JSON, has .item()."""

    def item(self):
        return 0.5


def test_off_platform_prints_a_readable_line(capsys):
    nsml.report(step=3, train__loss=0.5, acc=0.9, walltime=12)
    assert capsys.readouterr().out == 'step=3, train/loss=0.5, acc=0.9\n'


def test_off_platform_without_step(capsys):
    nsml.report(summary=True, epoch=1, name='run')
    assert capsys.readouterr().out == 'epoch=1, name=run\n'


def test_non_json_value_names_key_and_type(capsys):
    with pytest.raises(TypeError) as err:
        nsml.report(step=1, loss=Tensor())
    assert str(err.value) == ("nsml.report: value for 'loss' is a Tensor, which is not JSON; "
                              "pass float(loss) or loss.item()")
    assert capsys.readouterr().out == ''  # nothing half-reported


def test_non_json_inside_a_list_is_named():
    with pytest.raises(TypeError, match=r"value for 'hist' contains a Tensor"):
        nsml.report(hist=[1.0, Tensor()])
    with pytest.raises(TypeError, match=r"value for 'tags' is a set"):
        nsml.report(tags={'a'})
    with pytest.raises(TypeError, match=r"value for 'd' contains a tuple"):
        nsml.report(d={(1, 2): 3})


def test_a_value_that_contains_itself_is_refused():
    loop = []
    loop.append(loop)
    with pytest.raises(TypeError, match=r"value for 'loop'"):
        nsml.report(loop=loop)


def test_step_must_be_a_number(capsys):
    with pytest.raises(TypeError, match=r'step is a str, which is not a number'):
        nsml.report(step='3', loss=1.0)

    class NumpyInt:  # like numpy.int64: not an int, but has __index__
        def __index__(self):
            return 7

    nsml.report(step=NumpyInt(), loss=1.0)
    assert capsys.readouterr().out == 'step=7, loss=1.0\n'


def test_scope_is_kept_for_exec():
    marker = {'config': 'x'}
    nsml.report(scope=marker, loss=1.0)
    assert scope.current() is marker


def test_journal_lines_on_platform(spool, workdir):
    run_python('''
        import nsml
        class F(float):  # like numpy.float64: a float subclass
            pass
        nsml.report(step=1, train__loss=0.5, acc=0.9, walltime=5)
        nsml.report(summary=True, step=2, val__acc=F(0.25), epoch=2)
        nsml.report(hist=[1, 2.5, None], info={'lr': 0.1, 'name': 'adam'}, ok=True, note='é"')
        nsml.report(step=3, bad=float('nan'), big=float('inf'), small=-float('inf'))
    ''', workdir, NSML_SPOOL=spool, NSML_IS_ON_NSML=1, NSML_SESSION_NAME='alice/toy/1')
    before = time.time()
    lines = read_journal(spool)
    assert [line['k'] for line in lines] == ['m'] * 4
    first, second, third, fourth = lines
    assert first['step'] == 1 and first['s'] is False
    assert first['v'] == {'train/loss': 0.5, 'acc': 0.9}  # no 'walltime', no 'step' in v
    assert before - 60 < first['w'] <= before  # the call's time, not the 5 passed in
    assert second['s'] is True and second['v'] == {'val/acc': 0.25, 'epoch': 2}
    assert third['step'] is None
    assert third['v'] == {'hist': [1, 2.5, None], 'info': {'lr': 0.1, 'name': 'adam'},
                          'ok': True, 'note': 'é"'}
    assert math.isnan(fourth['v']['bad']) and fourth['v']['big'] == math.inf
    raw = open(os.path.join(spool, 'journal.ndjson')).read().splitlines()[3]
    assert '"bad":NaN' in raw and '"big":Infinity' in raw and '"small":-Infinity' in raw
    assert list(first) == ['k', 'w', 'step', 's', 'v']


def test_type_error_on_platform_writes_nothing(spool, workdir):
    proc = run_python('''
        import nsml
        nsml.report(step=1, loss=1.0)
        try:
            nsml.report(step=2, loss=object())
        except TypeError as exc:
            print(exc)
    ''', workdir, NSML_SPOOL=spool)
    assert "value for 'loss' is a object" in proc.stdout
    assert [line['step'] for line in read_journal(spool)] == [1]


def test_background_thread_writes_while_the_process_runs(spool, workdir):
    # The script checks its own journal after 1 s, then leaves with os._exit, which skips the
    # atexit flush: the line can only be there if the flusher thread wrote it.
    proc = run_python('''
        import os, time, nsml
        nsml.report(step=1, loss=1.0)
        path = os.path.join(os.environ['NSML_SPOOL'], 'journal.ndjson')
        time.sleep(1.0)
        print(open(path).read().count('"k":"m"'))
        nsml.report(step=2, loss=2.0)
        os._exit(0)
    ''', workdir, NSML_SPOOL=spool)
    assert proc.stdout.strip() == '1'


def test_pending_lines_are_flushed_at_exit(spool, workdir):
    run_python('''
        import nsml
        for i in range(1000):
            nsml.report(step=i, loss=i / 10)
    ''', workdir, NSML_SPOOL=spool)
    assert [line['step'] for line in read_journal(spool)] == list(range(1000))


def test_reports_from_threads_are_all_written(spool, workdir):
    run_python('''
        import threading, nsml
        start = threading.Barrier(4)  # all threads make the first report (opening the journal) at once
        def work(t):
            start.wait()
            for i in range(2000):
                nsml.report(step=i, thread=t)
        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
    ''', workdir, NSML_SPOOL=spool)
    lines = read_journal(spool)
    assert len(lines) == 8000
    for t in range(4):
        assert [l['step'] for l in lines if l['v']['thread'] == t] == list(range(2000))


def test_forked_child_does_not_repeat_the_parents_pending_lines(spool, workdir):
    run_python('''
        import os, sys, nsml
        nsml.report(step=1, who='parent')       # still pending when the process forks
        pid = os.fork()
        if pid == 0:
            nsml.report(step=2, who='child')
            sys.exit(0)                          # runs atexit: flushes the child's journal
        os.waitpid(pid, 0)
        nsml.report(step=3, who='parent')
    ''', workdir, NSML_SPOOL=spool)
    lines = read_journal(spool)
    assert sorted((l['step'], l['v']['who']) for l in lines) == \
        [(1, 'parent'), (2, 'child'), (3, 'parent')]


def test_unwritable_spool_is_a_clear_error(tmp_path, workdir):
    proc = run_python('''
        import nsml
        nsml.report(loss=1.0)
    ''', workdir, check=False, NSML_SPOOL=tmp_path / 'missing' / 'spool')
    assert proc.returncode == 1
    assert 'nsml: cannot open the metrics journal' in proc.stderr


def test_the_c_fast_path_is_built_and_is_nsml_report():
    # Optional in setup.py (a machine without a compiler still installs), but CI and any
    # ordinary install have one: a silent fallback would hide a 5x slower report().
    from nsml.client import _fastreport  # noqa: F401  (ImportError: the extension was not built)
    assert type(nsml.report).__name__ == 'builtin_function_or_method'
    assert str(inspect.signature(nsml.report)) == '(summary=False, scope=None, **values)'
    assert nsml.report.__doc__.startswith('Record metric values')


def test_batched_reports_read_back_as_reported(spool, workdir):
    # Consecutive reports of the same keys are written as batch lines (journal.py); every
    # report must read back exactly as the line-per-report format had it, whatever breaks a run.
    run_python('''
        import nsml
        from nsml.client import journal
        calls = []
        def report(**kw):
            calls.append(kw)
            nsml.report(**kw)
        for i in range(3000):                      # a long run: split into several batch lines
            report(step=i, loss=1 / (i + 1), acc=i / 3000, n=i)
        report(step=3000, loss=None)               # a None breaks the run: a line of its own
        for i in range(3001, 3005):
            report(step=i, loss=float('nan') if i == 3002 else 0.5)  # a NaN: the run as lines
        for i in range(5):
            report(step=i, train__loss=0.25)        # renamed keys
        for i in range(5):
            report(loss=float(i))                  # no step
        for i in range(5):
            report(step=2 ** 70 + i, loss=1.0)     # steps beyond orjson's 64 bits
        report(step=1, ok=True, s='x')
        report(step=2, ok=False, s='y')            # bool and str: the general path's records
        report(summary=True, step=9, best=0.1)
        report(step=10, walltime=5, loss=2.0)
        report(step=11, walltime=5, loss=3.0)
        wide = {f'k{j}': float(j) for j in range(70)}
        report(step=12, **wide)
        report(step=13, **wide)                    # more keys than a batch line takes
        journal.flush()
        import json, sys
        json.dump(calls, open('calls.json', 'w'))
    ''', workdir, NSML_SPOOL=spool, NSML_IS_ON_NSML=1, NSML_SESSION_NAME='alice/toy/1')
    import json
    calls = json.load(open(os.path.join(workdir, 'calls.json')))
    records = read_journal(spool)
    assert len(records) == len(calls)
    for record, call in zip(records, calls):
        call = dict(call)
        summary = call.pop('summary', False)
        call.pop('walltime', None)
        step = call.pop('step', None)
        values = {k.replace('__', '/'): v for k, v in call.items()}
        got = record['v']
        assert (record['k'], record['step'], record['s']) == ('m', step, summary), (record, call)
        assert list(got) == list(values)
        for key, value in values.items():
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(got[key])
            else:
                assert got[key] == value and type(got[key]) is type(value), (key, got[key], value)
        assert type(record['w']) is float and record['w'] > 1e9
    raw = open(os.path.join(spool, 'journal.ndjson')).read().splitlines()
    batches = [json.loads(line) for line in raw if line.startswith('{"k":"b"')]
    assert sum(len(b['r']) for b in batches) >= 3000
    assert len([b for b in batches if b['c'] == ['step', 'loss', 'acc', 'n', 'walltime']]) >= 2
    assert all(len(line) < 1 << 20 for line in raw)
    assert any('NaN' in line for line in raw)  # the server is told, and refuses it with a note


def test_the_effective_configuration_is_recorded_defaults_included(spool, workdir):
    run_python('''
        import argparse, pathlib
        import nsml
        parser = argparse.ArgumentParser()
        parser.add_argument('--lr', type=float, default=0.1)
        parser.add_argument('--hidden', type=int, default=64)
        parser.add_argument('--out', type=pathlib.Path, default=pathlib.Path('runs'))
        parser.add_argument('--layers', type=int, nargs='+', default=[64, 64])
        sub = parser.add_subparsers(dest='cmd')
        sub.add_parser('train').add_argument('--epochs', type=int, default=3)
        args = parser.parse_args(['--lr', '0.01', 'train'])
        nsml.report(step=1, loss=0.5)
        back = nsml.config(seed=7, schedule={'kind': 'cosine', 'warmup': float('nan')})
        assert back['seed'] == 7 and back['lr'] == 0.01, back
    ''', workdir, NSML_SPOOL=spool, NSML_IS_ON_NSML=1, NSML_SESSION_NAME='alice/toy/1')
    lines = read_journal(spool)
    configs = [line['v'] for line in lines if line['k'] == 'p']
    assert configs == [
        {'lr': 0.01, 'hidden': 64, 'out': 'runs', 'layers': [64, 64], 'cmd': 'train', 'epochs': 3},  # one parse, sub-parser included
        {'seed': 7, 'schedule': {'kind': 'cosine', 'warmup': 'nan'}},
    ]
    assert [line['k'] for line in lines] == ['p', 'm', 'p']  # in order with the metrics


def test_argparse_capture_can_be_turned_off_and_never_breaks_parsing(spool, workdir):
    out = run_python('''
        import argparse, nsml
        parser = argparse.ArgumentParser()
        parser.add_argument('--lr', type=float, default=0.1)
        print(parser.parse_args([]).lr)
        try:
            parser.parse_args(['--lr', 'x'])
        except SystemExit as exc:
            print('exit', exc.code)
    ''', workdir, NSML_SPOOL=spool, NSML_NO_ARGPARSE_CAPTURE=1).stdout.split()
    assert out == ['0.1', 'exit', '2']
    assert not os.path.exists(os.path.join(spool, 'journal.ndjson'))


def test_config_off_the_platform_only_returns_what_was_given():
    assert nsml.config({'a': 1}, b=[1, 2])['b'] == [1, 2]
    with pytest.raises(TypeError, match='pass a mapping'):
        nsml.config([('a', 1)])
