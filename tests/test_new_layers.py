"""LeakyReLU, ELU, Softplus, Dropout and BatchNorm1d: values, modes, running statistics and option checks.

The check kit covers their gradients, dtypes and side effects; these tests pin the
forward values against independent formulas and the behaviour of each mode.
"""

import math

import numpy as np
import pytest

from minilearn.layers import ELU, BatchNorm1d, Dropout, LeakyReLU, Softplus
from minilearn.model import Sequential
from minilearn.registry import LAYERS


def test_new_layers_registered():
    assert LAYERS.get("leaky_relu") is LeakyReLU
    assert LAYERS.get("elu") is ELU
    assert LAYERS.get("softplus") is Softplus
    assert LAYERS.get("dropout") is Dropout
    assert LAYERS.get("batch_norm1d") is BatchNorm1d


# Activations


def test_leaky_relu_values():
    layer = LeakyReLU(0.2)
    x = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])

    out = layer.forward(x)
    grad = layer.backward(np.ones_like(x))

    assert out.tolist() == [[-0.4, -0.1, 0.0, 0.5, 3.0]]
    assert grad.tolist() == [[0.2, 0.2, 0.2, 1.0, 1.0]]


def test_elu_values():
    layer = ELU(alpha=1.5)
    x = np.array([[-2.0, -0.1, 0.5, 4.0]])

    out = layer.forward(x)
    grad = layer.backward(np.ones_like(x))

    expected = [1.5 * (math.exp(-2.0) - 1), 1.5 * (math.exp(-0.1) - 1), 0.5, 4.0]
    np.testing.assert_allclose(out[0], expected, rtol=1e-15)
    np.testing.assert_allclose(grad[0], [1.5 * math.exp(-2.0), 1.5 * math.exp(-0.1), 1, 1],
                               rtol=1e-15)


def test_elu_slope_precise_far_left():
    layer = ELU()
    layer.forward(np.array([[-40.0]]))

    grad = layer.backward(np.ones((1, 1)))

    assert grad[0, 0] == pytest.approx(math.exp(-40.0), rel=1e-14)


def test_softplus_values_and_no_overflow():
    layer = Softplus(beta=2.0)
    x = np.array([[-1000.0, -1.0, 0.0, 1.0, 1000.0]])

    # exp(-2000) underflows to 0, which is harmless; overflow and NaN are not.
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out = layer.forward(x)
        grad = layer.backward(np.ones_like(x))

    expected = [0.0, math.log1p(math.exp(-2.0)) / 2, math.log(2) / 2,
                math.log1p(math.exp(2.0)) / 2, 1000.0]
    np.testing.assert_allclose(out[0], expected, rtol=1e-15, atol=1e-300)
    sigmoid = [0.0, 1 / (1 + math.exp(2.0)), 0.5, 1 / (1 + math.exp(-2.0)), 1.0]
    np.testing.assert_allclose(grad[0], sigmoid, rtol=1e-15)


@pytest.mark.parametrize("layer_class, option, value, error", [
    (LeakyReLU, "negative_slope", "0.1", TypeError),
    (LeakyReLU, "negative_slope", float("nan"), ValueError),
    (ELU, "alpha", 0.0, ValueError),
    (ELU, "alpha", True, TypeError),
    (Softplus, "beta", -1.0, ValueError),
    (Dropout, "p", 1.5, ValueError),
    (Dropout, "p", -0.1, ValueError),
    (BatchNorm1d, "momentum", 2.0, ValueError),
    (BatchNorm1d, "eps", 0.0, ValueError),
])
def test_invalid_option_rejected(layer_class, option, value, error):
    arguments = {"num_features": 3} if layer_class is BatchNorm1d else {}
    arguments[option] = value

    with pytest.raises(error, match=option):
        layer_class(**arguments)


# Dropout


def test_dropout_keeps_expected_value():
    layer = Dropout(0.25, rng=np.random.default_rng(0))
    x = np.ones((400, 50))

    out = layer.forward(x)

    kept = out != 0
    assert np.all(out[kept] == pytest.approx(1 / 0.75))
    assert kept.mean() == pytest.approx(0.75, abs=0.01)
    assert out.mean() == pytest.approx(1.0, abs=0.02)


def test_dropout_backward_uses_forward_mask():
    layer = Dropout(0.5, rng=np.random.default_rng(1))
    x = np.arange(1.0, 13.0).reshape(3, 4)

    out = layer.forward(x)
    grad = layer.backward(np.ones_like(x))

    np.testing.assert_array_equal(grad, out / x)


def test_dropout_eval_is_identity():
    layer = Dropout(0.9, rng=np.random.default_rng(2)).eval()
    x = np.random.default_rng(3).normal(size=(4, 5))
    state = layer.rng.bit_generator.state

    out = layer.forward(x)
    grad = layer.backward(x * 2)

    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(grad, x * 2)
    assert layer.rng.bit_generator.state == state


