"""The AutoML benchmark's training tasks (bench/automl_compare.py; issue 16): real training on
the CPU with bundled or generated data, no downloads. Imported by our trial entry scripts
(bench/automl_tasks/*.py, run as sessions), by the in-process Optuna peer and by the Ray Tune
peer (bench/_automl_peers.py, in its own virtualenv), so every strategy trains the very same
model on the very same split.

Each task: a search space in NSML's h_params format (nsml.core.automl_config), the most epochs a
trial may run (`max_epochs`), a target validation accuracy for "time to target", and
`Trainer(params, seed)` with `.epoch() -> validation accuracy` (one budget unit: an epoch, or
ITERS_PER_UNIT boosting iterations), `.state()` / `.restore(state)` (bytes) for checkpoints, so
PBT and stop-and-go resume where a trial was.

Imports of scikit-learn and torch happen inside the tasks: a trial pays only for its own.
"""

import io
import pickle

SPLIT_SEED = 0  # the data split is fixed: only the trial's own seed varies


def _digits(flat: bool):
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    if not flat:
        x = x.reshape(-1, 1, 8, 8)
    return train_test_split(x, y, test_size=0.25, random_state=SPLIT_SEED, stratify=y)


class MLP:
    """scikit-learn's MLPClassifier on the digits, one partial_fit pass over the training set an epoch."""

    space = {
        "lr": {"parameters": [1e-4, 0.3], "distribution": "log_uniform", "type": "float"},
        "hidden": {"parameters": [8, 256], "distribution": "log_uniform", "type": "int"},
        "alpha": {"parameters": [1e-6, 1e-1], "distribution": "log_uniform", "type": "float"},
        "batch": {"parameters": [16, 32, 64, 128, 256], "distribution": "categorical", "type": "int"},
        "beta1": {"parameters": [0.5, 0.99], "distribution": "uniform", "type": "float"},
    }
    max_epochs = 12
    target = 0.97

    def __init__(self, params: dict, seed: int = 0):
        import numpy as np
        from sklearn.neural_network import MLPClassifier

        self.xt, self.xv, self.yt, self.yv = _digits(flat=True)
        self.classes = np.unique(self.yt)
        self.model = MLPClassifier(hidden_layer_sizes=(int(params["hidden"]),), learning_rate_init=float(params["lr"]),
                                   alpha=float(params["alpha"]), batch_size=int(params["batch"]), beta_1=float(params["beta1"]),
                                   random_state=seed, shuffle=True)
        self.epochs = 0

    def epoch(self) -> float:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.epochs == 0:
                self.model.partial_fit(self.xt, self.yt, classes=self.classes)
            else:
                self.model.partial_fit(self.xt, self.yt)
        self.epochs += 1
        return float(self.model.score(self.xv, self.yv))

    def state(self) -> bytes:
        return pickle.dumps((self.model, self.epochs))

    def restore(self, blob: bytes) -> None:
        self.model, self.epochs = pickle.loads(blob)


