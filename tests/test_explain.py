"""The softmax cross-entropy worked example: its numbers, its stability notes and the explain command."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minilearn.explain import (
    explain,
    parse_logits,
    softmax_cross_entropy_example,
    softmax_jacobian,
)

REPO = Path(__file__).resolve().parent.parent


def minilearn(*args):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "minilearn", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=60)


def test_example_values_by_hand():
    example = softmax_cross_entropy_example([2.3, -1.2, 0.7], 0)

    exps = [math.exp(2.3), math.exp(-1.2), math.exp(0.7)]
    probabilities = [value / sum(exps) for value in exps]
    np.testing.assert_allclose(example.probabilities, probabilities, rtol=1e-15)
    assert example.loss_nats == pytest.approx(-math.log(probabilities[0]), rel=1e-14)
    assert example.loss_bits == pytest.approx(-math.log2(probabilities[0]), rel=1e-14)
    np.testing.assert_allclose(example.grad_fused, np.array(probabilities) - [1, 0, 0],
                               rtol=1e-14)


def test_example_routes_agree():
    example = softmax_cross_entropy_example([2.3, -1.2, 0.7], 2)

    np.testing.assert_allclose(example.grad_jacobian, example.grad_fused, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(example.grad_numeric, example.grad_fused, rtol=1e-8, atol=1e-10)
    assert example.grad_probabilities.tolist()[:2] == [0.0, 0.0]
    assert example.grad_probabilities[2] == pytest.approx(-1 / example.probabilities[2])


def test_jacobian_shape_and_sums():
    p = np.array([0.2, 0.5, 0.3])

    jacobian = softmax_jacobian(p)

    np.testing.assert_allclose(jacobian, jacobian.T)
    np.testing.assert_allclose(jacobian.sum(axis=0), 0.0, atol=1e-16)
    assert jacobian[0, 0] == pytest.approx(0.2 * 0.8)
    assert jacobian[0, 1] == pytest.approx(-0.2 * 0.5)


def test_underflow_breaks_jacobian_route():
    example = softmax_cross_entropy_example([800.0, 0.0, 0.0], 1)

    assert np.isnan(example.grad_jacobian).all()
    assert example.naive_loss_nats == math.inf
    assert example.loss_nats == pytest.approx(800.0)
    np.testing.assert_array_equal(example.grad_fused, [1.0, -1.0, 0.0])


def test_text_shows_every_step():
    text = explain("softmax-ce")

    for phrase in ("p = softmax(z)", "nats", "bits", "Jacobian route", "J = dp/dz",
                   "fused route", "central differences"):
        assert phrase in text
    assert "failed" not in text
    assert "lost precision" not in text


def test_text_explains_underflow():
    text = explain("softmax-ce", "800,0,0", 1)

    assert "The Jacobian route failed" in text
    assert "nan" in text
    assert "L = 800 nats" in text


def test_text_explains_cancellation():
    text = explain("softmax-ce", "30,0,0", 0)

    assert "The Jacobian route lost precision" in text


@pytest.mark.parametrize("text, match", [
    ("1", "softmax needs at least 2 classes"),
    ("1,a", "entry 1 is 'a', not a number"),
    ("1,inf", "must be finite"),
    ("1,,2", "entry 1 is '', not a number"),
])
def test_parse_logits_rejects(text, match):
    with pytest.raises(ValueError, match=match):
        parse_logits(text)


def test_example_checks_array_logits():
    with pytest.raises(ValueError, match="must be finite"):
        softmax_cross_entropy_example([1.0, np.nan], 0)
    with pytest.raises(ValueError, match="at least 2 classes"):
        explain("softmax-ce", [1.0], 0)


def test_target_out_of_range():
    with pytest.raises(ValueError, match="--target 3 is not a class index for 3 logits"):
        explain("softmax-ce", "1,2,3", 3)


def test_unknown_topic():
    with pytest.raises(ValueError, match="unknown topic 'softmax'"):
        explain("softmax")


def test_explain_command_default():
    result = minilearn("explain", "softmax-ce")

    assert result.returncode == 0, result.stderr
    assert "logits z = [2.3, -1.2, 0.7]" in result.stdout
    assert "L = 0.208715 nats = 0.301112 bits" in result.stdout


def test_explain_command_negative_logits():
    result = minilearn("explain", "softmax-ce", "--logits=-1,2,0", "--target", "2")

    assert result.returncode == 0, result.stderr
    assert "logits z = [-1, 2, 0]" in result.stdout
    assert "onehot(y) = [0, 0, 1]" in result.stdout


def test_explain_command_bad_target():
    result = minilearn("explain", "softmax-ce", "--target", "5")

    assert result.returncode == 2
    assert "--target 5 is not a class index for 3 logits; use 0 to 2" in result.stderr
