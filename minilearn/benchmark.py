"""Time one training epoch of minilearn beside the matrix-multiply floor and its peers.

The workload is an MLP with one hidden ReLU layer, trained with mini-batch SGD with
momentum on softmax cross-entropy, over standard-normal features and random
labels. Every row is timed in this process, one after another, so the ratios
between rows mean more than the seconds on a shared machine. Each figure is the
best of ``repeats`` epochs.

Rows:

- floor: the five matrix products of each batch done with numpy alone (both
  forward products, both weight gradients and the hidden layer's input gradient);
- minilearn: ``minilearn.fit`` for one epoch, as ``fit`` times it;
- scikit-learn: ``MLPClassifier(solver="sgd")`` with the same sizes, batch and
  momentum, fitted for one epoch;
- PyTorch: the same model and optimizer on the CPU, when torch is installed.
"""

import contextlib
import logging
import os
import platform
import subprocess
import sys
import time
import tracemalloc
import warnings
from dataclasses import dataclass, field

import numpy as np

from minilearn.blas import blas_available, blas_libraries
from minilearn.layers import Linear, ReLU
from minilearn.losses import CrossEntropy
from minilearn.model import Sequential
from minilearn.optim import SGD
from minilearn.training import fit

logger = logging.getLogger(__name__)


@dataclass
class Workload:
    """Sizes of the benchmark: N samples of D features, H hidden units and K classes."""

    samples: int = 60_000
    features: int = 784
    hidden: int = 256
    classes: int = 10
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    # Five rounds, as timeit.repeat defaults to, so that a burst of load on a shared
    # machine is less likely to cover every round.
    repeats: int = 5
    seed: int = 0

    def make_data(self, dtype):
        """Return standard-normal features (N, D) of ``dtype`` and shuffled labels (N,).

        The labels are 0, 1, ..., K - 1 repeated and shuffled, so every class occurs
        when N >= K, which ``fit`` requires.
        """
        rng = np.random.default_rng(self.seed)
        X = rng.standard_normal((self.samples, self.features), dtype=np.dtype(dtype))
        y = rng.permutation(np.arange(self.samples) % self.classes)
        return X, y


@dataclass
class Result:
    """Seconds per epoch of each row, for one dtype, with notes on skipped rows."""

    dtype: str
    seconds: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    peak_extra_bytes: int | None = None
    dataset_bytes: int = 0


def time_floor(workload, X, y):
    """Return the time of one epoch of the five matrix products per batch, numpy alone."""
    rng = np.random.default_rng(workload.seed)
    dtype = X.dtype
    W1 = rng.standard_normal((workload.features, workload.hidden)).astype(dtype)
    W2 = rng.standard_normal((workload.hidden, workload.classes)).astype(dtype)

    started = time.perf_counter()
    for start in range(0, len(X), workload.batch_size):
        xb = X[start:start + workload.batch_size]
        hidden = xb @ W1
        logits = hidden @ W2
        hidden.T @ logits
        grad_hidden = logits @ W2.T
        xb.T @ grad_hidden
    return time.perf_counter() - started


def build_minilearn_model(workload, dtype):
    rng = np.random.default_rng(workload.seed)
    return Sequential([Linear(workload.features, workload.hidden, rng=rng, dtype=dtype, init="he"),
                       ReLU(),
                       Linear(workload.hidden, workload.classes, rng=rng, dtype=dtype)])


class MinilearnRow:
    """minilearn's model and optimizer, trained one epoch per call so rounds can interleave."""

    def __init__(self, workload, X, y):
        self.workload = workload
        self.X = X
        self.y = y
        self.model = build_minilearn_model(workload, X.dtype)
        self.optimizer = SGD(lr=workload.lr, momentum=workload.momentum)
        self.epoch = 0

    def time_epoch(self):
        """Return the wall time of one epoch as ``fit`` measures it, without its data checks."""
        self.epoch += 1
        history = fit(self.model, CrossEntropy(), self.optimizer, self.X, self.y, epochs=1,
                      batch_size=self.workload.batch_size, seed=self.workload.seed + self.epoch,
                      progress=False)
        return history["seconds"][0]


def measure_minilearn_peak(workload, X, y):
    """Return the peak bytes that one epoch of ``fit`` allocates beyond the data (tracemalloc)."""
    row = MinilearnRow(workload, X, y)
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        row.time_epoch()
        return tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()


STEP_PARTS = ("batch gather", "forward, first Linear", "forward, ReLU", "forward, second Linear",
              "cross-entropy forward", "cross-entropy backward", "backward, second Linear",
              "backward, ReLU", "backward, first Linear", "finiteness checks", "SGD update",
              "predictions for accuracy")


