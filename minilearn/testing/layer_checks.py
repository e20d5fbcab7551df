"""The layer checks: ``check_layer`` and the inputs and example instances it builds.

Inputs are standard normal, with entries closer to 0 than ``KINK_MARGIN`` moved
away from it, so the difference steps never cross the kink of ReLU-like layers. A
layer whose inputs must lie elsewhere defines a classmethod ``example_input(rng,
shape)`` that returns a float64 array.

A stochastic layer keeps a ``numpy.random.Generator`` as an attribute (Dropout's
``rng``). Before every forward of a check the kit puts each generator attribute of
the layer back into the state it had when the check began, so every forward draws
the same mask and the finite differences see one fixed function.

Checks that need a new instance (float32 and float64 builds, seeds, the save and
load round trip) call ``factory(rng, dtype)``. Without one, the kit builds the
layer's class with ``example_layer``, which calls the classmethod ``example(rng,
dtype)`` when the class defines one. Otherwise it calls the constructor with
``rng`` and ``dtype`` where it takes them, a required ``in_features`` or
``num_features`` set to the input width, and a required ``out_features`` set to 3.
"""

import inspect
import tempfile
from pathlib import Path

import numpy as np

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
from minilearn.testing.report import Check, CheckReport

KINK_MARGIN = 0.1
DEFAULT_LAYER_INPUT_SHAPE = (5, 4)
EXAMPLE_OUT_FEATURES = 3
EVAL_BEHAVIORS = ("same", "identity", "running_statistics")


def sample_input(cls, rng, shape):
    """Return a float64 input of ``shape`` for a layer of class ``cls``.

    The class's ``example_input(rng, shape)`` is used when it has one. Otherwise the
    input is standard normal with entries within ``KINK_MARGIN`` of 0 pushed out by
    ``KINK_MARGIN``, away from 0.
    """
    sampler = getattr(cls, "example_input", None)
    if sampler is not None:
        x = np.array(sampler(rng, tuple(shape)), dtype=np.float64)
        if x.shape != tuple(shape):
            raise ValueError(f"{cls.__name__}.example_input returned shape {x.shape}, "
                             f"expected {tuple(shape)}")
        return x

    x = rng.normal(size=shape)
    near_zero = np.abs(x) < KINK_MARGIN
    x[near_zero] += np.where(x[near_zero] < 0, -KINK_MARGIN, KINK_MARGIN)
    return x


def example_layer(cls, rng, dtype, input_shape=DEFAULT_LAYER_INPUT_SHAPE):
    """Build a small instance of the layer class ``cls`` for inputs of ``input_shape``.

    Uses ``cls.example(rng, dtype)`` when the class defines it. Otherwise the
    constructor gets ``rng`` and ``dtype`` where it takes them, the input width for
    a required ``in_features`` or ``num_features``, and ``EXAMPLE_OUT_FEATURES`` for
    a required ``out_features``. Any other required argument raises TypeError.
    """
    example = getattr(cls, "example", None)
    if example is not None:
        return example(rng, dtype)

    arguments = {}
    for name, parameter in inspect.signature(cls).parameters.items():
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        required = parameter.default is inspect.Parameter.empty
        if name == "rng":
            arguments[name] = rng
        elif name == "dtype":
            arguments[name] = dtype
        elif required and name in ("in_features", "num_features"):
            arguments[name] = int(input_shape[-1])
        elif required and name == "out_features":
            arguments[name] = EXAMPLE_OUT_FEATURES
        elif required:
            raise TypeError(
                f"cannot build an example {cls.__name__}: its constructor needs {name!r}; "
                "define a classmethod example(rng, dtype) that returns a small instance"
            )
    return cls(**arguments)


# Generators of stochastic layers


def _generator_states(layer):
    """Return the state of every ``numpy.random.Generator`` attribute of ``layer``, by name."""
    return {name: value.bit_generator.state for name, value in vars(layer).items()
            if isinstance(value, np.random.Generator)}


def _restore_generators(layer, states):
    for name, state in states.items():
        getattr(layer, name).bit_generator.state = state


