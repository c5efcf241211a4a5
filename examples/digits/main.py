"""Digits classifier written the way NSML users write entry files.

Runs on NSML (`nsml run -d digits -a "--epochs 10"`) and, unchanged, as plain Python
(`python main.py --data data/digits`). Reserved arguments --mode, --pause and --iteration are
what NSML passes when it re-launches this file to fork, submit or serve it.
"""

import argparse
import os
import pickle

import numpy as np
from sklearn.neural_network import MLPClassifier

import nsml
from nsml import DATASET_PATH, HAS_DATASET, IS_ON_NSML


def bind_model(model):
    def save(dir_path, **kwargs):
        with open(os.path.join(dir_path, "model.pkl"), "wb") as f:
            pickle.dump(model, f)

    def load(dir_path, **kwargs):
        with open(os.path.join(dir_path, "model.pkl"), "rb") as f:
            loaded = pickle.load(f)
        model.__dict__.update(loaded.__dict__)
        print("model loaded!")

    def infer(raw_data, **kwargs):
        if isinstance(raw_data, str):  # a submit passes the path of test/test_data
            raw_data = np.loadtxt(raw_data, delimiter=",", ndmin=2)
        elif len(raw_data) and isinstance(raw_data[0], str):  # `nsml infer`: one CSV line per image
            raw_data = [[float(v) for v in line.split(",")] for line in raw_data]
        data = np.asarray(raw_data, dtype=float) / 16.0
        probs = model.predict_proba(data)
        return list(zip(probs.max(axis=1).tolist(), probs.argmax(axis=1).tolist()))

    nsml.bind(save=save, load=load, infer=infer)


def read_split(root, split):
    data = np.loadtxt(os.path.join(root, split, f"{split}_data"), delimiter=",") / 16.0
    labels = np.loadtxt(os.path.join(root, split, f"{split}_label"), dtype=int)
    return data, labels


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--mode", type=str, default="train")  # reserved
    p.add_argument("--pause", type=int, default=0)  # reserved
    p.add_argument("--iteration", type=str, default="0")  # reserved
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--data", type=str, default="data/digits", help="dataset folder when run off NSML")
    config = p.parse_args()

    root = DATASET_PATH if (HAS_DATASET or IS_ON_NSML) else config.data
    model = MLPClassifier(hidden_layer_sizes=(config.hidden,), learning_rate_init=config.lr, random_state=0)
    bind_model(model)
    if config.pause:
        nsml.paused(scope=locals())

    if config.mode == "train":
        x, y = read_split(root, "train")
        n_val = len(y) // 5
        x_val, y_val, x_train, y_train = x[:n_val], y[:n_val], x[n_val:], y[n_val:]
        classes = np.arange(10)
        for epoch in range(config.epochs):
            model.partial_fit(x_train, y_train, classes=classes)
            val_acc = float((model.predict(x_val) == y_val).mean())
            nsml.report(summary=True, scope=locals(), step=epoch, epoch=epoch, epoch_total=config.epochs,
                        train__loss=float(model.loss_), val__accuracy=val_acc)
            print(f"epoch {epoch + 1}/{config.epochs}: loss {model.loss_:.4f}, validation accuracy {val_acc:.3f}")
            nsml.save(epoch)
