"""Gradient-norm clipping: the global norm over all arrays, in every optimizer."""

import math

import numpy as np
import pytest

from handed_cases import case
from minilearn import layers
from minilearn.config import ConfigError, build_from_config, resolve_config
from minilearn.losses import CrossEntropy, Loss
from minilearn.model import Sequential
from minilearn.optim import SGD, Adam, AdamW
from minilearn.training import fit


class HalfSquaredError(Loss):
    """Half the squared error summed over outputs and averaged over samples.

    Its gradient is (outputs - targets) / N, so for one sample it is the
    prediction minus the target, as the handed case states.
    """

    expects = "any"

    def forward(self, outputs, targets):
        self._diff = outputs - np.asarray(targets, dtype=outputs.dtype).reshape(outputs.shape)
        return float(0.5 * np.sum(self._diff ** 2) / len(outputs))

    def backward(self, grad_output=None):
        return self._diff / len(self._diff)


def one_linear_step(spec, optimizer):
    """Take one step of ``optimizer`` on the handed case's Linear(2, 1); returns (W, b)."""
    linear = layers.Linear(2, 1, rng=np.random.default_rng(0))
    linear.params["weight"][...] = 0.0
    linear.params["bias"][...] = 0.0
    model = Sequential([linear])
    loss = HalfSquaredError()
    x = np.array([spec["x"]])
    target = np.array([[spec["target"]]])

    loss.forward(model.forward(x), target)
    model.backward(loss.backward())
    optimizer.step(model.named_parameters(), model.named_gradients())
    return linear.params["weight"][:, 0], linear.params["bias"]


def test_clipping_uses_global_norm():
    spec = case("training", "gradient-clipping-global-norm")
    optimizer = SGD(lr=spec["lr"], max_grad_norm=spec["max_norm"])

    W, b = one_linear_step(spec, optimizer)

    np.testing.assert_allclose(W, spec["expected_W"], rtol=1e-12)
    np.testing.assert_allclose(b, [spec["expected_b"]], rtol=1e-12)
    assert optimizer.last_grad_norm == pytest.approx(13.0, rel=1e-15)


def test_clipping_each_array_alone_would_differ():
    spec = case("training", "gradient-clipping-global-norm")

    W, b = one_linear_step(spec, SGD(lr=spec["lr"], max_grad_norm=spec["max_norm"]))

    # The per-array result the case warns about: W = [-0.6, -0.8], b = -1.
    assert not np.allclose(W, [-0.6, -0.8])
    assert not np.allclose(b, [-1.0])


def test_clipping_below_limit_leaves_gradients():
    grads = {"a": np.array([0.3, 0.4]), "b": np.array([0.0])}
    optimizer = SGD(lr=1.0, max_grad_norm=1.0)

    clipped = optimizer.clip_gradients(grads)

    assert clipped is grads
    assert optimizer.last_grad_norm == pytest.approx(0.5)


def test_clipping_scales_to_limit_exactly():
    grads = {"a": np.array([3.0, 4.0]), "b": np.array([[12.0]])}
    optimizer = SGD(lr=1.0, max_grad_norm=2.0)

    clipped = optimizer.clip_gradients(grads)

    norm = math.sqrt(sum(float(np.sum(grad ** 2)) for grad in clipped.values()))
    assert norm == pytest.approx(2.0, rel=1e-15)
    np.testing.assert_allclose(clipped["a"], [6 / 13, 8 / 13], rtol=1e-15)


def test_clipping_leaves_callers_arrays_unchanged():
    grads = {"w": np.array([30.0, 40.0])}
    params = {"w": np.zeros(2)}

    SGD(lr=1.0, max_grad_norm=1.0).step(params, grads)

    np.testing.assert_array_equal(grads["w"], [30.0, 40.0])
    np.testing.assert_allclose(params["w"], [-0.6, -0.8], rtol=1e-15)


def test_clipping_off_by_default():
    optimizer = SGD(lr=1.0)
    params = {"w": np.zeros(2)}

    optimizer.step(params, {"w": np.array([30.0, 40.0])})

    np.testing.assert_array_equal(params["w"], [-30.0, -40.0])
    assert optimizer.last_grad_norm is None


