"""A training script written the way NSML's examples were (spec section 3.3), for the relaunch
tests. A threshold "model" on numbers; command-line switches make it misbehave on purpose."""
import argparse
import json
import os
import time

import nsml
from nsml import DATASET_PATH

state = {'threshold': None, 'epochs_done': 0}


def bind_model(config):
    def save(dir_path, **kwargs):
        with open(os.path.join(dir_path, 'model.json'), 'w') as f:
            json.dump(state, f)
        print('model saved!')

    def load(dir_path, **kwargs):
        if config.load_fails:
            raise RuntimeError('the weights do not fit this model')
        with open(os.path.join(dir_path, 'model.json')) as f:
            state.update(json.load(f))
        print('model loaded!', flush=True)

    def infer(data, **kwargs):
        time.sleep(config.slow_infer)
        if config.infer_returns == 'none':
            return None
        if isinstance(data, str):  # the built-in submit passes the test data's path
            with open(data) as f:
                data = [line for line in f if line.strip()]
        out = [(0.9, int(float(x) > state['threshold'])) for x in data]
        return out[:-1] if config.infer_returns == 'short' else out

    if config.positional_bind:
        nsml.bind(save, load, infer)
    else:
        nsml.bind(save=save, load=load, infer=infer)


if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--mode', type=str, default='train')
    p.add_argument('--pause', type=int, default=0)
    p.add_argument('--iteration', type=str, default='0')
    p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--load_fails', action='store_true')
    p.add_argument('--infer_returns', default='list')
    p.add_argument('--no_paused', action='store_true')
    p.add_argument('--hang', action='store_true')
    p.add_argument('--positional_bind', action='store_true')
    p.add_argument('--slow_infer', type=float, default=0)
    config = p.parse_args()
    bind_model(config)
    if config.pause and not config.no_paused:
        nsml.paused(scope=locals())
    # Trains whatever the mode, as careless scripts do: a submit must never get here.
    start = state['epochs_done']
    print(f'training from epoch {start} (mode {config.mode})', flush=True)
    while config.hang:
        time.sleep(1)
    with open(os.path.join(DATASET_PATH, 'train', 'train_data')) as f:
        xs = [float(line) for line in f if line.strip()]
    for epoch in range(start, start + config.epochs):
        state['threshold'] = sum(xs) / len(xs)
        state['epochs_done'] = epoch + 1
        nsml.report(step=epoch, train__loss=1.0 / (epoch + 1))
        nsml.save(epoch)
