"""Adam and AdamW against the published update rule, PyTorch where installed, and configs."""

import math

import numpy as np
import pytest

from minilearn import layers
from minilearn.config import ConfigError, build_from_config, resolve_config, to_toml
from minilearn.losses import CrossEntropy
from minilearn.model import Sequential
from minilearn.optim import Adam, AdamW
from minilearn.training import fit


def adam_scalar(w, grad_of, steps, *, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                amsgrad=False, decoupled=False):
    """Adam on one float, written out step by step from the algorithm; returns w after each step."""
    beta1, beta2 = betas
    m = v = v_max = 0.0
    values = []
    for t in range(1, steps + 1):
        g = grad_of(w)
        if decoupled:
            w = w - lr * weight_decay * w
        else:
            g = g + weight_decay * w
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        if amsgrad:
            v_max = max(v_max, v)
            v_used = v_max
        else:
            v_used = v
        m_hat = m / (1 - beta1 ** t)
        v_hat = v_used / (1 - beta2 ** t)
        w = w - lr * m_hat / (math.sqrt(v_hat) + eps)
        values.append(w)
    return values


def run_adam(optimizer, w0, grad_of, steps):
    params = {"w": np.array([w0])}
    values = []
    for _ in range(steps):
        optimizer.step(params, {"w": np.array([grad_of(float(params["w"][0]))])})
        values.append(float(params["w"][0]))
    return values


def quadratic_grad(w):
    """Gradient of f(w) = w**2 / 2."""
    return w


def test_adam_first_step_is_lr_times_sign():
    # m_hat = g and v_hat = g**2 after one step, so the step is lr * g / (|g| + eps).
    values = run_adam(Adam(lr=0.1), 1.0, quadratic_grad, 1)

    assert values[0] == pytest.approx(1.0 - 0.1 / (1.0 + 1e-8), rel=1e-15)


def test_adam_second_step_by_hand():
    # Step 2 from w = 1 - 0.1 / (1 + 1e-8): m = 0.09 + 0.1 * w1, v = 0.000999 + 0.001 * w1**2.
    w1 = 1.0 - 0.1 / (1.0 + 1e-8)
    m = 0.9 * 0.1 + 0.1 * w1
    v = 0.999 * 0.001 + 0.001 * w1 * w1
    expected = w1 - 0.1 * (m / 0.19) / (math.sqrt(v / (1 - 0.999 ** 2)) + 1e-8)

    values = run_adam(Adam(lr=0.1), 1.0, quadratic_grad, 2)

    assert values[1] == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize("options", [
    {},
    {"weight_decay": 0.1},
    {"amsgrad": True},
    {"weight_decay": 0.1, "decoupled": True},
    {"betas": (0.5, 0.9), "eps": 1e-3},
])
def test_adam_matches_scalar_algorithm(options):
    # A gradient that changes sign exercises amsgrad's running maximum.
    def grad_of(w):
        return math.sin(3.0 * w) + 0.5

    options = dict(options)
    decoupled = options.pop("decoupled", False)
    optimizer = Adam(lr=0.05, decoupled_weight_decay=decoupled, **options)

    values = run_adam(optimizer, 1.0, grad_of, 25)

    expected = adam_scalar(1.0, grad_of, 25, lr=0.05, decoupled=decoupled, **options)
    np.testing.assert_allclose(values, expected, rtol=1e-12)


def test_adamw_is_adam_with_decoupled_decay():
    adamw = AdamW(lr=0.05, weight_decay=0.2)
    adam = Adam(lr=0.05, weight_decay=0.2, decoupled_weight_decay=True)

    assert run_adam(adamw, 1.0, quadratic_grad, 10) == run_adam(adam, 1.0, quadratic_grad, 10)
    assert AdamW().weight_decay == 0.01
    assert Adam().weight_decay == 0.0
    assert Adam().lr == 0.001


def test_decoupled_decay_differs_from_l2():
    coupled = run_adam(Adam(lr=0.05, weight_decay=0.5), 1.0, quadratic_grad, 5)
    decoupled = run_adam(AdamW(lr=0.05, weight_decay=0.5), 1.0, quadratic_grad, 5)

    assert coupled != pytest.approx(decoupled, rel=1e-6)