def time_step_parts(workload, X, y):
    """Return {part: seconds} for one minilearn epoch whose steps are timed part by part.

    Each step makes the calls that ``fit`` makes, in its order, with
    ``time.perf_counter`` read between them. The readings add a fraction of a
    microsecond per part and step, and the epoch can fall into a quieter or busier
    moment of the machine than the table's rows, so the total need not match the
    ``fit`` epoch. The epoch with the smallest total out of ``workload.repeats`` is
    returned.
    """
    from minilearn.training import _BatchGatherer, _is_finite

    model = build_minilearn_model(workload, X.dtype)
    first, relu, second = model.layers
    loss = CrossEntropy()
    optimizer = SGD(lr=workload.lr, momentum=workload.momentum)
    batches = _BatchGatherer(X, workload.batch_size)
    predictions = np.empty(len(X), dtype=np.intp)
    rng = np.random.default_rng(workload.seed)

    best = None
    for _ in range(workload.repeats):
        seconds = dict.fromkeys(STEP_PARTS, 0.0)
        order = rng.permutation(len(X))
        for start in range(0, len(X), workload.batch_size):
            rows = order[start:start + workload.batch_size]
            times = [time.perf_counter()]
            inputs, targets = batches.inputs(rows), y.take(rows, axis=0)
            times.append(time.perf_counter())
            hidden = first.forward(inputs)
            times.append(time.perf_counter())
            activations = relu.forward(hidden)
            times.append(time.perf_counter())
            outputs = second.forward(activations)
            times.append(time.perf_counter())
            loss.forward(outputs, targets)
            times.append(time.perf_counter())
            grad = loss.backward()
            times.append(time.perf_counter())
            grad = second.backward(grad)
            times.append(time.perf_counter())
            grad = relu.backward(grad)
            times.append(time.perf_counter())
            first.backward(grad)
            times.append(time.perf_counter())
            grads = model.named_gradients()
            if not all(_is_finite(value) for value in grads.values()):
                raise FloatingPointError("a gradient became non-finite during the breakdown")
            times.append(time.perf_counter())
            optimizer.step(model.named_parameters(), grads)
            times.append(time.perf_counter())
            np.argmax(outputs, axis=1, out=predictions[start:start + len(rows)])
            times.append(time.perf_counter())

            for part, begin, end in zip(STEP_PARTS, times, times[1:]):
                seconds[part] += end - begin
        if best is None or sum(seconds.values()) < sum(best.values()):
            best = seconds
    return best


def format_breakdown(dtype, seconds, floor_seconds, repeats):
    """Return a Markdown table of milliseconds per epoch for each part of a step."""
    lines = [f"Parts of a {dtype} minilearn epoch, timed part by part (fastest of {repeats} "
             f"epochs, run after the rows above; floor {floor_seconds * 1e3:.0f} ms in this "
             "process):", "", "| part | ms per epoch |", "|---|---|"]
    lines += [f"| {part} | {value * 1e3:.1f} |" for part, value in seconds.items()]
    lines.append(f"| total | {sum(seconds.values()) * 1e3:.1f} |")
    return "\n".join(lines)


class SklearnRow:
    """scikit-learn's MLPClassifier with the same sizes, batch and momentum, one epoch per fit."""

    def __init__(self, workload, X, y):
        self.workload = workload
        self.X = X
        self.y = y
        self.fits = 0

    def time_epoch(self):
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        self.fits += 1
        estimator = MLPClassifier(
            hidden_layer_sizes=(self.workload.hidden,), activation="relu", solver="sgd",
            batch_size=self.workload.batch_size, learning_rate_init=self.workload.lr,
            momentum=self.workload.momentum, nesterovs_momentum=False, alpha=0.0, max_iter=1,
            shuffle=True, random_state=self.workload.seed + self.fits)
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            estimator.fit(self.X, self.y)
        return time.perf_counter() - started


class TorchRow:
    """The same model and optimizer in PyTorch on the CPU, one epoch per call."""

    def __init__(self, workload, X, y):
        import torch

        self.torch = torch
        torch.manual_seed(workload.seed)
        dtype = {np.float32: torch.float32, np.float64: torch.float64}[X.dtype.type]
        self.model = torch.nn.Sequential(
            torch.nn.Linear(workload.features, workload.hidden), torch.nn.ReLU(),
            torch.nn.Linear(workload.hidden, workload.classes)).to(dtype)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=workload.lr,
                                         momentum=workload.momentum)
        self.loss_function = torch.nn.CrossEntropyLoss()
        self.inputs = torch.from_numpy(X)
        self.targets = torch.from_numpy(y)
        self.generator = torch.Generator().manual_seed(workload.seed)
        self.batch_size = workload.batch_size

    def time_epoch(self):
        started = time.perf_counter()
        order = self.torch.randperm(len(self.inputs), generator=self.generator)
        for start in range(0, len(self.inputs), self.batch_size):
            rows = order[start:start + self.batch_size]
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss_function(self.model(self.inputs[rows]), self.targets[rows])
            loss.backward()
            self.optimizer.step()
        return time.perf_counter() - started


