"""Layers: float64 central-difference gradient checks, shapes, dtypes and the input-gradient skip."""

import numpy as np
import pytest

from minilearn import layers
from minilearn.gradcheck import numerical_gradient, relative_error
from minilearn.model import Sequential

TOLERANCE = 1e-7


def make_layer(kind, rng, dtype=np.float64):
    if kind == "linear":
        return layers.Linear(4, 3, rng=rng, dtype=dtype)
    if kind == "linear_he":
        return layers.Linear(4, 3, rng=rng, dtype=dtype, init="he")
    if kind == "linear_no_bias":
        return layers.Linear(4, 3, rng=rng, dtype=dtype, bias=False)
    return {"relu": layers.ReLU, "tanh": layers.Tanh, "sigmoid": layers.Sigmoid,
            "identity": layers.Identity, "softmax": layers.Softmax,
            "log_softmax": layers.LogSoftmax}[kind]()


ALL_KINDS = ["linear", "linear_he", "linear_no_bias", "relu", "tanh", "sigmoid", "identity",
             "softmax", "log_softmax"]


def scalar_objective(layer, x, weights):
    """L = sum(weights * layer(x)): its gradient with respect to the output is ``weights``."""
    return lambda: float(np.sum(weights * layer.forward(x)))


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_input_gradient_matches_finite_differences(kind):
    rng = np.random.default_rng(1)
    layer = make_layer(kind, rng)
    x = rng.normal(size=(5, 4))
    # Keep ReLU inputs away from its kink at 0, where the derivative is undefined.
    x[np.abs(x) < 0.05] = 0.3
    out = layer.forward(x)
    weights = rng.normal(size=out.shape)

    analytic = layer.backward(weights)
    numeric = numerical_gradient(scalar_objective(layer, x, weights), x)

    assert analytic.shape == x.shape
    assert relative_error(analytic, numeric) < TOLERANCE


@pytest.mark.parametrize("kind", ["linear", "linear_he", "linear_no_bias"])
def test_parameter_gradients_match_finite_differences(kind):
    rng = np.random.default_rng(2)
    layer = make_layer(kind, rng)
    x = rng.normal(size=(6, 4))
    weights = rng.normal(size=(6, 3))
    layer.forward(x)
    layer.backward(weights)

    for name, param in layer.params.items():
        numeric = numerical_gradient(scalar_objective(layer, x, weights), param)
        assert layer.grads[name].shape == param.shape
        assert relative_error(layer.grads[name], numeric) < TOLERANCE, name


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept(kind, dtype):
    rng = np.random.default_rng(3)
    layer = make_layer(kind, rng, dtype=dtype)
    x = rng.normal(size=(5, 4)).astype(dtype)

    out = layer.forward(x)
    grad_input = layer.backward(np.ones_like(out))

    assert out.dtype == dtype
    assert grad_input.dtype == dtype
    for name in layer.params:
        assert layer.params[name].dtype == dtype
        assert layer.grads[name].dtype == dtype


def test_linear_forward_is_x_at_weight_plus_bias():
    layer = layers.Linear(2, 2, rng=np.random.default_rng(0))
    layer.params["weight"][...] = [[1.0, 2.0], [3.0, 4.0]]
    layer.params["bias"][...] = [0.5, -0.5]

    out = layer.forward(np.array([[1.0, 1.0], [2.0, 0.0]]))

    np.testing.assert_array_equal(out, [[4.5, 5.5], [2.5, 3.5]])


def test_linear_glorot_limit_and_he_scale():
    rng = np.random.default_rng(0)
    glorot = layers.Linear(300, 200, rng=rng, init="glorot").params["weight"]
    he = layers.Linear(300, 200, rng=rng, init="he").params["weight"]

    assert np.abs(glorot).max() <= np.sqrt(6 / 500)
    assert np.abs(glorot).max() > 0.95 * np.sqrt(6 / 500)
    assert he.std() == pytest.approx(np.sqrt(2 / 300), rel=0.02)


def test_linear_same_generator_seed_same_weights():
    first = layers.Linear(5, 4, rng=np.random.default_rng(7)).params["weight"]
    second = layers.Linear(5, 4, rng=np.random.default_rng(7)).params["weight"]
    other = layers.Linear(5, 4, rng=np.random.default_rng(8)).params["weight"]

    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_linear_rejects_bad_sizes(bad):
    with pytest.raises(ValueError, match="in_features must be a positive integer"):
        layers.Linear(bad, 3)


def test_linear_rejects_unknown_init_and_dtype():
    with pytest.raises(ValueError, match="init must be one of glorot, he"):
        layers.Linear(2, 3, init="xavier")
    with pytest.raises(TypeError, match="use 'float32' or 'float64'"):
        layers.Linear(2, 3, dtype=np.int32)


def test_first_layer_skips_input_gradient():
    rng = np.random.default_rng(0)
    model = Sequential([layers.Linear(4, 8, rng=rng), layers.ReLU(), layers.Linear(8, 3, rng=rng)])
    out = model.forward(rng.normal(size=(5, 4)))

    assert model.backward(np.ones_like(out)) is None
    assert model.layers[0].needs_input_grad is False
    assert model.layers[2].needs_input_grad is True


def test_model_input_gradient_when_requested():
    rng = np.random.default_rng(0)
    model = Sequential([layers.Linear(4, 8, rng=rng), layers.Tanh(), layers.Linear(8, 3, rng=rng)],
                       input_grad=True)
    x = rng.normal(size=(5, 4))
    weights = rng.normal(size=(5, 3))
    model.forward(x)

    analytic = model.backward(weights)
    numeric = numerical_gradient(lambda: float(np.sum(weights * model.forward(x))), x)

    assert relative_error(analytic, numeric) < TOLERANCE


def test_sigmoid_is_stable_at_extremes():
    out = layers.Sigmoid().forward(np.array([-800.0, -40.0, 0.0, 40.0, 800.0]))

    assert np.all(np.isfinite(out))
    assert out[1] == pytest.approx(np.exp(-40.0) / (1 + np.exp(-40.0)), rel=1e-14)
    np.testing.assert_array_equal(out[[0, 2, 4]], [0.0, 0.5, 1.0])


def test_train_and_eval_modes():
    layer = layers.ReLU()

    assert layer.training is True
    assert layer.eval().training is False
    assert layer.train().training is True


def test_relu_across_batch_sizes_and_dtypes():
    # ReLU keeps an array of zeros between calls, and each call must still get its own shape.
    layer = layers.ReLU()
    batches = [np.array([[-1.0, 2.0], [3.0, -4.0]]),
               np.array([[5.0, -6.0]]),
               np.array([[-7.0, 8.0], [9.0, -1.0], [0.5, 0.0]], dtype=np.float32),
               np.array([[1.0, -2.0, 3.0]])]

    for x in batches:
        out = layer.forward(x)

        np.testing.assert_array_equal(out, np.where(x > 0, x, 0))
        assert out.dtype == x.dtype
        assert out.shape == x.shape


def test_relu_non_finite_inputs():
    layer = layers.ReLU()

    out = layer.forward(np.array([[-np.inf, np.inf, np.nan, -0.0]]))

    np.testing.assert_array_equal(out, [[0.0, np.inf, np.nan, 0.0]])
