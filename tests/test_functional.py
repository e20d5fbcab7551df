"""Tests of minilearn.functional and of the Softmax and LogSoftmax layers built on it.

The float64 reference here is written independently of the library: plain Python
floats, one row at a time, with math.fsum for the sums.
"""

import math

import numpy as np
import pytest

from minilearn import functional as F
from minilearn.gradcheck import numerical_gradient, relative_error
from minilearn.layers import LogSoftmax, Softmax


def reference_logsumexp(row):
    """Return log(sum(exp(row))) for a list of floats, shifted by the row maximum."""
    top = max(row)
    if top == -math.inf:
        return -math.inf
    first = row.index(top)
    rest = math.fsum(math.exp(value - top) for index, value in enumerate(row) if index != first)
    return top + math.log1p(rest)


def reference_log_softmax(row):
    """Return the log-softmax of a list of floats, exact for the dominant entry."""
    top = max(row)
    first = row.index(top)
    rest = math.fsum(math.exp(value - top) for index, value in enumerate(row) if index != first)
    return [(value - top) - math.log1p(rest) for value in row]


def random_rows(scale, seed=0, shape=(6, 5)):
    return np.random.default_rng(seed).normal(size=shape) * scale


SCALES = [1.0, 1e2, 1e4, 1e30, 1e300]


