"""Time one training epoch of minilearn beside the matrix-multiply floor and its peers.

The workload is an MLP with one hidden ReLU layer, trained with mini-batch SGD with
momentum on softmax cross-entropy, over standard-normal features and random
labels. Every row is timed in this process, one after another, so the ratios
between rows mean more than the seconds on a shared machine. Each figure is the
best of ``repeats`` epochs.

Rows:

- floor: the five matrix products of each batch done with numpy alone (both
  forward products, both weight gradients and the hidden layer's input gradient);
- minilearn: ``minilearn.fit`` for one epoch;
- scikit-learn: ``MLPClassifier(solver="sgd")`` with the same sizes, batch and
  momentum, fitted for one epoch;
- PyTorch: the same model and optimizer on the CPU, when torch is installed.
"""

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
    repeats: int = 3
    seed: int = 0

    def make_data(self, dtype):
        """Return standard-normal features (N, D) of ``dtype`` and random labels (N,)."""
        rng = np.random.default_rng(self.seed)
        X = rng.standard_normal((self.samples, self.features), dtype=np.dtype(dtype))
        y = rng.integers(0, self.classes, size=self.samples)
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
    """Return the best epoch time of the five matrix products per batch, numpy alone."""
    rng = np.random.default_rng(workload.seed)
    dtype = X.dtype
    W1 = rng.standard_normal((workload.features, workload.hidden)).astype(dtype)
    W2 = rng.standard_normal((workload.hidden, workload.classes)).astype(dtype)
    best = float("inf")
    for _ in range(workload.repeats):
        started = time.perf_counter()
        for start in range(0, len(X), workload.batch_size):
            xb = X[start:start + workload.batch_size]
            hidden = xb @ W1
            logits = hidden @ W2
            grad_W2 = hidden.T @ logits
            grad_hidden = logits @ W2.T
            grad_W1 = xb.T @ grad_hidden
        best = min(best, time.perf_counter() - started)
    del grad_W1, grad_W2
    return best


def build_minilearn_model(workload, dtype):
    rng = np.random.default_rng(workload.seed)
    return Sequential([Linear(workload.features, workload.hidden, rng=rng, dtype=dtype, init="he"),
                       ReLU(),
                       Linear(workload.hidden, workload.classes, rng=rng, dtype=dtype)])


def time_minilearn(workload, X, y):
    """Return (best epoch time, peak bytes allocated beyond the data) of minilearn's fit."""
    model = build_minilearn_model(workload, X.dtype)
    optimizer = SGD(lr=workload.lr, momentum=workload.momentum)

    tracemalloc.start()
    tracemalloc.reset_peak()
    baseline = tracemalloc.get_traced_memory()[0]
    history = fit(model, CrossEntropy(), optimizer, X, y, epochs=workload.repeats,
                  batch_size=workload.batch_size, seed=workload.seed, progress=False)
    peak = tracemalloc.get_traced_memory()[1] - baseline
    tracemalloc.stop()

    # tracemalloc slows Python-level allocation a little, so time a second fit without it.
    model = build_minilearn_model(workload, X.dtype)
    history = fit(model, CrossEntropy(), SGD(lr=workload.lr, momentum=workload.momentum), X, y,
                  epochs=workload.repeats, batch_size=workload.batch_size, seed=workload.seed,
                  progress=False)
    return min(history["seconds"]), peak


def time_sklearn(workload, X, y):
    """Return the best time of scikit-learn's MLPClassifier fitted for one epoch."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    best = float("inf")
    for repeat in range(workload.repeats):
        estimator = MLPClassifier(
            hidden_layer_sizes=(workload.hidden,), activation="relu", solver="sgd",
            batch_size=workload.batch_size, learning_rate_init=workload.lr,
            momentum=workload.momentum, nesterovs_momentum=False, alpha=0.0, max_iter=1,
            shuffle=True, random_state=workload.seed + repeat)
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            estimator.fit(X, y)
        best = min(best, time.perf_counter() - started)
    return best


def time_torch(workload, X, y):
    """Return the best epoch time of the same model in PyTorch on the CPU, or None without torch."""
    try:
        import torch
    except ImportError:
        return None

    torch.manual_seed(workload.seed)
    dtype = {np.float32: torch.float32, np.float64: torch.float64}[X.dtype.type]
    model = torch.nn.Sequential(torch.nn.Linear(workload.features, workload.hidden), torch.nn.ReLU(),
                                torch.nn.Linear(workload.hidden, workload.classes)).to(dtype)
    optimizer = torch.optim.SGD(model.parameters(), lr=workload.lr, momentum=workload.momentum)
    loss_function = torch.nn.CrossEntropyLoss()
    inputs = torch.from_numpy(X)
    targets = torch.from_numpy(y)
    generator = torch.Generator().manual_seed(workload.seed)

    best = float("inf")
    for _ in range(workload.repeats):
        started = time.perf_counter()
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(inputs), workload.batch_size):
            rows = order[start:start + workload.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_function(model(inputs[rows]), targets[rows])
            loss.backward()
            optimizer.step()
        best = min(best, time.perf_counter() - started)
    return best


def run_benchmark(workload, dtypes=("float32", "float64"), peers=("sklearn", "torch")):
    """Time every row for each dtype; returns a list of ``Result``."""
    results = []
    for dtype in dtypes:
        X, y = workload.make_data(dtype)
        result = Result(dtype=dtype, dataset_bytes=X.nbytes + y.nbytes)
        logger.info("timing %s: floor", dtype)
        result.seconds["floor"] = time_floor(workload, X, y)
        logger.info("timing %s: minilearn", dtype)
        result.seconds["minilearn"], result.peak_extra_bytes = time_minilearn(workload, X, y)
        if "sklearn" in peers:
            logger.info("timing %s: scikit-learn", dtype)
            result.seconds["scikit-learn"] = time_sklearn(workload, X, y)
        if "torch" in peers:
            logger.info("timing %s: PyTorch", dtype)
            seconds = time_torch(workload, X, y)
            if seconds is None:
                result.notes["PyTorch"] = "not installed"
            else:
                result.seconds["PyTorch"] = seconds
        results.append(result)
    return results


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
    """Return a one-line description: cores, processor, Python, numpy and its BLAS."""
    blas = "unknown BLAS"
    try:
        from threadpoolctl import threadpool_info

        libraries = [f"{info.get('internal_api')} {info.get('version')}"
                     for info in threadpool_info() if info.get("user_api") == "blas"]
        if libraries:
            blas = ", ".join(libraries)
    except ImportError:
        pass
    return (f"{os.cpu_count()} cores, {platform.machine()} {platform.processor() or ''}".strip()
            + f", Python {platform.python_version()}, numpy {np.__version__} with {blas}")


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
