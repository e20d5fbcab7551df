"""Early stopping: patience, min_delta, NaN values, and the best parameters restored by fit."""

import math

import numpy as np
import pytest

from handed_cases import case
from minilearn import layers
from minilearn.early_stopping import EarlyStopping
from minilearn.losses import CrossEntropy
from minilearn.model import Sequential
from minilearn.optim import SGD
from minilearn.training import fit

NAN = float("nan")


class ScriptedValidationLoss(CrossEntropy):
    """Cross-entropy in training; in evaluation mode it returns the next scripted value.

    ``evaluate`` puts the model in evaluation mode and scores the validation set in
    one batch, so each epoch's val_loss is the next value of ``values``. The
    validation set has one sample, so evaluate's weighing by batch size
    (value * 1 / 1) keeps the values exact.
    ``train_losses`` optionally replaces the training loss of epoch e (from 1)
    when it is not None, e.g. with NaN to end the run as diverged.
    """

    def __init__(self, model, values, train_losses=None, steps_per_epoch=1):
        super().__init__()
        self.model = model
        self.values = iter(values)
        self.train_losses = train_losses or {}
        self.steps_per_epoch = steps_per_epoch
        self.train_calls = 0

    def forward(self, outputs, targets):
        loss = super().forward(outputs, targets)
        if not self.model.training:
            return next(self.values)
        epoch = self.train_calls // self.steps_per_epoch + 1
        self.train_calls += 1
        return self.train_losses.get(epoch, loss)