@pytest.mark.parametrize("optimizer_class", [Adam, AdamW])
def test_adam_takes_clipped_gradients(optimizer_class):
    grads = {"w": np.array([30.0, -40.0]), "b": np.array([120.0])}
    scaled = {name: grad / 130.0 for name, grad in grads.items()}
    clipped_params = {"w": np.ones(2), "b": np.ones(1)}
    reference_params = {"w": np.ones(2), "b": np.ones(1)}
    clipped = optimizer_class(lr=0.1, max_grad_norm=1.0)
    reference = optimizer_class(lr=0.1)

    for _ in range(3):
        clipped.step(clipped_params, grads)
        reference.step(reference_params, scaled)

    for name in grads:
        np.testing.assert_allclose(clipped_params[name], reference_params[name], rtol=1e-12)


def test_clipping_float32_norm_does_not_overflow():
    # Each square, (2e19)**2 = 4e38, is above float32's maximum of 3.4e38.
    grads = {"w": np.full(2, 2e19, dtype=np.float32)}
    optimizer = SGD(lr=1.0, max_grad_norm=1.0)

    clipped = optimizer.clip_gradients(grads)

    assert clipped["w"].dtype == np.float32
    np.testing.assert_allclose(clipped["w"], [2 ** -0.5] * 2, rtol=1e-6)


def test_clipping_leaves_nonfinite_gradients_for_the_loop():
    grads = {"w": np.array([np.inf, 1.0])}
    optimizer = SGD(lr=1.0, max_grad_norm=1.0)

    assert optimizer.clip_gradients(grads) is grads
    assert math.isinf(optimizer.last_grad_norm)


def test_clipping_matches_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    arrays = {"a": rng.normal(size=(4, 3)) * 5, "b": rng.normal(size=3) * 5}
    tensors = [torch.zeros(array.shape, dtype=torch.float64, requires_grad=True)
               for array in arrays.values()]
    for tensor, array in zip(tensors, arrays.values()):
        tensor.grad = torch.tensor(array)

    torch.nn.utils.clip_grad_norm_(tensors, max_norm=1.0)
    clipped = SGD(lr=1.0, max_grad_norm=1.0).clip_gradients(arrays)

    # PyTorch divides by norm + 1e-6, so the two differ by about 1e-6 relative.
    for tensor, name in zip(tensors, arrays):
        np.testing.assert_allclose(clipped[name], tensor.grad.numpy(), rtol=1e-5)


def test_clipping_bounds_steps_in_fit():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3)) * 100.0
    y = np.arange(64) % 2
    model = Sequential([layers.Linear(3, 2, rng=rng)])
    start = model.state_dict()
    steps = []

    def record_step(record, trained):
        steps.append(record)

    fit(model, CrossEntropy(), SGD(lr=0.5, max_grad_norm=0.1), X, y, epochs=1, batch_size=64,
        seed=0, progress=False, on_epoch_end=record_step)

    moved = math.sqrt(sum(float(np.sum((value - start[name]) ** 2))
                          for name, value in model.named_parameters().items()))
    assert moved <= 0.5 * 0.1 * (1 + 1e-12)
    assert len(steps) == 1


@pytest.mark.parametrize("value, error, match", [
    (0, ValueError, "max_grad_norm must be > 0"),
    (-1.0, ValueError, "max_grad_norm must be > 0"),
    ("1", TypeError, "max_grad_norm must be a number"),
])
def test_clipping_rejects_bad_limits(value, error, match):
    with pytest.raises(error, match=match):
        SGD(lr=0.1, max_grad_norm=value)
    with pytest.raises(error, match=match):
        Adam(max_grad_norm=value)


def test_clipping_from_config():
    config = resolve_config({"optimizer": {"name": "sgd", "max_grad_norm": 1.0}})

    optimizer = build_from_config(config["optimizer"], "optimizer")

    assert optimizer.max_grad_norm == 1.0
    assert "max_grad_norm" not in resolve_config({})["optimizer"]
    with pytest.raises(ConfigError, match="max_grad_norm"):
        resolve_config({"optimizer": {"max_grad_norm": -2.0}})