def _forward(layer, x, states):
    """Run ``layer.forward(x)`` with the layer's generators in the given states."""
    _restore_generators(layer, states)
    return layer.forward(x)


def check_layer(layer, input_shape, *, factory=None, seed=0, tolerance=GRADIENT_TOLERANCE,
                eps=FINITE_DIFFERENCE_STEP, name=None):
    """Run every check of the layer contract on ``layer`` and return a CheckReport.

    ``input_shape`` is the shape of the inputs, e.g. (N, D). ``factory(rng, dtype)``
    builds fresh instances (see the module docstring for the default). The checks:

    - ``gradient[input]`` and ``gradient[<parameter>]``: backward against float64
      central differences, in training mode, and again in evaluation mode (suffix
      ``(eval)``) for a layer whose ``eval_behavior`` is not "same";
    - ``shapes_dtypes[float32]``, ``shapes_dtypes[float64]``: output, input gradient,
      parameters and their gradients keep the dtype, with the right shapes;
    - ``backward_keeps_inputs``: backward modifies neither its argument nor the input
      that forward cached, so a second backward returns the same result;
    - ``repeatable``: two forward and backward passes on one input give the same
      output and gradients, so nothing accumulates between calls;
    - ``input_grad_skip``: with ``needs_input_grad`` off, backward returns None or the
      same input gradient and fills the same parameter gradients;
    - ``save_load``: parameters survive ``Sequential.save`` and ``load`` into a fresh instance;
    - ``seed``: two instances built from equally seeded generators have the same
      parameters and give the same outputs in both modes;
    - ``train_eval``: ``train()``/``eval()`` set ``training``, and the two modes
      relate as the class's ``eval_behavior`` declares.

    The layer is returned to its mode and ``needs_input_grad`` setting afterwards.
    """
    input_shape = tuple(int(size) for size in input_shape)
    cls = type(layer)
    if factory is None:
        def factory(rng, dtype):
            return example_layer(cls, rng, dtype, input_shape)

    report = CheckReport("layer", name or display_name(cls))
    was_training = layer.training
    needed_input_grad = layer.needs_input_grad
    layer.needs_input_grad = True
    context = _LayerContext(layer, input_shape, factory, seed, tolerance, eps)
    try:
        report.checks.extend(context.gradient_checks())
        for dtype in (np.float32, np.float64):
            report.checks.append(run_check(f"shapes_dtypes[{np.dtype(dtype).name}]",
                                          context.shapes_and_dtypes, dtype))
        report.checks.append(run_check("backward_keeps_inputs", context.backward_keeps_inputs))
        report.checks.append(run_check("repeatable", context.repeatable))
        report.checks.append(run_check("input_grad_skip", context.input_grad_skip))
        report.checks.append(run_check("save_load", context.save_load))
        report.checks.append(run_check("seed", context.same_seed))
        report.checks.append(run_check("train_eval", context.train_eval))
    finally:
        layer.train(was_training)
        layer.needs_input_grad = needed_input_grad
    return report


