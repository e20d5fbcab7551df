"""The loss checks: ``check_loss`` and the outputs, targets and instances it builds."""

import copy
import inspect

import numpy as np

from minilearn import functional as F
from minilearn.gradcheck import numerical_gradient
from minilearn.testing.common import (
    CLOSE_TOLERANCE,
    FINITE_DIFFERENCE_STEP,
    GRADIENT_TOLERANCE,
    arrays_equal,
    copy_or_none,
    display_name,
    gradient_error,
    run_check,
)
from minilearn.testing.report import CheckReport

DEFAULT_LOSS_INPUT_SHAPE = (5, 3)
REDUCTIONS = ("mean", "sum", "none")


def sample_outputs(expects, rng, shape):
    """Return float64 model outputs of ``shape`` of the kind a loss ``expects``.

    "logits" and "any" give normal values with standard deviation 1.5,
    "probabilities" their softmax and "log_probabilities" their log-softmax.
    """
    logits = 1.5 * rng.normal(size=shape)
    if expects == "probabilities":
        return F.softmax(logits, axis=-1)
    if expects == "log_probabilities":
        return F.log_softmax(logits, axis=-1)
    return logits


def choose_targets(loss, outputs, rng):
    """Return (targets, description) that ``loss`` accepts for ``outputs`` (N, K).

    A loss class may define a classmethod ``example_targets(rng, outputs)``.
    Otherwise the kit tries class indices (N,) first and, when the loss rejects
    them with ValueError or TypeError, probabilities in [0, 1] shaped like the
    outputs (as binary cross-entropy takes them).
    """
    sampler = getattr(type(loss), "example_targets", None)
    if sampler is not None:
        return np.asarray(sampler(rng, outputs)), "from example_targets"

    n_samples, n_classes = outputs.shape[0], outputs.shape[-1]
    indices = rng.integers(0, n_classes, size=n_samples)
    try:
        copy.deepcopy(loss).forward(outputs.copy(), indices)
    except (ValueError, TypeError):
        return rng.uniform(size=outputs.shape), "probabilities shaped like the outputs"
    return indices, "class indices"


def example_loss(cls, reduction=None):
    """Build an instance of the loss class ``cls``, with ``reduction`` when given.

    Uses ``cls.example(reduction)`` when the class defines it, else the constructor.
    """
    example = getattr(cls, "example", None)
    if example is not None:
        return example(reduction)
    if reduction is None:
        return cls()
    return cls(reduction=reduction)


def check_loss(loss, input_shape=DEFAULT_LOSS_INPUT_SHAPE, *, targets=None, factory=None, seed=0,
               tolerance=GRADIENT_TOLERANCE, eps=FINITE_DIFFERENCE_STEP, name=None):
    """Run every check of the loss contract on ``loss`` and return a CheckReport.

    The outputs of ``input_shape`` (N, K) are of the kind ``loss.expects``. The
    targets are ``targets`` when given, else as ``choose_targets`` picks them.
    ``factory(reduction)`` builds instances for the reduction checks (default:
    ``example_loss`` of the loss's class). The checks:

    - ``gradient``: backward against float64 central differences;
    - ``shapes_dtypes[float32]``, ``shapes_dtypes[float64]``: a finite loss of the
      right shape, and a gradient with the outputs' shape and dtype;
    - ``inputs_unchanged``: forward and backward modify neither the outputs nor the
      targets, and a second backward returns the same gradient;
    - ``repeatable``: two forward and backward passes give the same loss and gradient;
    - for a loss whose constructor takes ``reduction``: ``reductions`` ("none" has
      one loss per sample, and "sum" and "mean" are their sum and mean) and the
      gradient checks ``gradient[sum]`` and ``gradient[none]``, the latter with a
      random upstream gradient per sample.
    """
    input_shape = tuple(int(size) for size in input_shape)
    cls = type(loss)
    if factory is None:
        def factory(reduction):
            return example_loss(cls, reduction)

    rng = np.random.default_rng(seed)
    outputs = sample_outputs(getattr(loss, "expects", "any"), rng, input_shape)
    if targets is None:
        targets, described = choose_targets(loss, outputs, rng)
    else:
        targets, described = np.asarray(targets), "given"

    report = CheckReport("loss", name or display_name(cls))
    context = _LossContext(loss, outputs, targets, factory, rng, tolerance, eps)
    report.checks.append(run_check("gradient", context.gradient, loss))
    report.checks[-1].detail = report.checks[-1].detail or f"targets: {described}"
    for dtype in (np.float32, np.float64):
        report.checks.append(run_check(f"shapes_dtypes[{np.dtype(dtype).name}]",
                                      context.shapes_and_dtypes, dtype))
    report.checks.append(run_check("inputs_unchanged", context.inputs_unchanged))
    report.checks.append(run_check("repeatable", context.repeatable))
    if "reduction" in inspect.signature(cls).parameters:
        report.checks.append(run_check("reductions", context.reductions))
        for reduction in ("sum", "none"):
            report.checks.append(run_check(f"gradient[{reduction}]", context.reduction_gradient,
                                          reduction))
    return report


