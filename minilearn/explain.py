"""Worked examples that print every step of a gradient for numbers the user picks.

``minilearn explain softmax-ce --logits 2.3,-1.2,0.7 --target 0`` prints the
softmax cross-entropy of one sample: the probabilities, the loss in nats and bits,
the gradient with respect to the logits by the Jacobian route and by the fused
route, and a central-difference check of both. docs/backprop.md derives each step.
"""

import math
from dataclasses import dataclass

import numpy as np

from minilearn import functional as F
from minilearn.gradcheck import numerical_gradient
from minilearn.losses import CrossEntropy

TOPICS = {
    "softmax-ce": "softmax cross-entropy of one sample: probabilities, loss, and the gradient "
                  "by the Jacobian and the fused route",
}
DEFAULT_LOGITS = (2.3, -1.2, 0.7)
DEFAULT_TARGET = 0
FINITE_DIFFERENCE_STEP = 1e-6


@dataclass
class SoftmaxCrossEntropyExample:
    """Every intermediate value of the softmax cross-entropy of one sample with K classes, in float64."""

    logits: np.ndarray              # z, shape (K,)
    target: int                     # y, the class index
    probabilities: np.ndarray       # p = softmax(z), shape (K,)
    loss_nats: float                # L = logsumexp(z) - z[y]
    naive_loss_nats: float          # -log p[y] from the rounded p, inf when p[y] is 0
    grad_probabilities: np.ndarray  # dL/dp = -onehot(y) / p, shape (K,)
    jacobian: np.ndarray            # J = dp/dz = diag(p) - p p^T, shape (K, K)
    grad_jacobian: np.ndarray       # J^T dL/dp, shape (K,)
    grad_fused: np.ndarray          # p - onehot(y), shape (K,)
    grad_numeric: np.ndarray        # central differences of L, shape (K,)

    @property
    def loss_bits(self):
        """The loss in bits: nats divided by ln 2."""
        return self.loss_nats / math.log(2)


def parse_logits(text):
    """Parse comma-separated logits such as "2.3,-1.2,0.7" into a float64 array (K,), K >= 2."""
    parts = [part.strip() for part in str(text).split(",")]
    values = []
    for index, part in enumerate(parts):
        try:
            values.append(float(part))
        except ValueError:
            raise ValueError(f"--logits entry {index} is {part!r}, not a number; write the logits "
                             "as comma-separated numbers, e.g. --logits=2.3,-1.2,0.7") from None
    return check_logits(values)


def check_logits(logits):
    """Return the logits of one sample as a float64 array (K,) after checking K >= 2 and finiteness."""
    logits = np.array(logits, dtype=np.float64).reshape(-1)
    if logits.size < 2:
        raise ValueError(f"--logits has {logits.size} value(s); softmax needs at least 2 "
                         "classes, e.g. --logits=2.3,-1.2,0.7")
    if not np.all(np.isfinite(logits)):
        raise ValueError(f"--logits must be finite, got {logits.tolist()}; a logit of inf or nan "
                         "has no softmax")
    return logits


def check_target(target, n_classes):
    """Return ``target`` as an int after checking that it is a class index in [0, K)."""
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
        raise TypeError(f"--target must be an integer class index, got {target!r}")
    if not 0 <= target < n_classes:
        raise ValueError(f"--target {target} is not a class index for {n_classes} logits; "
                         f"use 0 to {n_classes - 1}")
    return int(target)


def softmax_jacobian(probabilities):
    """Return J = diag(p) - p p^T (K, K), where J[i, j] = dp_i/dz_j = p_i (delta_ij - p_j)."""
    p = np.asarray(probabilities, dtype=np.float64)
    return np.diag(p) - np.outer(p, p)


def softmax_cross_entropy_example(logits, target, eps=FINITE_DIFFERENCE_STEP):
    """Compute every step of the softmax cross-entropy of logits (K,) against class ``target``.

    The fused gradient and the loss come from ``CrossEntropy``, the loss that
    training uses, on a batch of one sample (N = 1). The Jacobian route multiplies
    the explicit Jacobian of the softmax with dL/dp, as backpropagation through a
    separate softmax layer and a log step would.
    """
    z = check_logits(logits)
    target = check_target(target, z.size)
    onehot = np.zeros_like(z)
    onehot[target] = 1.0

    loss = CrossEntropy()
    loss_nats = loss.forward(z[None, :], np.array([target]))
    grad_fused = loss.backward()[0]

    # The Jacobian route, step by step: p = softmax(z), dL/dp = -onehot / p, dL/dz = J^T dL/dp.
    p = F.softmax(z)
    with np.errstate(divide="ignore", invalid="ignore"):
        naive_loss = float(-np.log(p[target]))
        grad_probabilities = np.where(onehot == 1, -1.0 / p, 0.0)
        jacobian = softmax_jacobian(p)
        grad_jacobian = jacobian.T @ grad_probabilities

    def objective():
        return CrossEntropy().forward(z_perturbed[None, :], np.array([target]))

    z_perturbed = z.copy()
    grad_numeric = numerical_gradient(objective, z_perturbed, eps)

    return SoftmaxCrossEntropyExample(z, target, p, float(loss_nats), naive_loss,
                                      grad_probabilities, jacobian, grad_jacobian, grad_fused,
                                      grad_numeric)


