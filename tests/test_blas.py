"""The BLAS axpby update against the same update in numpy, and SGD on both paths."""

import copy
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from minilearn import blas
from minilearn.optim import SGD

needs_blas = pytest.mark.skipif(not blas.blas_available(),
                                reason="numpy's bundled OpenBLAS was not found")


@pytest.fixture
def numpy_path(monkeypatch):
    """Make every Axpby built inside the test take the numpy path."""
    monkeypatch.setattr(blas, "_routines", lambda: {})


def reference_axpby(alpha, x, beta, y):
    """Return alpha * x + beta * y in float64, as the exact value to compare against."""
    return alpha * x.astype(np.float64) + beta * y.astype(np.float64)


def blas_architecture():
    """Return the OpenBLAS kernel name that threadpoolctl reports for numpy's BLAS, or None."""
    from threadpoolctl import threadpool_info

    for info in threadpool_info():
        if info.get("internal_api") == "openblas":
            return info.get("architecture")
    return None


@needs_blas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("alpha, beta", [(1.0, 0.9), (-0.01, 1.0), (-0.3, 0.5), (2.5, -1.0)])
def test_blas_axpby_near_exact_value(dtype, alpha, beta):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(100_003).astype(dtype)
    y = rng.standard_normal(100_003).astype(dtype)
    expected = reference_axpby(np.float64(dtype(alpha)), x, np.float64(dtype(beta)), y)

    blas.Axpby(x, y)(alpha, beta)

    # Two roundings (the products, then the sum) at most, relative to the larger term.
    scale = np.abs(alpha * x.astype(np.float64)) + np.abs(beta * y.astype(np.float64))
    assert np.all(np.abs(y - expected) <= 2 * np.finfo(dtype).eps * scale)


@needs_blas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blas_bit_equal_on_haswell(dtype, monkeypatch):
    if blas_architecture() != "Haswell":
        pytest.skip("only OpenBLAS's Haswell kernels round as numpy does")
    rng = np.random.default_rng(1)
    x = rng.standard_normal(50_001).astype(dtype)
    y = rng.standard_normal(50_001).astype(dtype)
    y_blas, y_numpy = y.copy(), y.copy()

    # axpby, the routine for beta other than 1; axpy for beta = 1 rounds differently.
    blas.Axpby(x, y_blas)(1.0, 0.9)
    blas.Axpby(x, y_blas)(-0.3, 0.5)
    monkeypatch.setattr(blas, "_routines", lambda: {})
    blas.Axpby(x, y_numpy)(1.0, 0.9)
    blas.Axpby(x, y_numpy)(-0.3, 0.5)

    np.testing.assert_array_equal(y_blas, y_numpy)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_path_matches_formula(dtype, numpy_path):
    x = np.array([1.0, -2.0, 3.0], dtype=dtype)
    y = np.array([10.0, 20.0, -30.0], dtype=dtype)
    scratch = np.empty_like(y)

    result = blas.Axpby(x, y)(0.5, 2.0, scratch=scratch)

    assert result is y
    np.testing.assert_array_equal(y, np.array([20.5, 39.0, -58.5], dtype=dtype))
    assert y.dtype == dtype


def test_zero_beta_keeps_nan_of_y():
    # OpenBLAS 0.3.31 ignores y when beta is 0, but numpy's 0 * NaN keeps the NaN.
    x = np.ones(4)
    y = np.array([1.0, np.nan, 2.0, 3.0])

    blas.Axpby(x, y)(1.0, 0.0)

    np.testing.assert_array_equal(y, [1.0, np.nan, 1.0, 1.0])


def test_zero_alpha_keeps_nan_of_x():
    x = np.array([1.0, np.nan, 2.0])
    y = np.ones(3)

    blas.Axpby(x, y)(0.0, 1.0)

    np.testing.assert_array_equal(y, [1.0, np.nan, 1.0])


def test_noncontiguous_arrays_take_numpy_path():
    base_x = np.arange(10.0)
    base_y = np.ones(10)

    update = blas.Axpby(base_x[::2], base_y[::2])
    update(2.0, 1.0)

    assert update._axpby is None
    np.testing.assert_array_equal(base_y, [1, 1, 5, 1, 9, 1, 13, 1, 17, 1])


