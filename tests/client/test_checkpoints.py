"""bind / save / load / infer off the platform (./nsml_checkpoints) and in a session's spool."""

import json
import os
import re

import pytest

import nsml
from nsml.client.errors import CheckpointNotFoundError
from tests.client.conftest import read_journal, run_python


def write_state(value):
    def save(dir_path, **kwargs):
        with open(os.path.join(dir_path, 'state.json'), 'w') as f:
            json.dump({'value': value, 'kwargs': kwargs}, f)
    return save


def read_state(dir_path, **kwargs):
    with open(os.path.join(dir_path, 'state.json')) as f:
        return json.load(f), kwargs


def test_save_and_load_locally(capsys):
    nsml.bind(save=write_state('a'), load=read_state, real=True)
    nsml.save(3)
    assert capsys.readouterr().out == 'checkpoint 3 saved to ./nsml_checkpoints/3\n'
    assert os.listdir('nsml_checkpoints/3') == ['state.json']
    state, kwargs = nsml.load(3)
    assert state == {'value': 'a', 'kwargs': {'real': True}}  # bind kwargs reach save...
    assert kwargs == {'real': True}  # ...and load


def test_positional_bind_and_rebinding_keeps_what_is_not_named():
    nsml.bind(write_state('x'), read_state)
    nsml.bind(infer=lambda data: data * 2)
    nsml.save('best')
    assert nsml.load('best')[0]['value'] == 'x'
    assert nsml.infer(21) == 42


def test_saving_a_name_again_replaces_the_checkpoint():
    nsml.bind(save=write_state('old'), load=read_state)
    nsml.save('best')
    with open('nsml_checkpoints/best/extra.txt', 'w') as f:
        f.write('left over')
    nsml.bind(save=write_state('new'))
    nsml.save('best')
    assert sorted(os.listdir('nsml_checkpoints/best')) == ['state.json']
    assert nsml.load('best')[0]['value'] == 'new'


def test_a_failing_save_keeps_the_previous_checkpoint():
    nsml.bind(save=write_state('good'), load=read_state)
    nsml.save('best')

    def broken(dir_path):
        open(os.path.join(dir_path, 'half'), 'w').close()
        raise RuntimeError('disk on fire')

    with pytest.raises(RuntimeError, match='disk on fire'):
        nsml.save('best', save_fn=broken)
    assert nsml.load('best')[0]['value'] == 'good'
    assert os.listdir('nsml_checkpoints') == ['best']  # no staging directory left behind


def test_save_fn_and_load_fn_win_over_bound_functions():
    nsml.bind(save=write_state('bound'), load=lambda d: 'bound load')
    nsml.save(1, save_fn=write_state('explicit'))
    assert nsml.load(1) == 'bound load'
    state, kwargs = nsml.load(1, load_fn=read_state)
    assert state['value'] == 'explicit' and kwargs == {}


def test_names_int_str_legacy_iteration_and_timestamp(capsys):
    nsml.bind(save=write_state('v'), load=read_state)
    nsml.save(iteration=5)
    nsml.save('saved')
    nsml.save()
    names = sorted(os.listdir('nsml_checkpoints'))
    stamp = [n for n in names if n not in ('5', 'saved')]
    assert len(stamp) == 1 and re.fullmatch(r'\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d', stamp[0])
    assert nsml.load(iteration='5')[0]['value'] == 'v'
    assert nsml.load(checkpoint=5)[0]['value'] == 'v'


@pytest.mark.parametrize('call, error', [
    (lambda: nsml.save(1, iteration=2), TypeError),
    (lambda: nsml.save(epoch=2), TypeError),
    (lambda: nsml.save(1.5), TypeError),
    (lambda: nsml.save(True), TypeError),
    (lambda: nsml.save('../escape'), ValueError),
    (lambda: nsml.save(''), ValueError),
    (lambda: nsml.save('x' * 201), ValueError),
    (lambda: nsml.load(), TypeError),
])
def test_bad_names_are_refused(call, error):
    nsml.bind(save=write_state('v'))
    with pytest.raises(error, match=r'^nsml\.'):
        call()
    assert not os.path.exists('nsml_checkpoints') or os.listdir('nsml_checkpoints') == []


