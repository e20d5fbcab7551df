"""The check kit: every registered layer and loss passes it, and broken ones fail the right check."""

import numpy as np
import pytest

import minilearn.layers  # noqa: F401 - registers the layers
import minilearn.losses  # noqa: F401 - registers the losses
from minilearn.layers import BatchNorm1d, Dropout, Layer, Linear, Tanh
from minilearn.losses import CrossEntropy
from minilearn.registry import LAYERS, LOSSES
from minilearn.testing import (
    GRADIENT_TOLERANCE,
    CheckReport,
    check_layer,
    check_loss,
    check_registered,
    check_registered_layer,
    check_registered_loss,
    example_layer,
    format_reports,
    gradient_error,
)


@pytest.mark.parametrize("name", LAYERS.names())
def test_registered_layer_passes_kit(name):
    report = check_registered_layer(name)

    report.assert_passed()
    assert "gradient[input]" in report.names()
    assert "train_eval" in report.names()


@pytest.mark.parametrize("name", LOSSES.names())
def test_registered_loss_passes_kit(name):
    report = check_registered_loss(name)

    report.assert_passed()
    assert "gradient" in report.names()


def test_layer_report_lists_every_check():
    layer = Linear(4, 3, rng=np.random.default_rng(0))

    report = check_layer(layer, (5, 4))

    assert report.names() == [
        "gradient[input]", "gradient[weight]", "gradient[bias]",
        "shapes_dtypes[float32]", "shapes_dtypes[float64]", "backward_keeps_inputs",
        "repeatable", "input_grad_skip", "save_load", "seed", "train_eval",
    ]
    gradient = report["gradient[weight]"]
    assert gradient.passed
    assert gradient.error < GRADIENT_TOLERANCE
    assert gradient.tolerance == GRADIENT_TOLERANCE


def test_layer_with_eval_behavior_checked_in_both_modes():
    report = check_layer(BatchNorm1d(4), (6, 4))

    assert report["gradient[input] (eval)"].passed
    assert report["gradient[gamma] (eval)"].passed
    assert "running_statistics" in report["train_eval"].detail


def test_float32_instance_checked():
    layer = BatchNorm1d(4, dtype=np.float32)

    report = check_layer(layer, (6, 4))

    report.assert_passed()
    assert report["gradient[gamma]"].error < GRADIENT_TOLERANCE


def test_kit_restores_mode_and_input_grad_flag():
    layer = Linear(4, 3, rng=np.random.default_rng(0))
    layer.eval()
    layer.needs_input_grad = False

    check_layer(layer, (5, 4))

    assert layer.training is False
    assert layer.needs_input_grad is False


def test_table_names_failures():
    report = check_layer(SignFlippedTanh(), (5, 4))

    table = format_reports([report])

    assert table.splitlines()[0].split() == ["kind", "name", "check", "result", "error",
                                            "tolerance", "detail"]
    assert "FAIL" in table
    assert "SignFlippedTanh" in table
    with pytest.raises(AssertionError, match="gradient\\[input\\]"):
        report.assert_passed()


def test_gradient_error_scale():
    assert gradient_error([1.0, -2.0], [1.0, -2.0]) == 0.0
    assert gradient_error([0.0, 0.0], [0.0, 0.0]) == 0.0
    assert gradient_error([1.0, -2.0], [-1.0, 2.0]) == pytest.approx(2.0)
    assert gradient_error([1.0, 2.0], [1.0, 2.0 + 1e-12]) < 1e-11
    assert gradient_error([np.nan], [1.0]) == float("inf")


# Broken layers: each breaks one part of the contract.


class SignFlippedTanh(Tanh):
    """Tanh whose backward has the wrong sign."""

    def backward(self, grad_output):
        return -super().backward(grad_output)


class BatchNormWithoutMean(BatchNorm1d):
    """BatchNorm1d whose training-mode input gradient lacks the 1/N factor."""

    def backward(self, grad_output):
        grad = super().backward(grad_output)
        x_hat, inv_std, used_batch_statistics = self._cache
        if grad is None or not used_batch_statistics:
            return grad
        return grad * grad_output.shape[0]


class AccumulatingLinear(Linear):
    """Linear that adds to its gradients instead of overwriting them."""

    def backward(self, grad_output):
        before = {name: value.copy() for name, value in self.grads.items()}
        grad = super().backward(grad_output)
        for name, value in self.grads.items():
            value += before[name]
        return grad


class InPlaceReLU(Layer):
    """ReLU whose backward zeroes its argument in place."""

    def forward(self, x):
        self._positive = x > 0
        return np.maximum(x, 0)

    def backward(self, grad_output):
        grad_output[~self._positive] = 0
        return grad_output


class GlobalRandomDropout(Dropout):
    """Dropout that draws its mask from numpy's global random state."""

    def forward(self, x):
        if not self.training:
            self._mask = None
            return x
        self._mask = (np.random.random(x.shape) >= self.p).astype(x.dtype) * 2.0
        return x * self._mask