def test_overlapping_views_take_numpy_path():
    base = np.arange(6.0)
    expected = base[1:5] + 2.0 * base[0:4]

    update = blas.Axpby(base[0:4], base[1:5])
    update(2.0, 1.0)

    assert update._axpby is None
    np.testing.assert_array_equal(base[1:5], expected)


def run_with_variable(value):
    """Return the finished process that prints blas_available() with MINILEARN_BLAS_UPDATES=value."""
    code = ("import logging; logging.basicConfig(); "
            "from minilearn import blas; print(blas.blas_available())")
    env = dict(os.environ, MINILEARN_BLAS_UPDATES=value)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True)


@pytest.mark.parametrize("value", ["0", "false", " OFF ", "No"])
def test_environment_variable_turns_blas_off(value):
    result = run_with_variable(value)

    assert result.stdout.strip() == "False"


@needs_blas
def test_environment_variable_one_keeps_blas():
    result = run_with_variable("1")

    assert result.stdout.strip() == "True"


def run_momentum_sgd(steps, dtype, new_gradient_arrays, **options):
    """Run SGD on a small quadratic and return the parameters after ``steps`` steps."""
    rng = np.random.default_rng(2)
    target = rng.standard_normal((30, 7)).astype(dtype)
    params = {"w": np.zeros((30, 7), dtype=dtype), "b": np.zeros(7, dtype=dtype)}
    grads = {name: np.zeros_like(value) for name, value in params.items()}
    optimizer = SGD(lr=0.05, momentum=0.9, **options)

    for _ in range(steps):
        if new_gradient_arrays:
            grads = {name: np.zeros_like(value) for name, value in params.items()}
        # gradient of 0.5 * ||w - target||^2 and of 0.5 * ||b - 1||^2, written in place
        np.subtract(params["w"], target, out=grads["w"])
        np.subtract(params["b"], 1, out=grads["b"])
        optimizer.step(params, grads)
    return params


@needs_blas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", [{}, {"nesterov": True}, {"weight_decay": 0.01}])
def test_sgd_blas_path_agrees_with_numpy_path(dtype, options, monkeypatch):
    with_blas = run_momentum_sgd(40, dtype, new_gradient_arrays=False, **options)
    monkeypatch.setattr(blas, "_routines", lambda: {})
    with_numpy = run_momentum_sgd(40, dtype, new_gradient_arrays=False, **options)

    for name in with_blas:
        np.testing.assert_allclose(with_blas[name], with_numpy[name],
                                   rtol=50 * np.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_follows_gradient_arrays_that_change(dtype):
    # A layer may hand over a new gradient array every step instead of writing in place.
    reused = run_momentum_sgd(25, dtype, new_gradient_arrays=False)
    renewed = run_momentum_sgd(25, dtype, new_gradient_arrays=True)

    for name in reused:
        np.testing.assert_array_equal(reused[name], renewed[name])


def test_sgd_converges_to_minimum():
    params = run_momentum_sgd(600, np.float64, new_gradient_arrays=False)

    np.testing.assert_allclose(params["b"], 1.0, rtol=1e-9)


@pytest.mark.parametrize("copy_optimizer", [
    lambda optimizer: pickle.loads(pickle.dumps(optimizer)),
    copy.deepcopy,
], ids=["pickle", "deepcopy"])
def test_sgd_copy_continues_identically(copy_optimizer):
    params = {"w": np.linspace(-1.0, 1.0, 12)}
    grads = {"w": np.zeros(12)}
    optimizer = SGD(lr=0.1, momentum=0.9)
    for _ in range(3):
        np.copyto(grads["w"], params["w"])
        optimizer.step(params, grads)

    copied_params = copy.deepcopy(params)
    copied_optimizer = copy_optimizer(optimizer)
    for _ in range(3):
        np.copyto(grads["w"], params["w"])
        optimizer.step(params, grads)
        copied_grads = {"w": copied_params["w"].copy()}
        copied_optimizer.step(copied_params, copied_grads)

    np.testing.assert_array_equal(copied_params["w"], params["w"])
    np.testing.assert_array_equal(copied_optimizer.state["w"], optimizer.state["w"])


def test_environment_variable_unknown_value_warns():
    result = run_with_variable("disabled")

    assert "MINILEARN_BLAS_UPDATES='disabled' is not one of 0, false, no, off" in result.stderr
