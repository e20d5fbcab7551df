"""Measure the shipped configs' test accuracy over seeds and set it beside scikit-learn's.

For each shipped config and each seed, minilearn trains the config with that seed
(the seed sets the split and the initialization). scikit-learn is measured the
same way as its published yardstick: a 25% stratified test split with the seed,
features standardized on the training part, then ``LogisticRegression()`` or
``MLPClassifier((64,), random_state=seed)`` with default settings. The two use
different splits of the remaining 75%: minilearn also holds out a validation part.

Usage: python experiments/accuracy_table.py [--seeds 5] [CONFIG ...]
Prints a Markdown table of mean test accuracy and the slowest run's wall time.
"""

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

from minilearn.config import load_config, make_loss_from_config
from minilearn.data import load_dataset
from minilearn.runner import build_model, build_optimizer, load_splits, seed_streams
from minilearn.training import evaluate, fit

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIGS = [f"configs/{model}_{dataset}.toml"
                   for dataset in ("iris", "wine", "breast_cancer", "digits")
                   for model in ("softmax", "mlp")] + ["configs/mlp_moons.toml"]


def minilearn_accuracy(config_path, seed):
    """Train the config with ``seed``; returns (test accuracy, seconds)."""
    config = load_config(config_path, [f"seed={seed}"])
    started = time.perf_counter()
    splits = load_splits(config)
    init_rng, shuffle_rng = seed_streams(seed)
    model = build_model(config["model"], splits.n_features, splits.n_classes, init_rng)
    loss = make_loss_from_config(config["loss"])
    fit(model, loss, build_optimizer(config["optimizer"]), *splits.train,
        epochs=config["training"]["epochs"], batch_size=config["training"]["batch_size"],
        seed=shuffle_rng, validation=splits.val, progress=False)
    _, accuracy = evaluate(model, loss, *splits.test)
    return accuracy, time.perf_counter() - started


def sklearn_accuracy(config_path, seed):
    """Fit scikit-learn's counterpart of the config on a 25% stratified split with ``seed``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    config = load_config(config_path, [f"seed={seed}"])
    dataset = load_dataset(config["data"]["name"], seed=seed, **config["data"]["options"])
    X_train, X_test, y_train, y_test = train_test_split(
        dataset.X, dataset.y, test_size=0.25, stratify=dataset.y, random_state=seed)
    scaler = StandardScaler().fit(X_train)

    if config["model"]["hidden"]:
        estimator = MLPClassifier((64,), random_state=seed)
    else:
        estimator = LogisticRegression()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(scaler.transform(X_train), y_train)
    return estimator.score(scaler.transform(X_test), y_test)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("configs", nargs="*", default=DEFAULT_CONFIGS, help="config files")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1 (default 5)")
    args = parser.parse_args(argv)

    print("| config | minilearn mean test accuracy | scikit-learn mean test accuracy "
          "| slowest minilearn run (s) |")
    print("|---|---|---|---|")
    for config_path in args.configs:
        path = Path(config_path) if Path(config_path).exists() else REPO / config_path
        ours = [minilearn_accuracy(path, seed) for seed in range(args.seeds)]
        theirs = [sklearn_accuracy(path, seed) for seed in range(args.seeds)]
        accuracy = np.mean([value for value, _ in ours])
        slowest = max(seconds for _, seconds in ours)
        print(f"| `{path.name}` | {accuracy:.3f} | {np.mean(theirs):.3f} | {slowest:.1f} |")


if __name__ == "__main__":
    main()