@pytest.mark.parametrize("scale", SCALES)
def test_logsumexp_matches_reference(scale):
    x = random_rows(scale)

    expected = [reference_logsumexp(row) for row in x.tolist()]

    np.testing.assert_allclose(F.logsumexp(x), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("scale", SCALES)
def test_log_softmax_matches_reference(scale):
    x = random_rows(scale)

    expected = [reference_log_softmax(row) for row in x.tolist()]

    np.testing.assert_allclose(F.log_softmax(x), expected, rtol=1e-12, atol=0)


def test_log_softmax_tiny_dominant_entry():
    out = F.log_softmax(np.array([40.0, 0.0]))

    # log(1 / (1 + exp(-40))) = -log1p(exp(-40)) = -4.248354255291589e-18
    np.testing.assert_allclose(out[0], -4.248354255291589e-18, rtol=1e-14, atol=0)
    assert out[0] != 0
    np.testing.assert_allclose(out[1], -40.0, rtol=1e-15, atol=0)


def test_log_softmax_tiny_entries_many_rows():
    gaps = np.array([20.0, 30.0, 40.0, 50.0, 700.0])
    x = np.stack([gaps, np.zeros_like(gaps)], axis=1)

    out = F.log_softmax(x)

    np.testing.assert_allclose(out[:, 0], -np.log1p(np.exp(-gaps)), rtol=1e-14, atol=0)
    assert np.all(out[:, 0] < 0)


def test_log_softmax_matches_mpmath():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    x = np.array([[40.0, 0.0, -3.0], [1.2, 2000.0, -4000.0], [1e-3, 2e-3, 0.0]])

    out = F.log_softmax(x)

    for row, got in zip(x.tolist(), out.tolist()):
        total = mpmath.fsum(mpmath.exp(mpmath.mpf(value)) for value in row)
        expected = [float(mpmath.mpf(value) - mpmath.log(total)) for value in row]
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


def test_logsumexp_per_row_max_shift():
    x = np.array([[0.0, 0.0], [1000.0, 1000.0], [-1000.0, -1000.0], [1e5, 1e5]])

    out = F.logsumexp(x)

    np.testing.assert_allclose(out, x[:, 0] + math.log(2), rtol=1e-15, atol=0)


def test_logsumexp_axis_and_keepdims():
    x = random_rows(3.0)

    by_column = F.logsumexp(x, axis=0, keepdims=True)

    assert by_column.shape == (1, x.shape[1])
    expected = [reference_logsumexp(column) for column in x.T.tolist()]
    np.testing.assert_allclose(by_column[0], expected, rtol=1e-12, atol=0)


def test_softmax_matches_exp_of_log_softmax():
    x = random_rows(10.0)

    probs = F.softmax(x)

    np.testing.assert_allclose(probs, np.exp(F.log_softmax(x)), rtol=1e-13, atol=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_and_log_softmax_pair(dtype):
    x = np.concatenate([random_rows(10.0), [[np.inf, 0, 0, 0, 0], [-np.inf] * 5]]).astype(dtype)

    probs, log_probs = F.softmax_and_log_softmax(x)

    assert probs.dtype == dtype
    assert log_probs.dtype == dtype
    np.testing.assert_array_equal(log_probs, F.log_softmax(x))
    rtol = 1e-6 if dtype == np.float32 else 1e-15
    np.testing.assert_allclose(probs, F.softmax(x), rtol=rtol, atol=0)
    assert np.isnan(probs[-2:]).all()


def test_all_negative_infinity_row():
    x = np.array([[-np.inf, -np.inf], [0.0, 1.0]])

    assert F.logsumexp(x)[0] == -np.inf
    assert np.isnan(F.log_softmax(x)[0]).all()
    assert np.isnan(F.softmax(x)[0]).all()
    assert np.isfinite(F.log_softmax(x)[1]).all()


def test_negative_infinity_entry_probability_zero():
    x = np.array([[0.0, -np.inf, 1.0]])

    log_probs = F.log_softmax(x)
    probs = F.softmax(x)

    assert log_probs[0, 1] == -np.inf
    assert probs[0, 1] == 0
    np.testing.assert_allclose(log_probs[0, [0, 2]], reference_log_softmax([0.0, 1.0]),
                               rtol=1e-15)


def test_positive_infinity_row_gives_nan():
    x = np.array([[np.inf, 0.0], [np.inf, np.inf], [1.0, 2.0]])

    assert np.all(F.logsumexp(x)[:2] == np.inf)
    assert np.isnan(F.log_softmax(x)[:2]).all()
    assert np.isnan(F.softmax(x)[:2]).all()
    assert np.isfinite(F.log_softmax(x)[2]).all()


def test_nan_row_gives_nan():
    x = np.array([[np.nan, 0.0], [0.0, np.nan]])

    assert np.isnan(F.logsumexp(x)).all()
    assert np.isnan(F.log_softmax(x)).all()
    assert np.isnan(F.softmax(x)).all()


def test_non_finite_rows_no_warnings():
    x = np.array([[np.inf, 1000.0], [-np.inf, -np.inf], [np.nan, 0.0]])

    with np.errstate(all="raise"):
        F.logsumexp(x)
        F.log_softmax(x)
        F.softmax(x)


@pytest.mark.parametrize("function", [F.logsumexp, F.log_softmax, F.softmax, F.sigmoid])
def test_float32_stays_float32(function):
    x = random_rows(5.0).astype(np.float32)

    assert function(x).dtype == np.float32


def test_integer_input_is_computed_in_float64():
    assert F.log_softmax(np.array([[1, 2, 3]])).dtype == np.float64


def test_sigmoid_keeps_relative_precision():
    x = np.array([-100.0, -30.0, 0.0, 30.0, 800.0, -800.0])

    out = F.sigmoid(x)

    np.testing.assert_allclose(out[0], 3.720075976020836e-44, rtol=1e-15, atol=0)
    np.testing.assert_allclose(out[1], math.exp(-30) / (1 + math.exp(-30)), rtol=1e-15, atol=0)
    assert out[2] == 0.5
    assert out[4] == 1.0
    assert out[5] == 0.0


def test_one_hot_rows():
    out = F.one_hot(np.array([2, 0, 1]), 3)

    np.testing.assert_array_equal(out, [[0, 0, 1], [1, 0, 0], [0, 1, 0]])


@pytest.mark.parametrize("bad_target", [-1, 3, 100])
def test_one_hot_rejects_out_of_range(bad_target):
    with pytest.raises(ValueError, match="outside the valid class range"):
        F.one_hot(np.array([0, bad_target]), 3)


def test_entropy_in_bits_and_nats():
    uniform = np.full(4, 0.25)

    np.testing.assert_allclose(F.entropy(uniform, base=2), 2.0, rtol=1e-15)
    np.testing.assert_allclose(F.entropy(uniform), math.log(4), rtol=1e-15)
    np.testing.assert_allclose(F.entropy(uniform, base=math.e), math.log(4), rtol=1e-15)


def test_entropy_counts_zero_probability_as_zero():
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])

    out = F.entropy(p)

    np.testing.assert_allclose(out, [math.log(2), 0.0], rtol=1e-15, atol=0)