class _LayerContext:
    """The inputs and fresh instances that the checks of one ``check_layer`` call share."""

    def __init__(self, layer, input_shape, factory, seed, tolerance, eps):
        self.layer = layer
        self.input_shape = input_shape
        self.factory = factory
        self.seed = seed
        self.tolerance = tolerance
        self.eps = eps
        self.rng = np.random.default_rng(seed)

        # The side-effect checks run on the layer itself, fed in its own dtype.
        dtypes = {value.dtype for value in layer.params.values()}
        self.dtype = dtypes.pop() if len(dtypes) == 1 else np.dtype(np.float64)

    def fresh(self, dtype=np.float64, seed=None):
        """Build a new instance in training mode with its input gradient on."""
        seed = self.seed if seed is None else seed
        layer = self.factory(np.random.default_rng(seed), dtype)
        layer.train()
        layer.needs_input_grad = True
        return layer

    def sample(self, dtype=np.float64, shift=0.0):
        return (sample_input(type(self.layer), self.rng, self.input_shape) + shift).astype(dtype)

    # Gradients

    def gradient_checks(self):
        """Return the gradient checks, in training mode and, where it differs, in eval mode."""
        try:
            subject = self._float64_subject()
        except Exception as error:  # noqa: BLE001 - reported as a failed check
            message = " ".join(str(error).split())
            return [Check("gradient[input]", False,
                          detail=f"no float64 instance: {type(error).__name__}: {message}")]

        modes = [("", True)]
        if getattr(type(subject), "eval_behavior", "same") != "same":
            modes.append((" (eval)", False))

        checks = []
        for suffix, training in modes:
            subject.train(training)
            checks.extend(self._gradient_checks_in_mode(subject, suffix))
        subject.train()
        return checks

    def _float64_subject(self):
        """Return the layer itself when its parameters are float64, else a float64 instance."""
        if all(value.dtype == np.float64 for value in self.layer.params.values()):
            return self.layer
        return self.fresh(np.float64)

    def _gradient_checks_in_mode(self, layer, suffix):
        x = self.sample()
        states = _generator_states(layer)
        try:
            out = _forward(layer, x, states)
            weights = self.rng.normal(size=np.shape(out))
            analytic_input = layer.backward(weights.copy())
            analytic_params = {name: np.array(layer.grads.get(name), dtype=np.float64)
                               for name in layer.params}
        except Exception as error:  # noqa: BLE001 - reported as a failed check
            message = " ".join(str(error).split())
            return [Check(f"gradient[input]{suffix}", False,
                          detail=f"raised {type(error).__name__}: {message}")]

        def objective():
            return float(np.sum(weights * _forward(layer, x, states)))

        checks = [self._compare(f"gradient[input]{suffix}", analytic_input,
                                lambda: numerical_gradient(objective, x, self.eps), x.shape)]
        for name, value in layer.params.items():
            checks.append(self._compare(
                f"gradient[{name}]{suffix}", analytic_params[name],
                lambda value=value: numerical_gradient(objective, value, self.eps), value.shape))
        return checks

    def _compare(self, name, analytic, numeric_function, shape):
        if analytic is None:
            return Check(name, False, detail="backward returned None with needs_input_grad on")
        if np.shape(analytic) != shape:
            return Check(name, False, detail=f"gradient has shape {np.shape(analytic)}, "
                                             f"expected {shape}")
        try:
            numeric = numeric_function()
        except Exception as error:  # noqa: BLE001 - reported as a failed check
            message = " ".join(str(error).split())
            return Check(name, False, detail=f"raised {type(error).__name__}: {message}")
        error = gradient_error(analytic, numeric)
        detail = "" if error <= self.tolerance else "backward disagrees with central differences"
        return Check(name, error <= self.tolerance, error, self.tolerance, detail)

    # Shapes and dtypes

    def shapes_and_dtypes(self, dtype):
        dtype = np.dtype(dtype)
        layer = self.fresh(dtype)
        x = self.sample(dtype)
        out = layer.forward(x)
        problems = []
        if not isinstance(out, np.ndarray):
            return False, f"forward returned {type(out).__name__}, not an array"
        if out.dtype != dtype:
            problems.append(f"output dtype {out.dtype}")
        if out.ndim == 0 or out.shape[0] != x.shape[0]:
            problems.append(f"output shape {out.shape} lost the batch axis of {x.shape[0]}")

        grad_input = layer.backward(np.ones_like(out))
        if not isinstance(grad_input, np.ndarray):
            problems.append(f"backward returned {type(grad_input).__name__}, not an array")
        elif grad_input.shape != x.shape or grad_input.dtype != dtype:
            problems.append(f"input gradient {grad_input.shape} {grad_input.dtype}")

        problems.extend(_parameter_problems(layer, dtype))
        if problems:
            return False, f"expected {dtype.name}: " + "; ".join(problems)
        return True, ""

    # Side effects

    def backward_keeps_inputs(self):
        layer = self.layer
        x = self.sample(self.dtype)
        x_before = x.copy()
        states = _generator_states(layer)
        out = _forward(layer, x, states)
        grad = self.rng.normal(size=out.shape).astype(self.dtype)
        grad_before = grad.copy()

        first = copy_or_none(layer.backward(grad))
        problems = []
        if not np.array_equal(grad, grad_before):
            problems.append("backward modified its argument")
        if not np.array_equal(x, x_before):
            problems.append("forward or backward modified the input")
        second = copy_or_none(layer.backward(grad.copy()))
        if not arrays_equal(first, second):
            problems.append("a second backward after one forward returned a different "
                            "gradient, so backward changed the cached state")
        return not problems, "; ".join(problems)

    def repeatable(self):
        layer = self.layer
        x = self.sample(self.dtype)
        states = _generator_states(layer)
        grad = None
        passes = []
        for _ in range(2):
            out = _forward(layer, x, states).copy()
            if grad is None:
                grad = self.rng.normal(size=out.shape).astype(self.dtype)
            grad_input = copy_or_none(layer.backward(grad.copy()))
            passes.append((out, grad_input, _copy_grads(layer)))

        (out_a, input_a, grads_a), (out_b, input_b, grads_b) = passes
        problems = []
        if not np.array_equal(out_a, out_b):
            problems.append("outputs differ")
        if not arrays_equal(input_a, input_b):
            problems.append("input gradients differ")
        problems.extend(f"gradient of {name} differs (accumulated?)" for name in grads_a
                        if not arrays_equal(grads_a[name], grads_b.get(name)))
        return not problems, "; ".join(problems)

    def input_grad_skip(self):
        layer = self.layer
        x = self.sample(self.dtype)
        states = _generator_states(layer)
        out = _forward(layer, x, states)
        grad = self.rng.normal(size=out.shape).astype(self.dtype)
        with_input = copy_or_none(layer.backward(grad.copy()))
        grads_with = _copy_grads(layer)

        layer.needs_input_grad = False
        try:
            _forward(layer, x, states)
            without_input = layer.backward(grad.copy())
            grads_without = _copy_grads(layer)
        finally:
            layer.needs_input_grad = True

        problems = []
        if without_input is not None and not arrays_equal(without_input, with_input):
            problems.append("returned a different input gradient")
        problems.extend(f"gradient of {name} differs" for name in grads_with
                        if not arrays_equal(grads_with[name], grads_without.get(name)))
        return not problems, "; ".join(problems)

    # Parameters, seeds and modes

    def save_load(self):
        from minilearn.model import Sequential

        source = self.fresh(np.float64)
        if not source.params:
            return True, "no parameters"
        for value in source.params.values():
            value[...] = self.rng.normal(size=value.shape)

        target = self.fresh(np.float64, seed=self.seed + 1)
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "layer.npz"
            Sequential([source]).save(path)
            Sequential([target]).load(path)

        different = [name for name, value in source.params.items()
                     if not np.array_equal(value, target.params.get(name))
                     or value.dtype != target.params[name].dtype]
        if different:
            return False, f"parameters changed by the round trip: {', '.join(different)}"
        return True, ""

    def same_seed(self):
        first = self.fresh(np.float64)
        second = self.fresh(np.float64)
        problems = [f"initial {name} differs" for name, value in first.params.items()
                    if not np.array_equal(value, second.params.get(name))]

        x = self.sample()
        if not np.array_equal(first.forward(x), second.forward(x)):
            problems.append("training-mode outputs differ: randomness must come from the rng "
                            "argument, not numpy's global state")
        first.eval()
        second.eval()
        if not np.array_equal(first.forward(x), second.forward(x)):
            problems.append("evaluation-mode outputs differ")
        return not problems, "; ".join(problems)

    def train_eval(self):
        layer = self.fresh(np.float64)
        behavior = getattr(type(layer), "eval_behavior", "same")
        problems = _mode_switch_problems(layer)
        if behavior not in EVAL_BEHAVIORS:
            return False, (f"eval_behavior = {behavior!r} is not one of "
                           f"{', '.join(EVAL_BEHAVIORS)}")

        shift = 3.0 if behavior == "running_statistics" else 0.0
        x = self.sample(shift=shift)
        check = {"same": _same_in_both_modes, "identity": _identity_in_eval,
                 "running_statistics": _running_statistics_in_eval}[behavior]
        problems.extend(check(layer, x, self.rng))
        detail = "; ".join(problems) if problems else f"eval_behavior = {behavior!r}"
        return not problems, detail


