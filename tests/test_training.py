"""The training loop: epoch metrics, seeding, divergence, interruption and input checks."""

import numpy as np
import pytest

from handed_cases import case
from minilearn import layers
from minilearn.losses import MSE, CrossEntropy, Loss
from minilearn.model import Sequential
from minilearn.optim import SGD
from minilearn.training import _is_finite, evaluate, fit


class TableLoss(Loss):
    """A loss whose value for sample i is ``table[i]``, read from the first feature.

    With an Identity model the output's first column is the sample index, so the
    loss of a batch is the mean of its samples' table entries. The gradient is zero.
    """

    expects = "any"

    def __init__(self, table):
        self.table = np.asarray(table, dtype=np.float64)

    def forward(self, outputs, targets):
        self._outputs = outputs
        return float(np.mean(self.table[outputs[:, 0].astype(int)]))

    def backward(self, grad_output=None):
        return np.zeros_like(self._outputs)


def small_mlp(rng, dtype=np.float64):
    return Sequential([layers.Linear(4, 16, rng=rng, dtype=dtype, init="he"), layers.ReLU(),
                       layers.Linear(16, 3, rng=rng, dtype=dtype)])


def blobs(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    centers = np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    return centers[y] + rng.normal(size=(n, 4)), y


def test_epoch_loss_weighs_short_last_batch():
    spec = case("training", "epoch-loss-partial-last-batch")
    n = len(spec["per_sample_losses"])
    X = np.stack([np.arange(n), np.zeros(n)], axis=1).astype(float)
    y = np.arange(n) % 2
    model = Sequential([layers.Identity()])

    for seed in range(5):
        history = fit(model, TableLoss(spec["per_sample_losses"]), SGD(lr=0.1), X, y,
                      epochs=3, batch_size=spec["batch_size"], seed=seed, progress=False)
        assert history["train_loss"] == pytest.approx([spec["expected_epoch_loss"]] * 3, rel=1e-15)


def test_same_seed_bit_identical_despite_global_state():
    X, y = blobs()

    def train(seed):
        rng = np.random.default_rng(seed)
        model = small_mlp(rng)
        initial = model.state_dict()
        history = fit(model, CrossEntropy(), SGD(lr=0.1, momentum=0.9), X, y, epochs=5,
                      batch_size=16, seed=seed, progress=False, validation=(X, y))
        return initial, model.state_dict(), history

    first_initial, first_final, first_history = train(0)
    np.random.rand(5)
    second_initial, second_final, second_history = train(0)
    other_initial, _, _ = train(1)

    for name in first_initial:
        np.testing.assert_array_equal(first_initial[name], second_initial[name])
        np.testing.assert_array_equal(first_final[name], second_final[name])
    assert first_history["train_loss"] == second_history["train_loss"]
    assert first_history["val_loss"] == second_history["val_loss"]
    assert not np.array_equal(first_initial["0.weight"], other_initial["0.weight"])


def test_divergence_stops_at_first_nonfinite_loss():
    spec = case("training", "divergence-detected-at-first-nonfinite-loss")
    model = Sequential([layers.Linear(1, 1, bias=False, dtype=spec["dtype"])])
    model.layers[0].params["weight"][...] = spec["w0"]
    X = np.array([[spec["x"]]])
    y = np.array([[spec["y"]]])

    history = fit(model, MSE(), SGD(lr=spec["lr"]), X, y, epochs=200, batch_size=1, seed=0,
                  progress=False)

    expected_step = spec["expected_first_nonfinite_step"]
    assert history.status == "diverged"
    assert history.first_nonfinite["global_step"] == expected_step
    assert history.first_nonfinite["quantity"] == "loss"
    assert len(history) == expected_step
    assert np.isfinite(model.layers[0].params["weight"]).all()
    assert f"epoch {expected_step + 1}" in history.message
    assert "lower the learning rate" in history.message
    assert np.all(np.isfinite(history["train_loss"]))


def test_divergence_continue_policy_keeps_training():
    model = Sequential([layers.Linear(1, 1, bias=False)])
    model.layers[0].params["weight"][...] = 1.0

    history = fit(model, MSE(), SGD(lr=1.0), np.array([[10.0]]), np.array([[0.0]]),
                  epochs=80, batch_size=1, seed=0, progress=False, on_nonfinite="continue")

    assert history.status == "completed"
    assert len(history) == 80
    assert history.first_nonfinite["global_step"] == 67
    assert history["nonfinite_steps"][66] == 0
    assert history["nonfinite_steps"][67] == 1
    assert not np.isfinite(history["train_loss"][67])


def test_fit_learns_separable_blobs():
    X, y = blobs()
    model = small_mlp(np.random.default_rng(0))

    history = fit(model, CrossEntropy(), SGD(lr=0.1, momentum=0.9), X, y, epochs=20,
                  batch_size=16, seed=0, progress=False, validation=(X, y))

    assert history.status == "completed"
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    assert history["val_accuracy"][-1] > 0.9
    assert [record["epoch"] for record in history.epochs] == list(range(1, 21))
    assert history["lr"] == [0.1] * 20


def test_fit_float32_stays_float32():
    X, y = blobs()
    model = small_mlp(np.random.default_rng(0), dtype=np.float32)

    fit(model, CrossEntropy(), SGD(lr=0.1, momentum=0.9), X, y, epochs=2, batch_size=16,
        seed=0, progress=False)

    for name, value in model.named_parameters().items():
        assert value.dtype == np.float32, name
    for name, value in model.named_gradients().items():
        assert value.dtype == np.float32, name


def test_batch_larger_than_dataset_is_one_batch():
    X, y = blobs(n=30)
    model = small_mlp(np.random.default_rng(0))
    steps = []
    optimizer = SGD(lr=0.1)
    original_step = optimizer.step
    optimizer.step = lambda params, grads: (steps.append(1), original_step(params, grads))

    history = fit(model, CrossEntropy(), optimizer, X, y, epochs=2, batch_size=1000, seed=0,
                  progress=False)

    assert history.status == "completed"
    assert len(steps) == 2


def test_on_epoch_end_sees_every_epoch():
    X, y = blobs(n=30)
    seen = []

    fit(small_mlp(np.random.default_rng(0)), CrossEntropy(), SGD(lr=0.1), X, y, epochs=3,
        batch_size=8, seed=0, progress=False, on_epoch_end=lambda record, model: seen.append(record["epoch"]))

    assert seen == [1, 2, 3]


def test_evaluate_matches_direct_computation():
    X, y = blobs(n=50)
    model = small_mlp(np.random.default_rng(0))
    logits = model.forward(X)
    expected_loss = CrossEntropy().forward(logits, y)
    expected_accuracy = np.mean(np.argmax(logits, axis=1) == y)

    loss, accuracy = evaluate(model, CrossEntropy(), X, y, batch_size=7)

    assert loss == pytest.approx(expected_loss, rel=1e-12)
    assert accuracy == expected_accuracy


@pytest.mark.parametrize("mutate, error, match", [
    (lambda X, y: (X[:, :1].ravel(), y), ValueError, "must be 2-D"),
    (lambda X, y: (X[:0], y[:0]), ValueError, "is empty"),
    (lambda X, y: (np.where(np.arange(len(X))[:, None] == 3, np.nan, X), y), ValueError, "NaN or infinite values, first in row 3"),
    (lambda X, y: (X, y[:-1]), ValueError, "have 120 samples but the targets have 119"),
    (lambda X, y: (X, np.where(np.arange(len(y)) == 5, -1, y)), ValueError, r"targets\[5\] = -1 is outside"),
    (lambda X, y: (X, np.where(np.arange(len(y)) == 5, 3, y)), ValueError, r"outside the valid class range \[0, 3\)"),
    (lambda X, y: (X, y + 0.5), TypeError, "must be integer class indices"),
    (lambda X, y: (X, np.zeros_like(y)), ValueError, "single class"),
    (lambda X, y: (X, y % 2), ValueError, "outputs 3 values per sample but the targets have 2 classes"),
    (lambda X, y: (X.astype(str), y), TypeError, "features must be real numbers"),
])
def test_fit_rejects_bad_data(mutate, error, match):
    X, y = mutate(*blobs())

    with pytest.raises(error, match=match):
        fit(small_mlp(np.random.default_rng(0)), CrossEntropy(), SGD(lr=0.1), X, y, epochs=1,
            batch_size=8, seed=0, progress=False)


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"on_nonfinite": "ignore"}, "on_nonfinite must be one of stop, continue"),
])
def test_fit_rejects_bad_arguments(kwargs, match):
    X, y = blobs()
    arguments = {"epochs": 1, "batch_size": 8, "seed": 0, "progress": False, **kwargs}

    with pytest.raises(ValueError, match=match):
        fit(small_mlp(np.random.default_rng(0)), CrossEntropy(), SGD(lr=0.1), X, y, **arguments)


def test_history_index_and_unknown_metric():
    X, y = blobs(n=30)
    history = fit(small_mlp(np.random.default_rng(0)), CrossEntropy(), SGD(lr=0.1), X, y,
                  epochs=2, batch_size=8, seed=0, progress=False)

    assert history[0]["epoch"] == 1
    assert history[-1]["epoch"] == 2
    with pytest.raises(KeyError, match="no metric 'val_acc' in the history"):
        history["val_acc"]


@pytest.mark.parametrize("dtype, large", [(np.float32, 2e20), (np.float64, 1e160)])
def test_finite_check_accepts_large_finite_values(dtype, large):
    # The squared norm of these arrays overflows, but every entry is finite.
    values = np.array([[1.0, -large], [large, 0.0]], dtype=dtype)

    assert _is_finite(values)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finite_check_rejects_non_finite(dtype, bad):
    values = np.ones((3, 2), dtype=dtype)
    values[1, 1] = bad

    assert not _is_finite(values)