def torch_available():
    """Return whether PyTorch can be imported; it is never a dependency of minilearn."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _quiet_training_log():
    """Hide fit's per-epoch log lines, which would repeat "epoch 1/1" for every round."""
    training_logger = logging.getLogger("minilearn.training")
    level = training_logger.level
    training_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        training_logger.setLevel(level)


def run_benchmark(workload, dtypes=("float32", "float64"), peers=("sklearn", "torch")):
    """Time every row for each dtype; returns a list of ``Result``.

    The rows take turns: each of ``workload.repeats`` rounds times one epoch of every
    row, and each row keeps its best epoch. A burst of load from another process then
    slows all rows of a round alike, instead of one row's whole measurement.
    """
    results = []
    for dtype in dtypes:
        with _quiet_training_log():
            results.append(_run_dtype(workload, dtype, peers))
    return results


def _run_dtype(workload, dtype, peers):
    """Time every row for one dtype and return its ``Result``."""
    X, y = workload.make_data(dtype)
    result = Result(dtype=dtype, dataset_bytes=X.nbytes + y.nbytes)
    rows = {"floor": lambda: time_floor(workload, X, y),
            "minilearn": MinilearnRow(workload, X, y).time_epoch}
    if "sklearn" in peers:
        rows["scikit-learn"] = SklearnRow(workload, X, y).time_epoch
    if "torch" in peers:
        if torch_available():
            rows["PyTorch"] = TorchRow(workload, X, y).time_epoch
        else:
            result.notes["PyTorch"] = "not installed"

    for round_index in range(workload.repeats):
        logger.info("timing %s: round %d of %d", dtype, round_index + 1, workload.repeats)
        for name, time_epoch in rows.items():
            result.seconds[name] = min(result.seconds.get(name, float("inf")), time_epoch())

    result.peak_extra_bytes = measure_minilearn_peak(workload, X, y)
    return result


def time_command(arguments, repeats=5):
    """Return the best wall time of running ``arguments`` as a subprocess."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(arguments, check=True, capture_output=True)
        best = min(best, time.perf_counter() - started)
    return best


def time_startup(repeats=5):
    """Return (seconds of ``minilearn --help``, seconds of ``python -c "import numpy"``)."""
    help_seconds = time_command([sys.executable, "-m", "minilearn", "--help"], repeats)
    numpy_seconds = time_command([sys.executable, "-c", "import numpy"], repeats)
    return help_seconds, numpy_seconds


def describe_machine():
    """Return a one-line description: cores, processor, Python, numpy's BLAS and the SGD updates.

    A BLAS that another package loaded, such as SciPy's own OpenBLAS, is listed
    after numpy's.
    """
    names = []
    for info in blas_libraries():
        name = f"{info.get('internal_api')} {info.get('version')}"
        if info.get("architecture"):
            name += f" ({info['architecture']} kernels)"
        names.append(name)
    numpy_blas = names[0] if names else "an unknown BLAS"
    other_blas = names[1:]
    updates = "BLAS axpby and axpy" if blas_available() else "numpy ufuncs"
    description = (f"{os.cpu_count()} cores, {platform.machine()} {platform.processor() or ''}".strip()
                   + f", Python {platform.python_version()}, numpy {np.__version__} with "
                   + numpy_blas)
    if other_blas:
        description += f", also loaded: {', '.join(other_blas)}"
    return description + f", SGD updates through {updates}"


def format_table(results, workload):
    """Return a Markdown table: seconds per epoch and each row's ratio to minilearn."""
    lines = [f"Epoch of {workload.samples} x {workload.features} samples, {workload.hidden} "
             f"hidden ReLU units, {workload.classes} classes, batch {workload.batch_size}, "
             f"SGD momentum {workload.momentum}; best of {workload.repeats}.", "",
             "| dtype | row | seconds per epoch | ratio to minilearn |", "|---|---|---|---|"]
    for result in results:
        reference = result.seconds["minilearn"]
        for row, seconds in result.seconds.items():
            lines.append(f"| {result.dtype} | {row} | {seconds:.3f} | {seconds / reference:.2f} |")
        for row, note in result.notes.items():
            lines.append(f"| {result.dtype} | {row} | {note} | |")
    lines.append("")
    for result in results:
        ratio = result.seconds["minilearn"] / result.seconds["floor"]
        peak_mb = result.peak_extra_bytes / 2**20
        lines.append(f"- {result.dtype}: minilearn takes {ratio:.2f} times the floor; its peak "
                     f"allocation beyond the {result.dataset_bytes / 2**20:.0f} MB dataset was "
                     f"{peak_mb:.1f} MB (tracemalloc).")
    return "\n".join(lines)