# Text


def _number(value):
    return f"{value:.6g}"


def _vector(values):
    return "[" + ", ".join(_number(value) for value in values) + "]"


def _matrix(rows, indent):
    cells = [[_number(value) for value in row] for row in rows]
    width = max(len(cell) for row in cells for cell in row)
    return "\n".join(indent + "[" + "  ".join(cell.rjust(width) for cell in row) + "]"
                     for row in cells)


def _max_difference(a, b):
    with np.errstate(invalid="ignore"):
        difference = np.max(np.abs(np.asarray(a) - np.asarray(b)))
    return float(difference)


def relative_difference(a, b):
    """Return max |a - b| / max |b|: how far route a strays from route b, relative to b's scale."""
    scale = float(np.max(np.abs(b)))
    if scale == 0:
        return _max_difference(a, b)
    return _max_difference(a, b) / scale


def format_softmax_cross_entropy(example):
    """Return the worked example as text, one numbered step per stage."""
    z, y = example.logits, example.target
    lines = [
        f"Softmax cross-entropy of one sample (N = 1) with K = {z.size} classes",
        f"  logits z = {_vector(z)}",
        f"  target y = {y}, so onehot(y) = {_vector(np.eye(z.size)[y])}",
        "",
        "1. Probabilities: p = softmax(z) = exp(z - max z) / sum_k exp(z_k - max z)",
        f"   p = {_vector(example.probabilities)}",
        "",
        "2. Loss: L = -log p[y], computed as logsumexp(z) - z[y] so that it stays finite",
        f"   L = {_number(example.loss_nats)} nats = {_number(example.loss_bits)} bits "
        "(bits = nats / ln 2)",
    ]
    if not math.isfinite(example.naive_loss_nats):
        lines.append(f"   -log p[y] from the rounded p is {example.naive_loss_nats}, because "
                     f"p[y] = {_number(example.probabilities[y])} in float64")

    lines += [
        "",
        "3. Gradient by the Jacobian route: dL/dz = J^T dL/dp",
        f"   dL/dp = -onehot(y) / p = {_vector(example.grad_probabilities)}",
        "   J = dp/dz = diag(p) - p p^T, J[i, j] = p_i (delta_ij - p_j):",
        _matrix(example.jacobian, "     "),
        f"   dL/dz = J^T dL/dp = {_vector(example.grad_jacobian)}",
        "",
        "4. Gradient by the fused route: dL/dz = p - onehot(y)",
        f"   dL/dz = {_vector(example.grad_fused)}",
        "",
        f"5. Check by central differences of L (step {FINITE_DIFFERENCE_STEP:g})",
        f"   dL/dz ~ {_vector(example.grad_numeric)}",
        "   largest difference from the fused route, absolute and relative to its largest entry:",
        f"     Jacobian route       "
        f"{_number(_max_difference(example.grad_jacobian, example.grad_fused)):>12}  "
        f"{_number(relative_difference(example.grad_jacobian, example.grad_fused)):>12}",
        f"     central differences  "
        f"{_number(_max_difference(example.grad_numeric, example.grad_fused)):>12}  "
        f"{_number(relative_difference(example.grad_numeric, example.grad_fused)):>12}",
    ]
    lines += _stability_note(example)
    lines += [
        "",
        "For a batch of N samples the mean loss divides each row of the gradient by N:",
        "dL/dZ = (softmax(Z) - onehot(y)) / N. docs/backprop.md derives every step.",
    ]
    return "\n".join(lines)


# A relative difference above this between the routes is reported as lost precision.
PRECISION_NOTE_THRESHOLD = 1e-8


def _stability_note(example):
    """Explain how the Jacobian route lost the gradient, or return no lines when it kept it."""
    y = example.target
    if not np.all(np.isfinite(example.grad_jacobian)):
        gap = float(np.max(example.logits) - example.logits[y])
        return [
            "",
            f"The Jacobian route failed. z[y] lies {_number(gap)} below the largest logit, so",
            "p[y] = exp(z[y] - max z) / sum underflows to 0 (in float64, exp(x) is 0 below",
            "about -745). Then dL/dp[y] = -1/0 = -inf, and J^T dL/dp multiplies it by the",
            "zeros in row y of J, which gives NaN. The fused route never divides by p.",
        ]
    if relative_difference(example.grad_jacobian, example.grad_fused) > PRECISION_NOTE_THRESHOLD:
        return [
            "",
            "The Jacobian route lost precision. J[y, y] = p[y] - p[y]^2 subtracts two numbers",
            "close to each other, and the rounding of p[y] near 1 dominates the difference.",
            "The fused route computes p[y] - 1 as expm1(log p[y]), without that cancellation.",
        ]
    return []


def explain(topic, logits=DEFAULT_LOGITS, target=DEFAULT_TARGET):
    """Return the text of the worked example ``topic`` (one of ``TOPICS``) for the given numbers."""
    if topic not in TOPICS:
        raise ValueError(f"unknown topic {topic!r}; expected one of {', '.join(TOPICS)}")
    if isinstance(logits, str):
        logits = parse_logits(logits)
    example = softmax_cross_entropy_example(logits, target)
    return format_softmax_cross_entropy(example)