def test_cross_entropy_zero_and_infinite_terms():
    p = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])
    q = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])

    out = F.cross_entropy(p, q)

    np.testing.assert_allclose(out[0], math.log(2), rtol=1e-15)
    assert out[1] == np.inf


def test_kl_divergence_zero_and_infinite_terms():
    p = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
    q = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.25, 0.75, 0.0]])

    out = F.kl_divergence(p, q)

    assert out[0] == 0
    assert out[1] == np.inf
    np.testing.assert_allclose(out[2], math.log(4 / 3), rtol=1e-15)


@pytest.mark.parametrize("base", [None, 2])
def test_kl_is_cross_entropy_minus_entropy(base):
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(6), size=20)
    q = rng.dirichlet(np.ones(6), size=20)
    p[::3, 0] = 0

    kl = F.kl_divergence(p, q, base=base)
    difference = F.cross_entropy(p, q, base=base) - F.entropy(p, base=base)

    np.testing.assert_allclose(kl, difference, rtol=1e-12, atol=1e-15)
    assert np.all(kl >= 0)


def test_kl_along_axis_zero():
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(4), size=3).T
    q = rng.dirichlet(np.ones(4), size=3).T

    out = F.kl_divergence(p, q, axis=0)

    np.testing.assert_allclose(out, F.kl_divergence(p.T, q.T), rtol=1e-15)


def test_information_measures_keep_float32():
    p = np.array([0.2, 0.8], dtype=np.float32)
    q = np.array([0.5, 0.5], dtype=np.float32)

    assert F.entropy(p).dtype == np.float32
    assert F.cross_entropy(p, q, base=2).dtype == np.float32
    assert F.kl_divergence(p, q).dtype == np.float32


@pytest.mark.parametrize("base", [0, -2, 1, math.inf])
def test_entropy_rejects_invalid_base(base):
    with pytest.raises(ValueError, match="base must be a positive finite number other than 1"):
        F.entropy([0.5, 0.5], base=base)


def test_entropy_rejects_non_numeric_base():
    with pytest.raises(TypeError, match="base must be a number or None"):
        F.entropy([0.5, 0.5], base="bits")


# Step of the central differences. Its truncation error, O(eps**2) = 1e-10, and its
# rounding error, about 1e-16 / eps = 1e-11, both stay far below the tolerance even
# for gradient entries near 1e-4, where eps = 1e-6 lets rounding reach 1e-6.
GRADCHECK_EPS = 1e-5


def check_layer_gradient(layer, x, upstream):
    """Compare the layer's backward with central differences of sum(forward(x) * upstream)."""
    layer.forward(x)
    analytic = layer.backward(upstream)

    numeric = numerical_gradient(lambda: float(np.sum(layer.forward(x) * upstream)), x,
                                 eps=GRADCHECK_EPS)

    return relative_error(analytic, numeric)


@pytest.mark.parametrize("layer_class", [Softmax, LogSoftmax])
def test_softmax_layer_gradient_check(layer_class):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 5)) * 2
    upstream = rng.normal(size=(4, 5))

    assert check_layer_gradient(layer_class(), x, upstream) < 1e-6
