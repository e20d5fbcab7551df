"""The shipped configs reach scikit-learn's mean test accuracy, less one test sample.

The yardstick is scikit-learn's LogisticRegression (softmax configs) and
MLPClassifier((64,)) (MLP configs), mean test accuracy over seeds 0-4 with a 25%
stratified test split, as measured with scikit-learn 1.9. One test sample's worth
is 1/38 for iris, 1/45 for wine, 1/143 for breast_cancer and 1/450 for digits.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "experiments"))
from accuracy_table import minilearn_accuracy  # noqa: E402

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

YARDSTICK = {
    "softmax_iris": (0.958, 1 / 38),
    "mlp_iris": (0.953, 1 / 38),
    "softmax_wine": (0.987, 1 / 45),
    "mlp_wine": (0.996, 1 / 45),
    "softmax_breast_cancer": (0.971, 1 / 143),
    "mlp_breast_cancer": (0.972, 1 / 143),
    "softmax_digits": (0.969, 1 / 450),
    "mlp_digits": (0.976, 1 / 450),
}


@pytest.mark.parametrize("name", sorted(YARDSTICK))
def test_shipped_config_reaches_yardstick(name):
    mean, one_sample = YARDSTICK[name]

    results = [minilearn_accuracy(CONFIGS / f"{name}.toml", seed) for seed in range(5)]

    assert np.mean([accuracy for accuracy, _ in results]) >= mean - one_sample
    assert max(seconds for _, seconds in results) < 30


def test_moons_config_learns_the_moons():
    results = [minilearn_accuracy(CONFIGS / "mlp_moons.toml", seed) for seed in range(5)]

    assert np.mean([accuracy for accuracy, _ in results]) >= 0.95
