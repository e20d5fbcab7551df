"""The scikit-learn reference of a run: converted conventions, metrics.json, plot and CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minilearn import layers
from minilearn.config import load_config, resolve_config
from minilearn.losses import CrossEntropy
from minilearn.model import Sequential
from minilearn.reference import (
    fit_sklearn_reference,
    logistic_regression_params,
    mlp_params,
)
from minilearn.runner import load_splits, run

REPO = Path(__file__).resolve().parent.parent


def softmax_gradient(W, b, X, y, weight=None):
    """Return dL/dW (D, K) of minilearn's mean cross-entropy for a Linear layer with W, b."""
    linear = layers.Linear(W.shape[0], W.shape[1], rng=np.random.default_rng(0))
    linear.params["weight"][...] = W
    linear.params["bias"][...] = b
    model = Sequential([linear])
    loss = CrossEntropy(weight=weight)
    loss.forward(model.forward(X), y)
    model.backward(loss.backward())
    return linear.grads["weight"]


def fit_logistic(config, X, y, n_classes):
    from sklearn.linear_model import LogisticRegression

    params = logistic_regression_params(config, y, n_classes)
    return LogisticRegression(**dict(params, tol=1e-12, max_iter=10000)).fit(X, y), params


def blobs(n_classes, n=90, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    X = rng.normal(size=(n, 4)) + 0.7 * np.eye(4)[y]
    return X, y


@pytest.mark.parametrize("weight_decay", [0.05, 0.3])
def test_multinomial_c_gives_minilearn_optimum(weight_decay):
    # At scikit-learn's optimum, minilearn's gradient of mean CE + (lambda / 2) ||W||^2
    # in W vanishes when C = 1 / (lambda * n). The biases are left out of both.
    X, y = blobs(3)
    config = resolve_config({"optimizer": {"weight_decay": weight_decay}})
    estimator, params = fit_logistic(config, X, y, 3)

    W = estimator.coef_.T
    grad = softmax_gradient(W, estimator.intercept_, X, y) + weight_decay * W

    assert params["C"] == pytest.approx(1 / (weight_decay * len(y)))
    np.testing.assert_allclose(grad, 0, atol=1e-7)


def test_binary_c_gives_minilearn_optimum():
    # scikit-learn's one vector w is minilearn's W1 - W0 with W1 = -W0 = w / 2.
    weight_decay = 0.1
    X, y = blobs(2)
    config = resolve_config({"optimizer": {"weight_decay": weight_decay}})
    estimator, params = fit_logistic(config, X, y, 2)

    w = estimator.coef_[0]
    W = np.stack([-w / 2, w / 2], axis=1)
    b = np.array([-estimator.intercept_[0] / 2, estimator.intercept_[0] / 2])
    grad = softmax_gradient(W, b, X, y) + weight_decay * W

    assert params["C"] == pytest.approx(2 / (weight_decay * len(y)))
    np.testing.assert_allclose(grad, 0, atol=1e-7)


def test_class_weights_scale_c_by_summed_weights():
    weight_decay = 0.2
    class_weight = [1.0, 3.0, 0.5]
    X, y = blobs(3)
    config = resolve_config({"optimizer": {"weight_decay": weight_decay},
                             "loss": {"weight": class_weight}})
    estimator, params = fit_logistic(config, X, y, 3)

    W = estimator.coef_.T
    grad = softmax_gradient(W, estimator.intercept_, X, y, weight=class_weight) + weight_decay * W

    assert params["class_weight"] == {0: 1.0, 1: 3.0, 2: 0.5}
    assert params["C"] == pytest.approx(1 / (weight_decay * np.sum(np.array(class_weight)[y])))
    np.testing.assert_allclose(grad, 0, atol=1e-7)


def test_balanced_weight_passes_through():
    X, y = blobs(3)
    config = resolve_config({"optimizer": {"weight_decay": 0.1}, "loss": {"weight": "balanced"}})

    params = logistic_regression_params(config, y, 3)

    assert params["class_weight"] == "balanced"
    # Balanced weights sum to n over the samples, so C is as without weights.
    assert params["C"] == pytest.approx(1 / (0.1 * len(y)))


def test_no_weight_decay_means_no_penalty():
    config = resolve_config({})

    assert logistic_regression_params(config, np.arange(10) % 2, 2)["C"] == float("inf")


def test_mlp_params_convert_alpha_and_solver():
    config = resolve_config({
        "model": {"hidden": [32, 16], "activation": "sigmoid"},
        "optimizer": {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.001},
        "training": {"epochs": 7, "batch_size": 50},
        "seed": 3,
    })

    params = mlp_params(config, n_train=400)

    assert params["hidden_layer_sizes"] == (32, 16)
    assert params["activation"] == "logistic"
    assert params["alpha"] == pytest.approx(0.001 * 50)
    assert params["solver"] == "sgd"
    assert params["momentum"] == 0.9
    assert params["nesterovs_momentum"] is True
    assert params["max_iter"] == params["n_iter_no_change"] == 7
    assert params["random_state"] == 3


def test_mlp_params_for_adam_and_small_data():
    config = resolve_config({"model": {"hidden": [8]},
                             "optimizer": {"name": "adam", "betas": [0.8, 0.99], "eps": 1e-6},
                             "training": {"batch_size": 500}})

    params = mlp_params(config, n_train=120)

    assert params["solver"] == "adam"
    assert (params["beta_1"], params["beta_2"], params["epsilon"]) == (0.8, 0.99, 1e-6)
    assert params["batch_size"] == 120
    assert params["learning_rate_init"] == 0.001


def iris_config(**sections):
    raw = {"data": {"name": "iris"}, "training": {"epochs": 5}, "reference": {"sklearn": True}}
    raw.update(sections)
    return resolve_config(raw)


def test_reference_record_for_softmax_regression():
    config = iris_config()

    record = fit_sklearn_reference(config, load_splits(config))

    assert record["model"] == "LogisticRegression"
    assert record["params"]["C"] == "inf"
    assert record["converged"] is True
    assert 0.8 <= record["test"]["accuracy"] <= 1.0
    assert record["test"]["log_loss"] > 0


def test_reference_record_for_mlp():
    config = iris_config(model={"hidden": [8]}, training={"epochs": 20})

    record = fit_sklearn_reference(config, load_splits(config))

    assert record["model"] == "MLPClassifier"
    assert record["params"]["hidden_layer_sizes"] == [8]
    assert record["n_iter"] == 20
    assert record["converged"] is False
    assert 0.0 <= record["test"]["accuracy"] <= 1.0


def test_reference_is_json_ready():
    config = iris_config(loss={"weight": [1.0, 2.0, 1.0]}, optimizer={"weight_decay": 0.01})

    record = fit_sklearn_reference(config, load_splits(config))

    assert json.loads(json.dumps(record, allow_nan=False)) == record
    assert record["params"]["class_weight"] == {"0": 1.0, "1": 2.0, "2": 1.0}


def test_run_records_reference_in_metrics(tmp_path):
    config = iris_config()

    result = run(config, out=tmp_path / "run", progress=False)

    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    reference = metrics["reference"]["sklearn"]
    assert reference == result.reference["sklearn"]
    assert set(reference["test"]) == {"accuracy", "log_loss"}
    assert set(metrics["test"]) >= {"accuracy", "loss"}
    assert (tmp_path / "run" / "loss_curve.png").stat().st_size > 0


def test_run_without_reference_records_null(tmp_path):
    config = resolve_config({"data": {"name": "iris"}, "training": {"epochs": 2}})

    result = run(config, out=tmp_path / "run", progress=False)

    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["reference"] is None
    assert result.reference is None


def test_reference_is_repeatable(tmp_path):
    config = iris_config(model={"hidden": [4]})

    run(config, out=tmp_path / "a", progress=False)
    run(config, out=tmp_path / "b", progress=False)

    first = json.loads((tmp_path / "a" / "metrics.json").read_text())
    second = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert first["reference"] == second["reference"]


def test_cli_reference_flag(tmp_path):
    config_path = tmp_path / "iris.toml"
    config_path.write_text('[data]\nname = "iris"\n[training]\nepochs = 3\n', encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    result = subprocess.run([sys.executable, "-m", "minilearn", "run", str(config_path),
                             "--out", str(tmp_path / "run"), "--quiet", "--reference"],
                            capture_output=True, text=True, env=env, timeout=120)

    assert result.returncode == 0, result.stderr
    assert "scikit-learn LogisticRegression: test accuracy: " in result.stdout
    saved = load_config(tmp_path / "run" / "config.toml")
    assert saved["reference"]["sklearn"] is True
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["reference"]["sklearn"]["model"] == "LogisticRegression"