def test_dropout_extreme_probabilities():
    x = np.ones((3, 4), dtype=np.float32)

    kept = Dropout(0.0, rng=np.random.default_rng(0)).forward(x)
    dropped_layer = Dropout(1.0, rng=np.random.default_rng(0))
    dropped = dropped_layer.forward(x)

    np.testing.assert_array_equal(kept, x)
    assert not dropped.any()
    assert dropped.dtype == np.float32
    assert not dropped_layer.backward(x).any()


def test_dropout_mask_same_for_both_dtypes():
    x = np.ones((6, 7))

    out64 = Dropout(0.5, rng=np.random.default_rng(4)).forward(x)
    out32 = Dropout(0.5, rng=np.random.default_rng(4)).forward(x.astype(np.float32))

    np.testing.assert_array_equal(out64 != 0, out32 != 0)


def test_dropout_rejects_legacy_random_state():
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        Dropout(0.5, rng=np.random.RandomState(0))


# BatchNorm1d


def test_batch_norm_normalizes_batch():
    rng = np.random.default_rng(5)
    x = rng.normal(3.0, 2.0, size=(64, 3))
    layer = BatchNorm1d(3)
    layer.params["gamma"][:] = [1.0, 2.0, 0.5]
    layer.params["beta"][:] = [0.0, -1.0, 4.0]

    out = layer.forward(x)

    x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + 1e-5)
    np.testing.assert_allclose(out, x_hat * [1.0, 2.0, 0.5] + [0.0, -1.0, 4.0], rtol=1e-12)


def test_batch_norm_running_statistics_momentum():
    rng = np.random.default_rng(6)
    batches = [rng.normal(2.0, 3.0, size=(10, 2)) for _ in range(3)]
    layer = BatchNorm1d(2, momentum=0.1)

    for batch in batches:
        layer.forward(batch)

    mean, var = np.zeros(2), np.ones(2)
    for batch in batches:
        mean = 0.9 * mean + 0.1 * batch.mean(axis=0)
        var = 0.9 * var + 0.1 * batch.var(axis=0, ddof=1)
    np.testing.assert_allclose(layer.buffers["running_mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(layer.buffers["running_var"], var, rtol=1e-12)
    assert int(layer.buffers["batches_tracked"]) == 3


def test_batch_norm_cumulative_average():
    rng = np.random.default_rng(7)
    batches = [rng.normal(size=(8, 2)) for _ in range(4)]
    layer = BatchNorm1d(2, momentum=None)

    for batch in batches:
        layer.forward(batch)

    np.testing.assert_allclose(layer.buffers["running_mean"],
                               np.mean([b.mean(axis=0) for b in batches], axis=0), rtol=1e-12)
    np.testing.assert_allclose(layer.buffers["running_var"],
                               np.mean([b.var(axis=0, ddof=1) for b in batches], axis=0),
                               rtol=1e-12)


def test_batch_norm_eval_uses_running_statistics():
    layer = BatchNorm1d(2)
    layer.buffers["running_mean"][:] = [1.0, -2.0]
    layer.buffers["running_var"][:] = [4.0, 0.25]
    layer.eval()
    x = np.array([[3.0, -2.0]])

    out = layer.forward(x)
    grad = layer.backward(np.ones_like(x))

    np.testing.assert_allclose(out, [[2.0 / math.sqrt(4.0 + 1e-5), 0.0]], rtol=1e-12)
    np.testing.assert_allclose(grad, [[1 / math.sqrt(4.0 + 1e-5), 1 / math.sqrt(0.25 + 1e-5)]],
                               rtol=1e-12)
    np.testing.assert_array_equal(layer.buffers["running_mean"], [1.0, -2.0])


def test_batch_norm_input_gradient_sums_to_zero():
    rng = np.random.default_rng(8)
    layer = BatchNorm1d(3)
    layer.forward(rng.normal(size=(6, 3)))

    grad = layer.backward(rng.normal(size=(6, 3)))

    # The batch mean is subtracted, so shifting every sample of a feature changes nothing.
    np.testing.assert_allclose(grad.sum(axis=0), 0.0, atol=1e-12)


def test_batch_norm_rejects_single_sample_batch():
    layer = BatchNorm1d(3)

    with pytest.raises(ValueError, match="at least 2 samples"):
        layer.forward(np.ones((1, 3)))


def test_batch_norm_rejects_wrong_width():
    layer = BatchNorm1d(3)

    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        layer.forward(np.ones((4, 2)))


def test_batch_norm_keeps_float32():
    layer = BatchNorm1d(2, dtype=np.float32)
    x = np.random.default_rng(9).normal(size=(5, 2)).astype(np.float32)

    out = layer.forward(x)
    grad = layer.backward(np.ones_like(out))

    assert out.dtype == np.float32
    assert grad.dtype == np.float32
    assert layer.buffers["running_var"].dtype == np.float32
    assert layer.grads["gamma"].dtype == np.float32


def test_batch_norm_first_layer_skips_input_gradient():
    model = Sequential([BatchNorm1d(2)])
    model.forward(np.random.default_rng(10).normal(size=(4, 2)))

    assert model.backward(np.ones((4, 2))) is None
    np.testing.assert_allclose(model.named_gradients()["0.beta"], [4.0, 4.0])
