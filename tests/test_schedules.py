"""Learning-rate schedules: closed forms, PyTorch's semantics, and the lr each epoch records."""

import math

import numpy as np
import pytest

from handed_cases import case
from minilearn import layers
from minilearn.losses import CrossEntropy
from minilearn.model import Sequential
from minilearn.optim import SGD, Adam
from minilearn.schedules import (
    SCHEDULES,
    ConstantLR,
    CosineAnnealingLR,
    ExponentialLR,
    ReduceLROnPlateau,
    StepLR,
    make_schedule,
)
from minilearn.training import fit


class RecordingSGD(SGD):
    """SGD that records the lr of every step it takes."""

    def __init__(self, lr):
        super().__init__(lr)
        self.step_lrs = []

    def update(self, params, grads):
        self.step_lrs.append(self.lr)
        super().update(params, grads)


def tiny_problem(n=40, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.normal(size=(n, 3)) + y[:, None]
    model = Sequential([layers.Linear(3, 2, rng=rng)])
    return model, X, y


def train_with(schedule, epochs, lr=0.1, batch_size=8, validation=True):
    """Fit the tiny problem with ``schedule``; returns (History, optimizer)."""
    model, X, y = tiny_problem()
    optimizer = RecordingSGD(lr)
    history = fit(model, CrossEntropy(), optimizer, X, y, epochs=epochs, batch_size=batch_size,
                  seed=0, progress=False, validation=(X, y) if validation else None,
                  schedule=schedule)
    return history, optimizer


def run_schedule(schedule, lr0, epochs, metrics=None):
    """Step ``schedule`` by hand; returns the lr of each epoch."""
    optimizer = SGD(lr=lr0)
    schedule.start(optimizer, epochs)
    lrs = []
    for index in range(epochs):
        lrs.append(optimizer.lr)
        record = {"epoch": index + 1, "val_loss": None if metrics is None else metrics[index]}
        schedule.step(record)
    return lrs


def test_step_schedule_per_epoch():
    spec = case("training", "step-schedule-per-epoch")
    schedule = StepLR(step_size=spec["step_size"], gamma=spec["gamma"])

    history, _ = train_with(schedule, epochs=len(spec["expected_lr"]), lr=spec["lr0"])

    np.testing.assert_allclose(history["lr"], spec["expected_lr"], rtol=1e-12)


def test_cosine_schedule_per_epoch():
    spec = case("training", "cosine-schedule-per-epoch")
    schedule = CosineAnnealingLR(T_max=spec["t_max"], eta_min=spec["eta_min"])

    history, _ = train_with(schedule, epochs=len(spec["expected_lr"]), lr=spec["lr0"])

    # The case's values are rounded to 12 decimals.
    np.testing.assert_allclose(history["lr"], spec["expected_lr"], rtol=0, atol=1e-12)


def test_cosine_rises_again_after_t_max():
    lrs = run_schedule(CosineAnnealingLR(T_max=5), 0.5, 11)

    assert lrs[5] == pytest.approx(0.0, abs=1e-15)
    assert lrs[6] == pytest.approx(lrs[4], rel=1e-12)
    assert lrs[10] == pytest.approx(0.5, rel=1e-12)


def test_cosine_without_t_max_spans_the_run():
    lrs = run_schedule(CosineAnnealingLR(eta_min=0.01), 0.1, 10)

    expected = [0.01 + 0.09 * (1 + math.cos(math.pi * e / 10)) / 2 for e in range(10)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)
    assert min(lrs) > 0.01


def test_cosine_matches_pytorch_beyond_t_max():
    torch = pytest.importorskip("torch")
    parameter = torch.zeros(1, requires_grad=True)
    torch_optimizer = torch.optim.SGD([parameter], lr=0.5)
    torch_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(torch_optimizer, T_max=4,
                                                                eta_min=0.05)
    expected = []
    for _ in range(13):
        expected.append(torch_optimizer.param_groups[0]["lr"])
        torch_optimizer.step()
        torch_schedule.step()

    lrs = run_schedule(CosineAnnealingLR(T_max=4, eta_min=0.05), 0.5, 13)

    np.testing.assert_allclose(lrs, expected, rtol=1e-10)


def test_exponential_schedule():
    lrs = run_schedule(ExponentialLR(gamma=0.9), 0.2, 5)

    np.testing.assert_allclose(lrs, [0.2 * 0.9 ** e for e in range(5)], rtol=1e-15)


def test_constant_schedule_keeps_lr():
    assert run_schedule(ConstantLR(), 0.3, 4) == [0.3] * 4


def test_plateau_reduces_after_patience():
    # Epochs 3, 4 and 5 are bad, so the count exceeds patience 2 after epoch 5.
    losses = [1.0, 0.9, 0.9, 0.95, 0.91, 0.91, 0.8]
    schedule = ReduceLROnPlateau(factor=0.5, patience=2, threshold=0.0)

    lrs = run_schedule(schedule, 0.1, len(losses), losses)

    np.testing.assert_allclose(lrs, [0.1] * 5 + [0.05] * 2, rtol=1e-15)


def test_plateau_counts_nan_as_bad_epoch():
    losses = [1.0, float("nan"), float("nan"), float("nan")]
    schedule = ReduceLROnPlateau(factor=0.1, patience=1, threshold=0.0)

    lrs = run_schedule(schedule, 1.0, len(losses), losses)

    np.testing.assert_allclose(lrs, [1.0, 1.0, 1.0, 0.1], rtol=1e-15)
    assert schedule.best == 1.0


def test_plateau_cooldown_and_min_lr():
    losses = [1.0] * 8
    schedule = ReduceLROnPlateau(factor=0.5, patience=0, cooldown=2, min_lr=0.3,
                                 threshold=0.0)

    lrs = run_schedule(schedule, 1.0, len(losses), losses)

    # Epoch 2 is bad: 0.5 from epoch 3. Two cooldown epochs, then 0.3, the floor.
    np.testing.assert_allclose(lrs, [1.0, 1.0, 0.5, 0.5, 0.5, 0.3, 0.3, 0.3], rtol=1e-15)


@pytest.mark.parametrize("options", [
    {"factor": 0.5, "patience": 1},
    {"factor": 0.2, "patience": 0, "cooldown": 1, "threshold": 0.05},
    {"factor": 0.5, "patience": 1, "threshold_mode": "abs", "threshold": 0.02, "min_lr": 0.01},
    {"factor": 0.5, "patience": 1, "monitor": "val_accuracy"},
])
def test_plateau_matches_pytorch(options):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    metrics = (1.0 + 0.1 * rng.normal(size=30).cumsum() * 0.1).tolist()
    metrics[7] = float("nan")
    monitor = options.get("monitor", "val_loss")
    torch_options = {key: value for key, value in options.items() if key != "monitor"}
    mode = "max" if monitor == "val_accuracy" else "min"
    parameter = torch.zeros(1, requires_grad=True)
    torch_optimizer = torch.optim.SGD([parameter], lr=0.1)
    torch_schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(torch_optimizer, mode=mode,
                                                                **torch_options)
    optimizer = SGD(lr=0.1)
    schedule = ReduceLROnPlateau(**options)
    schedule.start(optimizer, len(metrics))

    for epoch, value in enumerate(metrics, start=1):
        schedule.step({"epoch": epoch, monitor: value})
        torch_schedule.step(value)
        assert optimizer.lr == pytest.approx(torch_optimizer.param_groups[0]["lr"], rel=1e-12)


@pytest.mark.parametrize("name, options", [
    ("constant", {}),
    ("step", {"step_size": 2, "gamma": 0.5}),
    ("exponential", {"gamma": 0.7}),
    ("cosine", {"T_max": 3}),
    ("reduce_on_plateau", {"factor": 0.5, "patience": 0, "threshold": 0.5}),
])
def test_recorded_lr_is_lr_of_every_step(name, options):
    schedule = make_schedule(name, **options)
    epochs = 6
    steps_per_epoch = 5

    history, optimizer = train_with(schedule, epochs=epochs, lr=0.2)

    step_lrs = np.array(optimizer.step_lrs).reshape(epochs, steps_per_epoch)
    for record, lrs in zip(history.epochs, step_lrs):
        assert np.all(lrs == record["lr"]), record["epoch"]
    assert history["lr"][0] == 0.2


def test_plateau_changes_lr_in_fit():
    schedule = ReduceLROnPlateau(factor=0.5, patience=0, threshold=0.5)

    history, _ = train_with(schedule, epochs=4, lr=0.2)

    # A gain of more than half the best loss never comes, so every epoch after the first is bad.
    np.testing.assert_allclose(history["lr"], [0.2, 0.2, 0.1, 0.05], rtol=1e-15)


def test_second_fit_starts_from_current_lr():
    schedule = StepLR(step_size=1, gamma=0.5)
    model, X, y = tiny_problem()
    optimizer = SGD(lr=0.4)

    fit(model, CrossEntropy(), optimizer, X, y, epochs=3, batch_size=8, seed=0, progress=False,
        schedule=schedule)
    history = fit(model, CrossEntropy(), optimizer, X, y, epochs=2, batch_size=8, seed=0,
                  progress=False, schedule=schedule)

    # The schedule steps after every epoch, the last one too, as in PyTorch, so the
    # first fit leaves lr = 0.4 * 0.5**3 and the second decays from there.
    np.testing.assert_allclose(history["lr"], [0.05, 0.025], rtol=1e-15)


def test_schedule_works_with_adam():
    model, X, y = tiny_problem()

    history = fit(model, CrossEntropy(), Adam(lr=0.01), X, y, epochs=3, batch_size=8, seed=0,
                  progress=False, schedule=ExponentialLR(gamma=0.5))

    np.testing.assert_allclose(history["lr"], [0.01, 0.005, 0.0025], rtol=1e-15)


def test_plateau_on_validation_needs_validation():
    with pytest.raises(ValueError, match="monitors 'val_loss', but fit got no validation data"):
        train_with(ReduceLROnPlateau(), epochs=2, validation=False)


def test_plateau_on_training_loss_without_validation():
    history, _ = train_with(ReduceLROnPlateau(monitor="train_loss"), epochs=2, validation=False)

    assert len(history) == 2


def test_step_before_start_raises():
    with pytest.raises(RuntimeError, match="before start"):
        StepLR(step_size=1).step()


def test_registry_names_every_schedule():
    assert SCHEDULES.names() == ["constant", "step", "exponential", "cosine", "reduce_on_plateau"]


@pytest.mark.parametrize("build, error, match", [
    (lambda: StepLR(step_size=0), ValueError, "StepLR step_size must be an integer >= 1, got 0"),
    (lambda: StepLR(step_size=2.5), TypeError, "StepLR step_size must be an integer"),
    (lambda: StepLR(step_size=2, gamma=0), ValueError, "StepLR gamma must be > 0"),
    (lambda: ExponentialLR(gamma=-1), ValueError, "ExponentialLR gamma must be > 0"),
    (lambda: ExponentialLR(gamma="0.9"), TypeError, "ExponentialLR gamma must be a number"),
    (lambda: CosineAnnealingLR(T_max=0), ValueError, "T_max must be an integer >= 1"),
    (lambda: CosineAnnealingLR(eta_min=-0.1), ValueError, "eta_min must be >= 0"),
    (lambda: ReduceLROnPlateau(factor=1.0), ValueError, r"factor must be > 0.0 and < 1.0"),
    (lambda: ReduceLROnPlateau(patience=-1), ValueError, "patience must be an integer >= 0"),
    (lambda: ReduceLROnPlateau(threshold_mode="relative"), ValueError, "threshold_mode must be"),
    (lambda: ReduceLROnPlateau(monitor="loss"), ValueError, "monitor must be one of val_loss"),
    (lambda: ReduceLROnPlateau(min_lr=float("nan")), ValueError, "min_lr must be >= 0"),
    (lambda: make_schedule("linear"), ValueError, "unknown schedule 'linear'"),
])
def test_schedules_reject_bad_arguments(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_schedule_from_config_reaches_metrics(tmp_path):
    import csv

    from minilearn.config import resolve_config
    from minilearn.runner import run

    config = resolve_config({"data": {"name": "iris"}, "training": {"epochs": 5},
                             "optimizer": {"lr": 0.2},
                             "schedule": {"name": "step", "step_size": 2, "gamma": 0.5}})

    run(config, out=tmp_path / "run", progress=False)

    with open(tmp_path / "run" / "metrics.csv", newline="") as handle:
        lrs = [float(row["lr"]) for row in csv.DictReader(handle)]
    assert lrs == [0.2, 0.2, 0.1, 0.1, 0.05]


def test_schedule_config_defaults_and_round_trip():
    import tomllib

    from minilearn.config import resolve_config, to_toml

    assert resolve_config({})["schedule"] == {"name": "constant"}
    config = resolve_config({"schedule": {"name": "reduce_on_plateau", "patience": 3}})
    assert config["schedule"]["factor"] == 0.1
    assert config["schedule"]["monitor"] == "val_loss"
    assert tomllib.loads(to_toml(config)) == config


@pytest.mark.parametrize("raw, match", [
    ({"schedule": {"name": "step"}}, r"schedule.step_size is missing; schedule 'step' needs it"),
    ({"schedule": {"name": "linear"}}, r"schedule.name = 'linear' is not a known schedule"),
    ({"schedule": {"name": "cosine", "tmax": 5}}, r"unknown key 'schedule.tmax'.*'T_max'"),
    ({"schedule": {"name": "step", "step_size": 0}}, r"schedule.step_size = 0 is invalid"),
    ({"schedule": {"name": "reduce_on_plateau"}, "data": {"val_fraction": 0.0}},
     r"schedule.monitor = 'val_loss' needs a validation split"),
])
def test_schedule_config_errors(raw, match):
    from minilearn.config import ConfigError, resolve_config

    with pytest.raises(ConfigError, match=match):
        resolve_config(raw)


def test_schedule_set_from_command_line(tmp_path):
    from minilearn.config import load_config

    path = tmp_path / "run.toml"
    path.write_text("", encoding="utf-8")

    config = load_config(path, ["schedule.name=cosine", "schedule.T_max=4"])

    assert config["schedule"] == {"name": "cosine", "T_max": 4, "eta_min": 0.0}