def _parameter_problems(layer, dtype):
    problems = []
    if set(layer.grads) != set(layer.params):
        problems.append(f"grads has {sorted(layer.grads)} but params has {sorted(layer.params)}")
    for name, value in layer.params.items():
        grad = layer.grads.get(name)
        if value.dtype != dtype:
            problems.append(f"parameter {name} dtype {value.dtype}")
        if grad is not None and (np.shape(grad) != value.shape or grad.dtype != dtype):
            problems.append(f"gradient of {name} {np.shape(grad)} {grad.dtype}, parameter "
                            f"{value.shape}")
    return problems


def _mode_switch_problems(layer):
    problems = []
    if layer.eval() is not layer or layer.training:
        problems.append("eval() must set training = False and return the layer")
    if layer.train() is not layer or not layer.training:
        problems.append("train() must set training = True and return the layer")
    return problems


def _state_snapshot(layer):
    """Copy the parameters and buffers, the state that an eval-mode forward must not change."""
    arrays = {f"params.{name}": value.copy() for name, value in layer.params.items()}
    for name, value in getattr(layer, "buffers", {}).items():
        arrays[f"buffers.{name}"] = np.array(value, copy=True)
    return arrays


def _changed(before, after):
    return [name for name in before if not np.array_equal(before[name], after[name])]