class CNN:
    """A small CNN in torch on the digits as 8x8 images, one thread, an epoch well under a second."""

    space = {
        "lr": {"parameters": [1e-4, 0.1], "distribution": "log_uniform", "type": "float"},
        "channels": {"parameters": [4, 24], "distribution": "uniform", "type": "int"},
        "dropout": {"parameters": [0.0, 0.6], "distribution": "uniform", "type": "float"},
        "wd": {"parameters": [1e-6, 1e-2], "distribution": "log_uniform", "type": "float"},
        "batch": {"parameters": [32, 64, 128, 256], "distribution": "categorical", "type": "int"},
    }
    max_epochs = 10
    target = 0.97

    def __init__(self, params: dict, seed: int = 0):
        import torch
        from torch import nn

        torch.set_num_threads(1)
        torch.manual_seed(seed)
        xt, xv, yt, yv = _digits(flat=False)
        self.xt, self.yt = torch.tensor(xt, dtype=torch.float32), torch.tensor(yt)
        self.xv, self.yv = torch.tensor(xv, dtype=torch.float32), torch.tensor(yv)
        c = int(params["channels"])
        self.model = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(float(params["dropout"])), nn.Linear(2 * c * 4, 10))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=float(params["lr"]), weight_decay=float(params["wd"]))
        self.batch = int(params["batch"])
        self.gen = torch.Generator().manual_seed(seed)
        self.epochs = 0

    def epoch(self) -> float:
        import torch
        from torch.nn import functional as F

        self.model.train()
        order = torch.randperm(len(self.xt), generator=self.gen)
        for i in range(0, len(order), self.batch):
            idx = order[i:i + self.batch]
            self.opt.zero_grad()
            F.cross_entropy(self.model(self.xt[idx]), self.yt[idx]).backward()
            self.opt.step()
        self.epochs += 1
        self.model.eval()
        with torch.no_grad():
            return float((self.model(self.xv).argmax(1) == self.yv).float().mean())

    def state(self) -> bytes:
        import torch

        buf = io.BytesIO()
        torch.save({"model": self.model.state_dict(), "opt": self.opt.state_dict(), "gen": self.gen.get_state(),
                    "epochs": self.epochs}, buf)
        return buf.getvalue()

    def restore(self, blob: bytes) -> None:
        import torch

        s = torch.load(io.BytesIO(blob), weights_only=False)
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["opt"])
        self.gen.set_state(s["gen"])
        self.epochs = s["epochs"]


class GBDT:
    """HistGradientBoostingClassifier with warm_start on a seeded make_classification set;
    a budget unit is ITERS_PER_UNIT boosting iterations."""

    ITERS_PER_UNIT = 10
    space = {
        "lr": {"parameters": [0.01, 0.5], "distribution": "log_uniform", "type": "float"},
        "leaves": {"parameters": [4, 64], "distribution": "log_uniform", "type": "int"},
        "min_leaf": {"parameters": [2, 100], "distribution": "log_uniform", "type": "int"},
        "l2": {"parameters": [1e-4, 10.0], "distribution": "log_uniform", "type": "float"},
        "bins": {"parameters": [16, 32, 64, 128, 255], "distribution": "categorical", "type": "int"},
    }
    max_epochs = 12
    target = 0.90

    def __init__(self, params: dict, seed: int = 0):
        from sklearn.datasets import make_classification
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.model_selection import train_test_split

        x, y = make_classification(n_samples=2000, n_features=20, n_informative=10, n_redundant=4, n_classes=2,
                                   class_sep=0.8, flip_y=0.03, random_state=SPLIT_SEED)
        self.xt, self.xv, self.yt, self.yv = train_test_split(x, y, test_size=0.25, random_state=SPLIT_SEED)
        self.model = HistGradientBoostingClassifier(
            learning_rate=float(params["lr"]), max_leaf_nodes=int(params["leaves"]), min_samples_leaf=int(params["min_leaf"]),
            l2_regularization=float(params["l2"]), max_bins=int(params["bins"]), max_iter=0, warm_start=True,
            early_stopping=False, random_state=seed)
        self.epochs = 0

    def epoch(self) -> float:
        self.epochs += 1
        self.model.set_params(max_iter=self.epochs * self.ITERS_PER_UNIT)
        self.model.fit(self.xt, self.yt)
        return float(self.model.score(self.xv, self.yv))

    def state(self) -> bytes:
        return pickle.dumps((self.model, self.epochs))

    def restore(self, blob: bytes) -> None:
        self.model, self.epochs = pickle.loads(blob)


TASKS = {"mlp": MLP, "cnn": CNN, "gbdt": GBDT}


def sample_space(space: dict, rng) -> dict:
    """A random point of an h_params space (for peers that have no sampler of their own)."""
    import math

    out = {}
    for name, p in space.items():
        a = p["parameters"]
        if p["distribution"] == "categorical":
            out[name] = rng.choice(a)
        elif p["distribution"] == "log_uniform":
            v = math.exp(rng.uniform(math.log(a[0]), math.log(a[1])))
            out[name] = int(round(v)) if p["type"] == "int" else v
        else:
            v = rng.uniform(a[0], a[1])
            out[name] = int(round(v)) if p["type"] == "int" else v
    return out
