"""SGD against PyTorch's published update rule, on sequences worked out by hand."""

import numpy as np
import pytest
from handed_cases import case

from minilearn.optim import SGD


def run_quadratic(optimizer, w0, steps):
    """Minimize f(w) = w**2 / 2, whose gradient is w; returns w after each step."""
    params = {"w": np.array([w0])}
    values = []
    for _ in range(steps):
        grads = {"w": params["w"].copy()}
        optimizer.step(params, grads)
        values.append(float(params["w"][0]))
    return values


SGD_CASES = ["sgd-momentum-sequence", "sgd-nesterov-sequence", "sgd-nesterov-weight-decay-sequence"]


@pytest.mark.parametrize("case_id", SGD_CASES)
def test_sgd_matches_handed_sequence(case_id):
    spec = case("training", case_id)
    optimizer = SGD(lr=spec["lr"], momentum=spec["momentum"], nesterov=spec["nesterov"],
                    weight_decay=spec["weight_decay"])

    values = run_quadratic(optimizer, spec["w0"], len(spec["expected_w"]))

    np.testing.assert_allclose(values, spec["expected_w"], rtol=1e-12)


@pytest.mark.parametrize("nesterov, weight_decay, expected", [
    # b = g first, then b = 0.9 b + g; w -= 0.1 b.
    (False, 0.0, [0.9, 0.72, 0.486]),
    # PyTorch's Nesterov form: w -= 0.1 (g + 0.9 b). Sutskever's form would give
    # 0.9, 0.729, 0.51759, the look-ahead points of these values.
    (True, 0.0, [0.81, 0.5751, 0.327321]),
    # weight_decay 0.1 added to the gradient before the momentum step.
    (True, 0.1, [0.791, 0.536581, 0.273767471]),
])
def test_sgd_momentum_sequences(nesterov, weight_decay, expected):
    optimizer = SGD(lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=weight_decay)

    values = run_quadratic(optimizer, 1.0, 3)

    np.testing.assert_allclose(values, expected, rtol=1e-12)


def test_sgd_plain_step():
    values = run_quadratic(SGD(lr=0.5), 2.0, 2)

    assert values == [1.0, 0.5]


def test_sgd_float32_stays_float32():
    params = {"w": np.ones(3, dtype=np.float32)}
    optimizer = SGD(lr=0.1, momentum=0.9, weight_decay=0.01)

    optimizer.step(params, {"w": np.ones(3, dtype=np.float32)})

    assert params["w"].dtype == np.float32
    assert optimizer.state["w"].dtype == np.float32


def test_sgd_does_not_modify_gradients():
    params = {"w": np.ones(2)}
    grads = {"w": np.array([1.0, 2.0])}
    optimizer = SGD(lr=0.1, momentum=0.9, weight_decay=0.1)

    optimizer.step(params, grads)
    optimizer.step(params, grads)

    np.testing.assert_array_equal(grads["w"], [1.0, 2.0])


@pytest.mark.parametrize("kwargs, error, match", [
    ({"lr": 0}, ValueError, "lr must be > 0"),
    ({"lr": -0.1}, ValueError, "lr must be > 0"),
    ({"lr": "0.1"}, TypeError, "lr must be a number"),
    ({"lr": 0.1, "momentum": -0.5}, ValueError, "momentum must be >= 0"),
    ({"lr": 0.1, "weight_decay": -1}, ValueError, "weight_decay must be >= 0"),
    ({"lr": 0.1, "nesterov": True}, ValueError, "nesterov=True needs momentum > 0"),
])
def test_sgd_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        SGD(**kwargs)
