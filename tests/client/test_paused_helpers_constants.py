"""paused() and the reserved arguments, copy/cache, and the constants."""

import os

import pytest

import nsml
from nsml.client.protocol import reserved_args
from tests.client.conftest import run_python


@pytest.mark.parametrize('argv, expected', [
    ([], {}),
    (['--epochs', '3'], {}),
    (['--pause', '1', '--iteration', '4'], {'pause': 1, 'iteration': '4'}),
    (['--pause=1', '--iteration=best', '--mode=test'], {'pause': 1, 'iteration': 'best', 'mode': 'test'}),
    (['--pause', '0', '--lr', '0.1', '--pause', '1'], {'pause': 1}),  # the last one wins
    (['--pause', 'yes'], {'pause': 0}),
    (['--paused', '1', '--iteration'], {}),
])
def test_reserved_args(argv, expected):
    assert reserved_args(argv) == expected


def test_paused_is_a_no_op_without_pause(monkeypatch):
    calls = []
    nsml.bind(load=lambda d: calls.append(d))
    monkeypatch.setattr('sys.argv', ['main.py', '--iteration', '3'])
    assert nsml.paused(scope={'x': 1}) is None
    assert calls == []


def test_paused_loads_the_iteration_through_the_bound_load(monkeypatch):
    def save(dir_path, **kwargs):
        open(os.path.join(dir_path, 'w'), 'w').write('saved weights')
    loaded = []
    nsml.bind(save=save, load=lambda d, **kw: loaded.append((open(os.path.join(d, 'w')).read(), kw)),
              flag=1)
    nsml.save('4')
    monkeypatch.setattr('sys.argv', ['main.py', '--pause', '1', '--iteration', '4'])
    nsml.paused(scope=locals())
    assert loaded == [('saved weights', {'flag': 1})]


def test_paused_with_pause_but_no_iteration_loads_nothing(monkeypatch):
    nsml.bind(load=lambda d: pytest.fail('load called'))
    monkeypatch.setattr('sys.argv', ['main.py', '--pause', '1'])
    nsml.paused()


def test_copy_dict_and_object():
    target = {'a': 1, 'b': 2}
    assert nsml.copy({'a': 10}, target) is target and target == {'a': 10, 'b': 2}

    class Net:
        def __init__(self, w):
            self.w = w

    live = Net(1)
    assert nsml.copy(Net(5), live) is live and live.w == 5


@pytest.mark.parametrize('source, target, message', [
    ({'a': 1}, [1], 'source is a dict but target is a list'),
    ([1], [2], 'a list has no attributes to copy into'),
    (1, 2, 'a int has no attributes to copy into'),
])
def test_copy_refuses(source, target, message):
    with pytest.raises(TypeError, match=message):
        nsml.copy(source, target)


def test_cache_runs_once_then_reuses():
    calls = []

    def preprocess(output_path, scale):
        calls.append((output_path, scale))
        for path in output_path:
            os.makedirs(path)
            open(os.path.join(path, 'data'), 'w').write(str(scale))

    assert nsml.cache(preprocess, scale=2) == ['./processed']
    assert nsml.cache(preprocess, scale=3) == ['./processed']
    assert calls == [(['./processed'], 2)]
    assert open('processed/data').read() == '2'
    paths = nsml.cache(preprocess, output_path=['a', 'b'], scale=4)
    assert paths == ['a', 'b'] and calls[-1] == (['a', 'b'], 4)


def test_cache_passes_a_single_path_as_given_and_cleans_up_after_a_failure():
    def half_then_fail(output_path):
        assert output_path == 'out.txt'
        open(output_path, 'w').write('half')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        nsml.cache(half_then_fail, output_path='out.txt')
    assert not os.path.exists('out.txt')  # a half-made cache must not count as done
    with pytest.raises(ValueError, match=r'out.txt does not exist and no preprocess_fn'):
        nsml.cache(output_path='out.txt')


CONSTANTS = ('IS_ON_NSML', 'HAS_DATASET', 'DATASET_PATH', 'DATASET_NAME', 'GPU_NUM',
             'SESSION_NAME', 'NSML_NFS_OUTPUT', 'PARALLEL_WORLD', 'PARALLEL_PORTS', 'MY_RANK')
PRINT_CONSTANTS = f'''
import nsml, nsml.constants
for name in {CONSTANTS!r}:
    assert getattr(nsml, name) == getattr(nsml.constants, name)
    print(name, repr(getattr(nsml, name)))
'''


def constants(workdir, **env):
    out = run_python(PRINT_CONSTANTS, workdir, **env).stdout
    return dict(line.split(' ', 1) for line in out.splitlines())


def test_constants_off_platform(workdir):
    assert constants(workdir) == {
        'IS_ON_NSML': 'False', 'HAS_DATASET': 'False', 'DATASET_PATH': "''",
        'DATASET_NAME': "''", 'GPU_NUM': '0', 'SESSION_NAME': "''", 'NSML_NFS_OUTPUT': "''",
        'PARALLEL_WORLD': '[]', 'PARALLEL_PORTS': '[]', 'MY_RANK': '0'}


def test_constants_on_platform(workdir):
    assert constants(
        workdir, NSML_IS_ON_NSML=1, NSML_SESSION_NAME='alice/mnist/3', NSML_DATASET_NAME='mnist',
        NSML_DATASET_PATH='/data/mnist', NSML_HAS_DATASET=1, NSML_GPU_NUM=2,
        NSML_PARALLEL_WORLD='10.0.0.1,10.0.0.2', NSML_PARALLEL_PORTS='2222,2223', NSML_MY_RANK=1,
    ) == {
        'IS_ON_NSML': 'True', 'HAS_DATASET': 'True', 'DATASET_PATH': "'/data/mnist'",
        'DATASET_NAME': "'mnist'", 'GPU_NUM': '2', 'SESSION_NAME': "'alice/mnist/3'",
        'NSML_NFS_OUTPUT': "''", 'PARALLEL_WORLD': "['10.0.0.1', '10.0.0.2']",
        'PARALLEL_PORTS': '[2222, 2223]', 'MY_RANK': '1'}


def test_constants_tolerate_a_session_without_dataset_and_odd_values(workdir):
    got = constants(workdir, NSML_IS_ON_NSML=1, NSML_HAS_DATASET=0, NSML_DATASET_PATH='',
                    NSML_GPU_NUM='not a number')
    assert got['HAS_DATASET'] == 'False' and got['GPU_NUM'] == '0'


def test_import_nsml_is_light(workdir):
    """`import nsml` adds no module outside nsml itself that a bare interpreter lacks."""
    out = run_python('''
        import sys
        before = set(sys.modules)
        import nsml
        print(' '.join(sorted(set(sys.modules) - before)))
    ''', workdir).stdout.split()
    assert 'nsml' in out
    extra = [m for m in out if m != 'nsml' and not m.startswith('nsml.')]
    assert extra == [] or set(extra) <= {'operator'}, extra
    for heavy in ('json', 'pickle', 'threading', 'urllib.request', 'tarfile'):
        assert heavy not in out
