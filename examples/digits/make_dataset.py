"""Write the digits dataset folder in NSML's leaderboard layout, from scikit-learn's bundled copy.

    python make_dataset.py data/digits
    nsml dataset push digits data/digits

train/train_data, train/train_label: what training sees (as CSV: 64 pixel values / one label).
test/test_data, test/test_label: the hidden split; sessions never see test/.
"""

import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits


def write(folder: Path, test_fraction: float = 0.25, seed: int = 0) -> None:
    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    n_test = int(len(order) * test_fraction)
    splits = {"test": order[:n_test], "train": order[n_test:]}
    for split, idx in splits.items():
        (folder / split).mkdir(parents=True, exist_ok=True)
        np.savetxt(folder / split / f"{split}_data", digits.data[idx], fmt="%d", delimiter=",")
        np.savetxt(folder / split / f"{split}_label", digits.target[idx], fmt="%d")
    print(f"wrote {len(splits['train'])} training and {n_test} hidden test images to {folder}")


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else "data/digits"))
