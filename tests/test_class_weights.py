"""Class weights in configs: "balanced" or a list, passed through to CrossEntropy."""

import json

import numpy as np
import pytest

from minilearn.config import (
    ConfigError,
    class_weights,
    load_config,
    make_loss_from_config,
    resolve_config,
    to_toml,
)
from minilearn.losses import CrossEntropy
from minilearn.runner import run


def test_balanced_weights_match_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2])

    weights = class_weights("balanced", labels, 3)

    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    np.testing.assert_allclose(weights, expected, rtol=1e-15)
    np.testing.assert_allclose(weights, [1.0, 2.0, 2 / 3], rtol=1e-15)


def test_balanced_needs_every_class():
    with pytest.raises(ValueError, match="class 1 has no sample"):
        class_weights("balanced", np.array([0, 0, 2]), 3)


def test_weight_list_must_match_classes():
    with pytest.raises(ValueError, match="loss.weight has 2 entries but the data has 3 classes"):
        class_weights([1.0, 2.0], np.array([0, 1, 2]), 3)


def test_loss_gets_balanced_weights():
    config = resolve_config({"loss": {"weight": "balanced"}})
    labels = np.array([0, 0, 0, 1])

    loss = make_loss_from_config(config["loss"], labels=labels, n_classes=2)

    assert isinstance(loss, CrossEntropy)
    np.testing.assert_allclose(loss.weight, [4 / 6, 2.0], rtol=1e-15)


def test_balanced_without_labels_raises():
    config = resolve_config({"loss": {"weight": "balanced"}})

    with pytest.raises(ValueError, match="needs the training labels"):
        make_loss_from_config(config["loss"])


def test_weight_list_config_round_trips(tmp_path):
    import tomllib

    config = resolve_config({"loss": {"weight": [1, 2.5, 1]}})

    assert tomllib.loads(to_toml(config)) == config
    loss = make_loss_from_config(config["loss"])
    np.testing.assert_array_equal(loss.weight, [1.0, 2.5, 1.0])


@pytest.mark.parametrize("raw, match", [
    ({"loss": {"weight": "equal"}}, r"loss.weight = 'equal' is invalid; expected 'balanced'"),
    ({"loss": {"weight": [1.0, -2.0]}}, r"loss.weight = \[1.0, -2.0\] is invalid"),
    ({"loss": {"name": "mse", "weight": "balanced"}}, r"unknown key 'loss.weight' for loss 'mse'"),
])
def test_weight_config_errors(raw, match):
    with pytest.raises(ConfigError, match=match):
        resolve_config(raw)


def test_run_with_balanced_weights(tmp_path):
    # breast_cancer has 212 malignant and 357 benign samples.
    config = resolve_config({"data": {"name": "breast_cancer"},
                             "loss": {"weight": "balanced"}, "training": {"epochs": 3}})

    result = run(config, out=tmp_path / "run", progress=False)

    assert result.status == "completed"
    saved = load_config(tmp_path / "run" / "config.toml")
    assert saved["loss"]["weight"] == "balanced"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 3


def test_run_rejects_weight_list_of_wrong_length(tmp_path):
    config = resolve_config({"data": {"name": "iris"}, "loss": {"weight": [1.0, 2.0]},
                             "training": {"epochs": 1}})

    with pytest.raises(ValueError, match="loss.weight has 2 entries but the data has 3 classes"):
        run(config, out=tmp_path / "run", progress=False)