class Float64Square(Layer):
    """x**2 with a correct backward, but computed in float64 whatever the input."""

    def forward(self, x):
        self._x = np.asarray(x, dtype=np.float64)
        return self._x ** 2

    def backward(self, grad_output):
        return 2 * self._x * grad_output


class DropoutDeclaredSame(Dropout):
    """Dropout that wrongly declares that training and evaluation modes agree."""

    eval_behavior = "same"


class ScaledLinear(Linear):
    """Linear whose weight gradient is twice too large."""

    def backward(self, grad_output):
        grad = super().backward(grad_output)
        self.grads["weight"] *= 2
        return grad


@pytest.mark.parametrize("layer_class, failing_check", [
    (SignFlippedTanh, "gradient[input]"),
    (BatchNormWithoutMean, "gradient[input]"),
    (ScaledLinear, "gradient[weight]"),
    (AccumulatingLinear, "repeatable"),
    (InPlaceReLU, "backward_keeps_inputs"),
    (GlobalRandomDropout, "seed"),
    (Float64Square, "shapes_dtypes[float32]"),
    (DropoutDeclaredSame, "train_eval"),
])
def test_broken_layer_fails_check(layer_class, failing_check):
    layer = example_layer(layer_class, np.random.default_rng(0), np.float64, (5, 4))

    report = check_layer(layer, (5, 4))

    assert not report.passed
    assert not report[failing_check].passed, format_reports([report])


def test_sign_flip_error_is_large():
    report = check_layer(SignFlippedTanh(), (5, 4))

    assert report["gradient[input]"].error == pytest.approx(2.0, rel=1e-6)


def test_dropout_gradient_uses_fixed_mask():
    layer = Dropout(0.5, rng=np.random.default_rng(3))

    report = check_layer(layer, (8, 6))

    assert report["gradient[input]"].passed
    assert report["repeatable"].passed


def test_unbuildable_layer_reported():
    class NeedsSize(Layer):
        def __init__(self, size):
            super().__init__()
            self.size = size

        def forward(self, x):
            return x

        def backward(self, grad_output):
            return grad_output

    report = check_layer(NeedsSize(3), (5, 4))

    assert report["gradient[input]"].passed
    assert not report["seed"].passed
    assert "example(rng, dtype)" in report["seed"].detail


def test_example_classmethod_is_used():
    class Scale(Layer):
        def __init__(self, factor):
            super().__init__()
            self.factor = factor

        @classmethod
        def example(cls, rng, dtype):
            return cls(2.5)

        def forward(self, x):
            return x * self.factor

        def backward(self, grad_output):
            return grad_output * self.factor

    report = check_layer(Scale(2.5), (5, 4))

    report.assert_passed()


# Losses


class CrossEntropyWithoutMean(CrossEntropy):
    """CrossEntropy whose gradient lacks the 1/N of the mean."""

    def backward(self, grad_output=None):
        grad = super().backward(grad_output)
        return grad * len(grad)


class CrossEntropyInPlace(CrossEntropy):
    """CrossEntropy that overwrites the logits passed to forward."""

    def forward(self, logits, targets):
        value = super().forward(logits, targets)
        logits[...] = 0
        return value


class LossWithoutReduction(CrossEntropy):
    """A loss that ignores its "sum" reduction."""

    def forward(self, logits, targets):
        value = super().forward(logits, targets)
        if self.reduction == "sum":
            return value / len(logits)
        return value


@pytest.mark.parametrize("loss_class, failing_check", [
    (CrossEntropyWithoutMean, "gradient"),
    (CrossEntropyInPlace, "inputs_unchanged"),
    (LossWithoutReduction, "reductions"),
])
def test_broken_loss_fails_check(loss_class, failing_check):
    report = check_loss(loss_class(), (5, 3))

    assert not report[failing_check].passed, format_reports([report])


def test_missing_mean_factor_error():
    report = check_loss(CrossEntropyWithoutMean(), (5, 3))

    # The analytic gradient is N = 5 times too large, so the scaled error is 1 - 1/5.
    assert report["gradient"].error == pytest.approx(0.8, rel=1e-6)


def test_loss_with_given_targets():
    targets = np.array([0, 1, 2, 1, 0])

    report = check_loss(CrossEntropy(label_smoothing=0.1), (5, 3), targets=targets)

    report.assert_passed()
    assert report["gradient"].detail == "targets: given"


def test_check_registered_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown layer or loss 'no_such_layer'"):
        check_registered(["no_such_layer"])


def test_check_registered_selects_names():
    reports = check_registered(["relu", "mse"])

    assert [(report.kind, report.name) for report in reports] == [("layer", "relu"),
                                                                   ("loss", "mse")]
    assert all(isinstance(report, CheckReport) for report in reports)