@pytest.mark.parametrize("name, options", [
    ("adam", {}),
    ("adam", {"weight_decay": 0.1}),
    ("adam", {"amsgrad": True, "weight_decay": 0.05}),
    ("adam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("adamw", {"weight_decay": 0.1}),
    ("adamw", {"amsgrad": True}),
])
def test_adam_matches_pytorch(name, options):
    torch = pytest.importorskip("torch")
    torch_class = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    ours_class = {"adam": Adam, "adamw": AdamW}[name]
    rng = np.random.default_rng(0)
    start = rng.normal(size=(3, 2))
    ours = {"w": start.copy()}
    theirs = torch.tensor(start.copy(), requires_grad=True)
    optimizer = ours_class(lr=0.01, **options)
    torch_optimizer = torch_class([theirs], lr=0.01, **options)

    for step in range(20):
        grad = np.sin(ours["w"] * (step + 1)) + 0.3 * (step % 3)
        optimizer.step(ours, {"w": grad})
        theirs.grad = torch.tensor(grad)
        torch_optimizer.step()

    np.testing.assert_allclose(ours["w"], theirs.detach().numpy(), rtol=1e-12, atol=1e-15)


def test_adam_keeps_state_per_parameter():
    optimizer = Adam(lr=0.1)
    params = {"a": np.ones(2), "b": np.ones(3)}

    optimizer.step(params, {"a": np.ones(2), "b": np.ones(3)})
    optimizer.step(params, {"a": np.ones(2), "b": np.ones(3)})

    assert optimizer.state["a"]["step"] == 2
    assert optimizer.state["b"]["m"].shape == (3,)
    optimizer.reset()
    assert optimizer.state == {}


def test_adam_float32_stays_float32():
    params = {"w": np.ones(3, dtype=np.float32)}
    optimizer = Adam(lr=0.1, weight_decay=0.01, amsgrad=True)

    optimizer.step(params, {"w": np.ones(3, dtype=np.float32)})

    assert params["w"].dtype == np.float32
    assert optimizer.state["w"]["v"].dtype == np.float32


def test_adam_does_not_modify_gradients():
    params = {"w": np.ones(2)}
    grads = {"w": np.array([1.0, 2.0])}
    optimizer = Adam(lr=0.1, weight_decay=0.1)

    optimizer.step(params, grads)
    optimizer.step(params, grads)

    np.testing.assert_array_equal(grads["w"], [1.0, 2.0])


def test_adam_trains_a_classifier():
    rng = np.random.default_rng(0)
    y = np.arange(150) % 3
    X = np.eye(3)[y] * 3.0 + rng.normal(size=(150, 3))
    model = Sequential([layers.Linear(3, 16, rng=rng, init="he"), layers.ReLU(),
                        layers.Linear(16, 3, rng=rng)])

    history = fit(model, CrossEntropy(), Adam(lr=0.01), X, y, epochs=30, batch_size=16, seed=0,
                  progress=False)

    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    assert history["train_accuracy"][-1] > 0.85


@pytest.mark.parametrize("kwargs, error, match", [
    ({"lr": 0}, ValueError, "lr must be > 0"),
    ({"betas": (0.9, 1.0)}, ValueError, r"betas\[1\] must be in \[0, 1\)"),
    ({"betas": (-0.1, 0.9)}, ValueError, r"betas\[0\] must be in \[0, 1\)"),
    ({"betas": 0.9}, TypeError, "betas must be a pair"),
    ({"betas": (0.9, "0.99")}, TypeError, r"betas\[1\] must be a number"),
    ({"eps": -1e-8}, ValueError, "eps must be >= 0"),
    ({"weight_decay": -0.1}, ValueError, "weight_decay must be >= 0"),
    ({"amsgrad": 1}, TypeError, "amsgrad must be true or false"),
    ({"decoupled_weight_decay": "yes"}, TypeError, "decoupled_weight_decay must be true or false"),
])
def test_adam_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        Adam(**kwargs)


def test_adam_config_uses_its_own_default_lr():
    config = resolve_config({"optimizer": {"name": "adam"}})

    assert config["optimizer"]["lr"] == 0.001
    assert config["optimizer"]["betas"] == [0.9, 0.999]
    assert resolve_config({})["optimizer"]["lr"] == 0.1


def test_adamw_config_round_trips_and_builds():
    import tomllib

    config = resolve_config({"optimizer": {"name": "adamw", "lr": 0.01, "betas": [0.8, 0.99]}})

    assert tomllib.loads(to_toml(config)) == config
    optimizer = build_from_config(config["optimizer"], "optimizer")
    assert isinstance(optimizer, AdamW)
    assert optimizer.betas == (0.8, 0.99)
    assert optimizer.weight_decay == 0.01


def test_adam_config_rejects_bad_betas():
    with pytest.raises(ConfigError, match=r"optimizer.betas = \[0.9, 1.5\] is invalid"):
        resolve_config({"optimizer": {"name": "adam", "betas": [0.9, 1.5]}})