def test_loading_a_missing_checkpoint_lists_the_ones_there():
    nsml.bind(save=write_state('v'), load=read_state)
    nsml.save(1)
    nsml.save(2)
    with pytest.raises(CheckpointNotFoundError) as err:
        nsml.load(7)
    assert str(err.value) == "nsml.load: no checkpoint '7' in ./nsml_checkpoints (available: 1, 2)"
    assert isinstance(err.value, FileNotFoundError)


def test_a_save_that_writes_nothing_is_kept_with_a_warning(capsys):
    nsml.bind(save=lambda d: None)
    nsml.save('empty')
    assert os.path.isdir('nsml_checkpoints/empty')
    assert 'wrote no files for checkpoint empty' in capsys.readouterr().err


class Model:
    """Has state_dict/load_state_dict like a torch module."""

    def __init__(self, w):
        self.w = w

    def state_dict(self):
        return {'w': self.w}

    def load_state_dict(self, state):
        self.w = state['w']


class Plain:
    def __init__(self, n):
        self.n = n


def test_default_save_and_load_restore_bound_objects_in_place():
    model, plain, table = Model(1), Plain(2), {'a': 1}
    nsml.bind(model=model, plain=plain, table=table)
    nsml.save('d')
    assert os.listdir('nsml_checkpoints/d') == ['model.pkl']
    model.w, plain.n, table['a'] = 10, 20, 30
    restored = nsml.load('d')
    assert (model.w, plain.n, table['a']) == (1, 2, 1)  # the same objects, restored
    assert restored['model'] is model and restored['plain'] is plain and restored['table'] is table


def test_save_with_nothing_bound_keeps_an_empty_checkpoint_and_warns_once(workdir):
    """NSML's tutorials call nsml.save(10) without bind: kept, one warning per process."""
    proc = run_python('''
        import nsml
        for epoch in range(3):
            nsml.save(epoch)
        print(nsml.load(2))
    ''', workdir)
    assert sorted(os.listdir(os.path.join(workdir, 'nsml_checkpoints'))) == ['0', '1', '2']
    assert os.listdir(os.path.join(workdir, 'nsml_checkpoints', '2')) == []
    assert proc.stderr.count('nsml.save: nothing is bound, so checkpoints are kept empty') == 1, proc.stderr
    assert 'wrote no files' not in proc.stderr
    assert proc.stdout.splitlines()[-1] == '{}'  # an empty checkpoint loads as nothing


def test_load_with_nothing_bound_of_a_checkpoint_with_files_says_what_to_do():
    nsml.save(1, save_fn=write_state('v'))
    with pytest.raises(RuntimeError, match=r'no model\.pkl'):
        nsml.load(1)


def test_default_load_of_a_foreign_checkpoint_says_what_to_do():
    nsml.save(1, save_fn=write_state('v'))
    nsml.bind(model=Model(0))  # no load bound: the default load looks for model.pkl
    with pytest.raises(RuntimeError, match=r'no model\.pkl'):
        nsml.load(1)


def test_infer_without_a_bound_function():
    with pytest.raises(RuntimeError, match=r'no infer function is bound'):
        nsml.infer([1, 2])


def test_infer_passes_keyword_arguments():
    nsml.bind(infer=lambda data, **kw: (data, kw))
    assert nsml.infer([1], top_k=3) == ([1], {'top_k': 3})


def test_bind_refuses_non_callables():
    with pytest.raises(TypeError, match=r'nsml.bind: save must be a function, not str'):
        nsml.bind(save='save.pkl')