def _same_in_both_modes(layer, x, rng):
    states = _generator_states(layer)
    layer.train()
    train_out = _forward(layer, x, states).copy()
    layer.eval()
    before = _state_snapshot(layer)
    eval_out = _forward(layer, x, states)
    problems = [f"evaluation-mode forward changed {name}"
                for name in _changed(before, _state_snapshot(layer))]
    if not np.array_equal(train_out, eval_out):
        problems.append("declared 'same' but training and evaluation outputs differ")
    layer.train()
    return problems


def _identity_in_eval(layer, x, rng):
    layer.eval()
    out = layer.forward(x)
    grad = rng.normal(size=x.shape)
    grad_input = layer.backward(grad.copy())
    layer.train()
    problems = []
    if not np.array_equal(out, x):
        problems.append("declared 'identity' but the evaluation-mode output differs from the input")
    if grad_input is None or not np.array_equal(grad_input, grad):
        problems.append("declared 'identity' but the evaluation-mode backward changes the gradient")
    return problems


def _running_statistics_in_eval(layer, x, rng):
    buffers = getattr(layer, "buffers", None)
    if not buffers:
        return ["declared 'running_statistics' but has no buffers"]

    problems = []
    layer.train()
    before = _state_snapshot(layer)
    train_out = layer.forward(x).copy()
    if not _changed(before, _state_snapshot(layer)):
        problems.append("a training-mode forward left the running statistics unchanged")

    layer.eval()
    before = _state_snapshot(layer)
    eval_out = layer.forward(x).copy()
    problems.extend(f"evaluation-mode forward changed {name}"
                    for name in _changed(before, _state_snapshot(layer)))
    single = np.concatenate([layer.forward(x[i:i + 1]) for i in range(len(x))])
    layer.train()

    if not np.allclose(single, eval_out, **CLOSE_TOLERANCE):
        problems.append("evaluation-mode output of a sample depends on the rest of the batch")
    if np.allclose(train_out, eval_out, **CLOSE_TOLERANCE):
        problems.append("training and evaluation outputs agree on a shifted input, so "
                        "evaluation mode does not use the running statistics")
    return problems


def _copy_grads(layer):
    return {name: np.array(value, copy=True) for name, value in layer.grads.items()}