class _LossContext:
    """The outputs, targets and settings that the checks of one ``check_loss`` call share."""

    def __init__(self, loss, outputs, targets, factory, rng, tolerance, eps):
        self.loss = loss
        self.outputs = outputs
        self.targets = targets
        self.factory = factory
        self.rng = rng
        self.tolerance = tolerance
        self.eps = eps

    def gradient(self, loss, upstream=None):
        """Compare backward with central differences of L, or of sum(upstream * L) per sample."""
        outputs = self.outputs.copy()
        value = loss.forward(outputs, self.targets)
        if upstream is None and np.ndim(value) != 0:
            upstream = self.rng.normal(size=np.shape(value))
        analytic = loss.backward(None if upstream is None else upstream.copy())

        def objective():
            value = loss.forward(outputs, self.targets)
            if upstream is None:
                return float(value)
            return float(np.sum(upstream * value))

        if np.shape(analytic) != outputs.shape:
            return False, f"gradient has shape {np.shape(analytic)}, expected {outputs.shape}"
        error = gradient_error(analytic, numerical_gradient(objective, outputs, self.eps))
        detail = "" if error <= self.tolerance else "backward disagrees with central differences"
        return error <= self.tolerance, detail, error, self.tolerance

    def shapes_and_dtypes(self, dtype):
        dtype = np.dtype(dtype)
        outputs = self.outputs.astype(dtype)
        value = self.loss.forward(outputs, self.targets)
        grad = self.loss.backward()
        problems = []
        if np.ndim(value) == 0:
            if not np.isfinite(float(value)):
                problems.append(f"loss {value} is not finite")
        elif np.shape(value) != outputs.shape[:1]:
            problems.append(f"per-sample loss shape {np.shape(value)}, expected {outputs.shape[:1]}")
        if not isinstance(grad, np.ndarray):
            problems.append(f"backward returned {type(grad).__name__}, not an array")
        elif grad.shape != outputs.shape or grad.dtype != dtype:
            problems.append(f"gradient {grad.shape} {grad.dtype}, expected {outputs.shape} "
                            f"{dtype.name}")
        return not problems, "; ".join(problems)

    def inputs_unchanged(self):
        outputs = self.outputs.copy()
        targets = np.array(self.targets, copy=True)
        self.loss.forward(outputs, targets)
        first = copy_or_none(self.loss.backward())
        second = copy_or_none(self.loss.backward())
        problems = []
        if not np.array_equal(outputs, self.outputs):
            problems.append("the outputs were modified")
        if not np.array_equal(targets, self.targets):
            problems.append("the targets were modified")
        if not arrays_equal(first, second):
            problems.append("a second backward returned a different gradient")
        return not problems, "; ".join(problems)

    def repeatable(self):
        passes = []
        for _ in range(2):
            value = np.array(self.loss.forward(self.outputs.copy(), self.targets), copy=True)
            passes.append((value, copy_or_none(self.loss.backward())))
        (value_a, grad_a), (value_b, grad_b) = passes
        problems = []
        if not np.array_equal(value_a, value_b):
            problems.append("losses differ")
        if not arrays_equal(grad_a, grad_b):
            problems.append("gradients differ")
        return not problems, "; ".join(problems)

    def reductions(self):
        values = {reduction: self.factory(reduction).forward(self.outputs.copy(), self.targets)
                  for reduction in REDUCTIONS}
        per_sample = np.asarray(values["none"], dtype=np.float64)
        problems = []
        if per_sample.shape != self.outputs.shape[:1]:
            return False, f"reduction 'none' gave shape {per_sample.shape}, expected " \
                          f"{self.outputs.shape[:1]}"
        if not np.isclose(float(values["mean"]), per_sample.mean(), **CLOSE_TOLERANCE):
            problems.append(f"'mean' {float(values['mean'])} is not the mean of 'none' "
                            f"{per_sample.mean()}")

        # "sum" adds per-sample losses, or every element for losses such as MSE whose
        # per-sample value is a mean over the sample's elements.
        elements = self.outputs[0].size
        total = float(values["sum"])
        if np.isclose(total, per_sample.sum(), **CLOSE_TOLERANCE):
            convention = "'sum' adds the samples"
        elif np.isclose(total, per_sample.sum() * elements, **CLOSE_TOLERANCE):
            convention = "'sum' adds the elements"
        else:
            problems.append(f"'sum' {total} is neither the sum of 'none' {per_sample.sum()} nor "
                            f"that times the {elements} elements per sample")
        return (not problems, "; ".join(problems) if problems else convention)

    def reduction_gradient(self, reduction):
        loss = self.factory(reduction)
        upstream = self.rng.normal(size=self.outputs.shape[:1]) if reduction == "none" else None
        return self.gradient(loss, upstream)