def test_save_on_platform_writes_the_directory_then_the_line(spool, workdir):
    run_python('''
        import os, nsml
        def save(dir_path):
            assert os.listdir(dir_path) == []          # a fresh, empty, existing directory
            with open(os.path.join(dir_path, 'model'), 'w') as f:
                f.write('weights')
            os.mkdir(os.path.join(dir_path, 'sub'))
            with open(os.path.join(dir_path, 'sub', 'more'), 'w') as f:
                f.write('more')
        nsml.bind(save=save)
        nsml.report(step=0, loss=1.0)
        nsml.report(step=1, loss=0.5, summary=True)
        nsml.save(1)
        nsml.report(step=2, loss=0.25)
        nsml.save(1)                                   # same name again: a new directory
        nsml.save('best')
    ''', workdir, NSML_SPOOL=spool, NSML_IS_ON_NSML=1)
    ready, *lines = read_journal(spool)  # bind's line first: the session may be paused (nsml.client.stopgo)
    assert (ready['k'], ready['e']) == ('g', 'ready')
    assert [(l['k'], l.get('step'), l.get('name')) for l in lines] == [
        ('m', 0, None), ('m', 1, None), ('c', None, '1'), ('m', 2, None), ('c', None, '1'),
        ('c', None, 'best')]
    checkpoints = [l for l in lines if l['k'] == 'c']
    dirs = [c['dir'] for c in checkpoints]
    assert len(set(dirs)) == 3 and all(d.startswith('checkpoints/') for d in dirs)
    for c in checkpoints:
        assert list(c) == ['k', 'w', 'name', 'dir']
        folder = os.path.join(spool, c['dir'])
        assert open(os.path.join(folder, 'model')).read() == 'weights'
        assert open(os.path.join(folder, 'sub', 'more')).read() == 'more'
    assert lines[2]['w'] >= lines[1]['w']
    assert not os.path.exists(os.path.join(workdir, 'nsml_checkpoints'))


def test_failed_save_on_platform_leaves_no_directory_and_no_line(spool, workdir):
    proc = run_python('''
        import nsml
        def save(dir_path):
            open(dir_path + '/half', 'w').close()
            raise ValueError('boom')
        nsml.bind(save=save)
        nsml.report(step=0, loss=1.0)
        try:
            nsml.save(1)
        except ValueError as exc:
            print('raised', exc)
    ''', workdir, NSML_SPOOL=spool)
    assert proc.stdout == 'raised boom\n'
    assert [l['k'] for l in read_journal(spool)] == ['g', 'm']  # bind's "ready" line, the report
    assert os.listdir(os.path.join(spool, 'checkpoints')) == []


def test_plain_python_script_runs_without_the_platform(workdir):
    """The canonical NSML entry file, run as `python main.py`, then re-launched with --pause."""
    main = '''
        import argparse, os, nsml
        from nsml import DATASET_PATH, HAS_DATASET, IS_ON_NSML, GPU_NUM
        p = argparse.ArgumentParser()
        p.add_argument('--mode', default='train')
        p.add_argument('--pause', type=int, default=0)
        p.add_argument('--iteration', default='0')
        config = p.parse_args()
        state = {'epoch': None}
        def save(dir_path, **kwargs):
            open(os.path.join(dir_path, 'epoch'), 'w').write(str(state['epoch']))
        def load(dir_path, **kwargs):
            state['epoch'] = int(open(os.path.join(dir_path, 'epoch')).read())
            print('model loaded!', state['epoch'])
        nsml.bind(save=save, load=load)
        if config.pause:
            nsml.paused(scope=locals())
        if config.mode == 'train':
            for epoch in range(2):
                state['epoch'] = epoch
                nsml.report(summary=True, scope=locals(), step=epoch, train__loss=1 / (epoch + 1))
                nsml.save(epoch)
        print(IS_ON_NSML, HAS_DATASET, repr(DATASET_PATH), GPU_NUM)
    '''
    out = run_python(main, workdir).stdout
    assert out.splitlines() == [
        'step=0, train/loss=1.0', 'checkpoint 0 saved to ./nsml_checkpoints/0',
        'step=1, train/loss=0.5', 'checkpoint 1 saved to ./nsml_checkpoints/1',
        "False False '' 0"]
    out = run_python(main, workdir, args=['--pause', '1', '--iteration', '0', '--mode', 'x'])
    assert out.stdout.splitlines() == ['model loaded! 0', "False False '' 0"]