def tiny_problem(seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(24) % 2
    X = rng.normal(size=(24, 3)) + y[:, None]
    model = Sequential([layers.Linear(3, 2, rng=rng)])
    return model, X, y


def scripted_fit(val_losses, stopper, train_losses=None):
    """Fit the tiny problem, one step per epoch, with scripted validation losses.

    Returns (History, the parameters after each epoch, the model).
    """
    model, X, y = tiny_problem()
    loss = ScriptedValidationLoss(model, val_losses, train_losses)
    snapshots = []

    def keep_parameters(record, trained):
        snapshots.append(trained.state_dict())

    history = fit(model, loss, SGD(lr=0.5), X, y, epochs=len(val_losses), batch_size=len(X),
                  seed=0, validation=(X[:1], y[:1]), progress=False, on_epoch_end=keep_parameters,
                  early_stopping=stopper)
    return history, snapshots, model


def feed(stopper, values, key="val_loss"):
    """Give ``stopper`` one record per value; returns how many epochs ran before it stopped."""
    stopper.start()
    for epoch, value in enumerate(values, start=1):
        if stopper.update({"epoch": epoch, key: value}):
            return epoch
    return len(values)


@pytest.mark.parametrize("index", range(3))
def test_patience_and_min_delta_sequences(index):
    sequence = case("training", "early-stopping-patience-and-min-delta")["sequences"][index]
    stopper = EarlyStopping(patience=sequence["patience"], min_delta=sequence["min_delta"])

    epochs_run = feed(stopper, sequence["val_losses"])

    assert epochs_run == sequence["expected_epochs_run"]
    assert stopper.best_epoch == sequence["expected_best_epoch"]


@pytest.mark.parametrize("index", range(3))
def test_patience_sequences_through_fit(index):
    sequence = case("training", "early-stopping-patience-and-min-delta")["sequences"][index]
    stopper = EarlyStopping(patience=sequence["patience"], min_delta=sequence["min_delta"])

    history, snapshots, model = scripted_fit(sequence["val_losses"], stopper)

    assert len(history) == sequence["expected_epochs_run"]
    assert history.best_epoch == sequence["expected_best_epoch"]
    assert history["val_loss"] == sequence["val_losses"][:len(history)]
    best = snapshots[history.best_epoch - 1]
    for name, value in model.named_parameters().items():
        np.testing.assert_array_equal(value, best[name])


def test_stopped_history_says_why():
    sequence = case("training", "early-stopping-patience-and-min-delta")["sequences"][0]

    history, _, _ = scripted_fit(sequence["val_losses"], EarlyStopping(patience=2))

    assert history.status == "completed"
    assert history.stopped_epoch == 4
    assert "early stopping after epoch 4" in history.message
    assert "restored the parameters of epoch 2" in history.message


def test_nan_validation_loss_never_improves():
    spec = case("training", "early-stopping-ignores-nan")
    values = [NAN if value is None else value for value in spec["val_losses"]]
    stopper = EarlyStopping(patience=len(values))

    history, snapshots, model = scripted_fit(values, stopper)

    # The case numbers epochs from 0; History numbers them from 1.
    assert history.best_epoch - 1 == spec["expected_best_epoch"]
    assert stopper.best == spec["expected_best"]
    assert len(history) == len(values)
    best = snapshots[history.best_epoch - 1]
    for name, value in model.named_parameters().items():
        np.testing.assert_array_equal(value, best[name])


@pytest.mark.parametrize("position", range(5))
def test_nan_never_improves_at_any_position(position):
    values = [1.0, 0.8, 0.6, 0.4, 0.2]
    values[position] = NAN
    stopper = EarlyStopping(patience=10)

    feed(stopper, values)

    finite = [value for value in values if not math.isnan(value)]
    assert stopper.best == min(finite)
    assert stopper.best_epoch == values.index(min(finite)) + 1


@pytest.mark.parametrize("bad", [NAN, math.inf, -math.inf, None])
def test_nonfinite_values_count_toward_patience(bad):
    stopper = EarlyStopping(patience=2)

    epochs_run = feed(stopper, [1.0, bad, bad, 0.1])

    assert epochs_run == 3
    assert stopper.best_epoch == 1


def test_all_nan_keeps_last_parameters(caplog):
    stopper = EarlyStopping(patience=10)

    history, snapshots, model = scripted_fit([NAN, NAN, NAN], stopper)

    assert history.best_epoch is None
    for name, value in model.named_parameters().items():
        np.testing.assert_array_equal(value, snapshots[-1][name])
    assert "no epoch had a finite val_loss" in caplog.text


def test_accuracy_is_maximized():
    stopper = EarlyStopping(patience=2, min_delta=0.01, monitor="val_accuracy")

    epochs_run = feed(stopper, [0.5, 0.7, 0.705, 0.71, 0.9], key="val_accuracy")

    assert epochs_run == 4
    assert stopper.best_epoch == 2
    assert stopper.best == 0.7


def test_without_restore_keeps_last_parameters():
    stopper = EarlyStopping(patience=2, restore_best=False)

    history, snapshots, model = scripted_fit([1.0, 0.5, 0.9, 0.95], stopper)

    assert history.best_epoch == 2
    assert history.stopped_epoch == 4
    for name, value in model.named_parameters().items():
        np.testing.assert_array_equal(value, snapshots[-1][name])
    assert "restored" not in history.message


def test_best_parameters_restored_after_divergence():
    stopper = EarlyStopping(patience=10)

    history, snapshots, model = scripted_fit([1.0, 0.5, 0.7, 0.9], stopper,
                                             train_losses={4: NAN})

    assert history.status == "diverged"
    assert len(history) == 3
    assert history.best_epoch == 2
    assert "restored the parameters of epoch 2" in history.message
    for name, value in model.named_parameters().items():
        np.testing.assert_array_equal(value, snapshots[1][name])


def test_stopper_resets_between_fits():
    stopper = EarlyStopping(patience=1)

    first, _, _ = scripted_fit([1.0, 2.0, 3.0], stopper)
    second, _, _ = scripted_fit([5.0, 4.0, 3.0], stopper)

    assert first.stopped_epoch == 2
    assert second.stopped_epoch is None
    assert second.best_epoch == 3


def test_validation_monitor_needs_validation():
    model, X, y = tiny_problem()

    with pytest.raises(ValueError, match="monitors 'val_loss', but fit got no validation data"):
        fit(model, CrossEntropy(), SGD(lr=0.1), X, y, epochs=2, batch_size=8, seed=0,
            progress=False, early_stopping=EarlyStopping())


def test_training_loss_monitor_without_validation():
    model, X, y = tiny_problem()
    stopper = EarlyStopping(patience=3, monitor="train_loss")

    history = fit(model, CrossEntropy(), SGD(lr=0.1), X, y, epochs=4, batch_size=8, seed=0,
                  progress=False, early_stopping=stopper)

    losses = history["train_loss"]
    assert history.best_epoch == losses.index(min(losses)) + 1


@pytest.mark.parametrize("kwargs, error, match", [
    ({"patience": 0}, ValueError, "patience must be an integer >= 1, got 0"),
    ({"patience": 2.0}, TypeError, "patience must be an integer"),
    ({"min_delta": -0.1}, ValueError, "min_delta must be >= 0"),
    ({"min_delta": NAN}, ValueError, "min_delta must be >= 0"),
    ({"monitor": "accuracy"}, ValueError, "monitor must be one of val_loss"),
    ({"restore_best": 1}, TypeError, "restore_best must be true or false"),
])
def test_early_stopping_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        EarlyStopping(**kwargs)


def test_early_stopping_from_config_reaches_metrics(tmp_path):
    import json

    from minilearn.config import resolve_config
    from minilearn.runner import run

    config = resolve_config({"data": {"name": "iris"}, "training": {"epochs": 40},
                             "optimizer": {"lr": 0.5},
                             "early_stopping": {"enabled": True, "patience": 2,
                                                "min_delta": 0.01}})

    result = run(config, out=tmp_path / "run", progress=False)

    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    losses = [record["val_loss"] for record in metrics["epochs"]]
    assert metrics["best_epoch"] == result.history.best_epoch
    assert metrics["stopped_epoch"] == len(losses) < 40
    best = losses[metrics["best_epoch"] - 1]
    assert all(loss >= best - 0.01 for loss in losses[metrics["best_epoch"]:])
    assert metrics["stopped_epoch"] - metrics["best_epoch"] == 2


def test_early_stopping_off_by_default(tmp_path):
    import json

    from minilearn.config import resolve_config
    from minilearn.runner import run

    config = resolve_config({"data": {"name": "iris"}, "training": {"epochs": 2}})

    run(config, out=tmp_path / "run", progress=False)

    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert config["early_stopping"]["enabled"] is False
    assert metrics["best_epoch"] is None
    assert metrics["stopped_epoch"] is None


@pytest.mark.parametrize("raw, match", [
    ({"early_stopping": {"enabled": True}, "data": {"val_fraction": 0.0}},
     r"early_stopping.monitor = 'val_loss' needs a validation split"),
    ({"early_stopping": {"patience": 0}}, r"early_stopping.patience = 0 is invalid"),
    ({"early_stopping": {"monitor": "loss"}}, r"early_stopping.monitor = 'loss' is invalid"),
    ({"early_stopping": {"min_delta": -1.0}}, r"early_stopping.min_delta = -1.0 is invalid"),
    ({"early_stopping": {"patience_epochs": 3}}, r"unknown key 'early_stopping.patience_epochs'"),
])
def test_early_stopping_config_errors(raw, match):
    from minilearn.config import ConfigError, resolve_config

    with pytest.raises(ConfigError, match=match):
        resolve_config(raw)


def test_training_loss_monitor_without_validation_split():
    from minilearn.config import resolve_config

    config = resolve_config({"data": {"val_fraction": 0.0},
                             "early_stopping": {"enabled": True, "monitor": "train_loss"}})

    assert config["early_stopping"]["monitor"] == "train_loss"
