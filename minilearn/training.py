"""The training loop: mini-batch gradient descent with per-epoch metrics.

``fit`` checks the loss and the gradients after every step. A non-finite value
either stops the run (status ``"diverged"``) or is recorded while training goes on,
and Ctrl-C stops the run after the current step (status ``"interrupted"``). Either
way every completed epoch is kept in the returned ``History``.
"""

import contextlib
import logging
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from minilearn.validation import check_class_targets, check_features

logger = logging.getLogger(__name__)

NONFINITE_POLICIES = ("stop", "continue")

# The keys of every epoch record; a run can add others, such as val_cross_entropy.
METRIC_KEYS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
               "nonfinite_steps", "seconds")

DIVERGENCE_REMEDY = ("lower the learning rate, use the stable cross_entropy loss, "
                     "or standardize the features")


@dataclass
class History:
    """What ``fit`` returns: one record per completed epoch and how the run ended.

    Each record has ``epoch`` (numbered from 1), ``train_loss``, ``train_accuracy``,
    ``val_loss``, ``val_accuracy`` (None without validation data), ``lr``,
    ``nonfinite_steps`` and ``seconds`` (wall time of the epoch).
    ``status`` is ``"completed"``, ``"diverged"`` or ``"interrupted"``.
    ``first_nonfinite`` describes the first step whose loss or gradient was not
    finite: its ``epoch``, ``step`` within the epoch (from 0), ``global_step``
    (optimizer steps since the start, from 0) and ``quantity``.
    With early stopping, ``best_epoch`` is the epoch (from 1) with the best
    monitored value, whose parameters the model has at the end when
    ``restore_best`` is on, and ``stopped_epoch`` is the epoch after which early
    stopping ended training. Both are None otherwise.
    """

    epochs: list = field(default_factory=list)
    status: str = "completed"
    message: str = ""
    first_nonfinite: dict | None = None
    best_epoch: int | None = None
    stopped_epoch: int | None = None

    def __getitem__(self, key):
        """Return one metric over the epochs, e.g. ``history["val_loss"]``, or by an integer
        index one epoch's record, e.g. ``history[-1]``."""
        if isinstance(key, (int, np.integer)):
            return self.epochs[key]
        if key not in METRIC_KEYS and not any(key in record for record in self.epochs):
            raise KeyError(f"no metric {key!r} in the history; the metrics are "
                           f"{', '.join(METRIC_KEYS)}")
        return [record.get(key) for record in self.epochs]

    def __len__(self):
        return len(self.epochs)


def check_training_data(model, X, y, name="training"):
    """Check features X (N, D) and targets y against the model; returns them.

    y is either integer class indices (N,) in [0, K), where K is the model's output
    width, or an array (N, K) of targets shaped like the outputs (class
    probabilities or regression values). X is cast once to the model's dtype, so
    float64 data trains a float32 model in float32.
    """
    X = check_features(X, name=f"{name} features")
    y = np.asarray(y)
    if y.ndim not in (1, 2):
        raise ValueError(f"{name} targets must be class indices of shape (N,) or an array "
                         f"(N, K) shaped like the outputs, got shape {y.shape}")
    if len(X) != len(y):
        raise ValueError(f"{name} features have {len(X)} samples but the targets have {len(y)}; "
                         "pass one target per row of features")

    width = _output_width(model, X)
    if y.ndim == 1:
        y = check_class_targets(y, width, name=f"{name} targets")
    else:
        if y.shape[1] != width:
            raise ValueError(f"{name} targets have {y.shape[1]} columns but the model outputs "
                             f"{width}; make them the same width")
        y = check_features(y, name=f"{name} targets")

    if model.dtype is not None and X.dtype != model.dtype:
        X = X.astype(model.dtype)
    return X, y


def _output_width(model, X):
    was_training = model.training
    model.eval()
    try:
        return model.forward(X[:1]).shape[-1]
    finally:
        model.train(was_training)


def check_class_count(model, X, y):
    """Reject a single-class dataset and a model whose output width differs from K."""
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"the training targets contain a single class ({int(classes[0])}); "
                         "a classifier needs at least 2 classes")
    width = _output_width(model, X)
    n_classes = int(classes[-1]) + 1
    if width != n_classes:
        raise ValueError(f"the model outputs {width} values per sample but the targets have "
                         f"{n_classes} classes; set the last layer's out_features to {n_classes}")


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@contextlib.contextmanager
def _stop_on_sigint():
    """Turn the first Ctrl-C into a flag that the loop checks after each step.

    A second Ctrl-C raises KeyboardInterrupt as usual. Outside the main thread the
    handler cannot be installed, so Ctrl-C keeps its default behaviour there.
    """
    state = {"requested": False}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    previous = signal.getsignal(signal.SIGINT)

    def handle(signum, frame):
        if state["requested"]:
            raise KeyboardInterrupt
        state["requested"] = True
        logger.warning("interrupt received: stopping after the current step")

    signal.signal(signal.SIGINT, handle)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)


def evaluate(model, loss, X, y, batch_size=4096):
    """Return (mean loss, accuracy) of the model on X (N, D), y (N,) in evaluation mode.

    Batches are large because nothing is kept for a backward pass. The mean weighs
    each batch by its size, as the training loss does.
    """
    was_training = model.training
    model.eval()
    total_loss = 0.0
    correct = 0
    try:
        for start in range(0, len(X), batch_size):
            outputs = model.forward(X[start:start + batch_size])
            targets = y[start:start + batch_size]
            total_loss += float(loss.forward(outputs, targets)) * len(targets)
            correct = _add_correct(correct, outputs, targets)
    finally:
        model.train(was_training)
    return total_loss / len(X), None if correct is None else correct / len(X)


def fit(model, loss, optimizer, X, y, *, epochs, batch_size, seed, validation=None,
        progress=True, on_nonfinite="stop", on_epoch_end=None, schedule=None,
        early_stopping=None):
    """Train ``model`` with mini-batches and return its ``History``.

    X is (N, D) and y (N,) integer class targets. Each epoch visits the samples in a
    new order drawn from ``numpy.random.default_rng(seed)``, so the global numpy
    random state plays no part. The last batch may be shorter than ``batch_size``,
    and a ``batch_size`` above N gives one batch. The epoch's ``train_loss`` is the
    mean over samples (each batch's mean weighed by its size), and
    ``train_accuracy`` is measured on each batch before its update.

    ``validation`` is an optional ``(X_val, y_val)`` evaluated after every epoch.
    ``on_nonfinite`` is ``"stop"`` (end with status ``"diverged"`` at the first
    non-finite loss or gradient, before that step's update) or ``"continue"`` (count
    such steps per epoch and go on). ``on_epoch_end(record, model)`` is called after
    each completed epoch, e.g. to write metrics to disk as training goes.

    ``schedule`` is an optional ``minilearn.schedules.Schedule``. It sets
    ``optimizer.lr`` before the first epoch and after each epoch, so each record's
    ``lr`` is the rate of every update in that epoch. ``early_stopping`` is an
    optional ``minilearn.early_stopping.EarlyStopping``, checked after each epoch.
    When it stops training, the status stays ``"completed"``, the message gives
    the reason, and ``History.stopped_epoch`` is set. Whatever the status, the model ends
    with the parameters of ``History.best_epoch`` when it restores them.
    """
    _check_positive_int("epochs", epochs)
    _check_positive_int("batch_size", batch_size)
    if on_nonfinite not in NONFINITE_POLICIES:
        raise ValueError(f"on_nonfinite must be one of {', '.join(NONFINITE_POLICIES)}, "
                         f"got {on_nonfinite!r}")
    X, y = check_training_data(model, X, y)
    if y.ndim == 1:
        check_class_count(model, X, y)
    if validation is not None:
        X_val, y_val = check_training_data(model, *validation, name="validation")

    if schedule is not None:
        schedule.start(optimizer, epochs, has_validation=validation is not None)
    if early_stopping is not None:
        early_stopping.start(has_validation=validation is not None)

    rng = np.random.default_rng(seed)
    batches = _BatchGatherer(X, batch_size)
    target_classes = _target_classes(y)
    predictions = None if target_classes is None else np.empty(len(X), dtype=np.intp)
    history = History()
    bar = _progress_bar(epochs, progress)
    global_step = 0
    model.train()

    # Non-finite values are detected and reported below, so numpy's own overflow
    # warnings would only repeat them.
    with _stop_on_sigint() as interrupt, np.errstate(over="ignore", invalid="ignore"):
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            lr = optimizer.lr
            order = rng.permutation(len(X))
            totals = _EpochTotals()

            for step, start in enumerate(range(0, len(X), batch_size)):
                rows = order[start:start + batch_size]
                stop = start + len(rows)
                batch_predictions = None if predictions is None else predictions[start:stop]
                problem = _train_step(model, loss, optimizer, batches.inputs(rows),
                                      y.take(rows, axis=0), totals, batch_predictions,
                                      stop_on_nonfinite=on_nonfinite == "stop")
                if problem is not None and history.first_nonfinite is None:
                    history.first_nonfinite = {"epoch": epoch, "step": step,
                                               "global_step": global_step, "quantity": problem}
                global_step += 1

                if problem is not None and on_nonfinite == "stop":
                    history.status = "diverged"
                    history.message = (
                        f"training diverged at epoch {epoch}, step {step} (global step "
                        f"{global_step - 1}): the {problem} is not finite; {DIVERGENCE_REMEDY}")
                    break
                if interrupt["requested"]:
                    history.status = "interrupted"
                    history.message = (f"training interrupted during epoch {epoch}; the "
                                       f"{epoch - 1} completed epoch(s) are kept")
                    break

            if history.status != "completed":
                break

            if predictions is not None:
                totals.correct = int(np.count_nonzero(predictions == target_classes.take(order)))
            record = totals.record(epoch, len(X), lr)
            if validation is not None:
                record["val_loss"], record["val_accuracy"] = evaluate(model, loss, X_val, y_val)
            record["seconds"] = time.perf_counter() - started
            history.epochs.append(record)
            _report_epoch(bar, record, epochs)
            stop = early_stopping is not None and early_stopping.update(record, model)
            if on_epoch_end is not None:
                on_epoch_end(record, model)
            if stop:
                history.stopped_epoch = early_stopping.stopped_epoch
                history.message = early_stopping.describe_stop()
                break
            if schedule is not None:
                schedule.step(record)

    if bar is not None:
        bar.close()
    if early_stopping is not None:
        _finish_early_stopping(early_stopping, model, history)
    if history.status != "completed":
        logger.warning(history.message)
    elif history.stopped_epoch is not None:
        logger.info(history.message)
    return history


def _finish_early_stopping(early_stopping, model, history):
    """Put the best parameters back and record the best epoch."""
    history.best_epoch = early_stopping.best_epoch
    if early_stopping.restore(model) and history.status != "completed":
        history.message += f"; restored the parameters of epoch {early_stopping.best_epoch}"


class _BatchGatherer:
    """The rows of each batch of X (N, D), gathered into one buffer (batch_size, D) that every step reuses.

    The buffer saves allocating a batch-sized array per step. The next batch
    overwrites it only after the step that used it has ended.
    """

    def __init__(self, X, batch_size):
        self.X = X
        self.buffer = np.empty((min(batch_size, len(X)),) + X.shape[1:], dtype=X.dtype)

    def inputs(self, rows):
        """Gather the rows of X at the indices ``rows`` into the buffer and return them, (len(rows), D)."""
        # take gathers rows faster than fancy indexing, X[rows]. With mode="raise", numpy
        # would write into a temporary array first, and the indices are in range anyway.
        return self.X.take(rows, axis=0, out=self.buffer[:len(rows)], mode="clip")


class _EpochTotals:
    """Running sums over one epoch's batches, and the count of correct predictions at its end."""

    def __init__(self):
        self.loss = 0.0
        self.correct = None
        self.nonfinite_steps = 0

    def record(self, epoch, n_samples, lr):
        return {
            "epoch": epoch,
            "train_loss": self.loss / n_samples,
            "train_accuracy": None if self.correct is None else self.correct / n_samples,
            "val_loss": None,
            "val_accuracy": None,
            "lr": float(lr),
            "nonfinite_steps": self.nonfinite_steps,
        }


def _train_step(model, loss, optimizer, inputs, targets, totals, predictions, *,
                stop_on_nonfinite):
    """Run forward, backward and one update on a batch, and return what was non-finite, or None.

    ``predictions`` is None or an array (batch,) that receives the predicted classes,
    taken from the outputs before the update.
    """
    outputs = model.forward(inputs)
    batch_loss = float(loss.forward(outputs, targets))
    grad_outputs = loss.backward()
    model.backward(grad_outputs)
    grads = model.named_gradients()

    problem = None
    if not math.isfinite(batch_loss):
        problem = "loss"
    else:
        for name, grad in grads.items():
            if not _is_finite(grad):
                problem = f"gradient of {name}"
                break

    if problem is not None:
        totals.nonfinite_steps += 1
        if stop_on_nonfinite:
            return problem

    optimizer.step(model.named_parameters(), grads)
    totals.loss += batch_loss * len(targets)
    if predictions is not None:
        np.argmax(outputs, axis=1, out=predictions)
    return problem


def _target_classes(y):
    """Return the class of each target (N,), or None where accuracy is undefined.

    Class indices are their own classes, and targets (N, K) with K > 1 are compared
    by their argmax. Single-column targets have no accuracy.
    """
    if y.ndim == 1:
        return y
    if y.shape[1] < 2:
        return None
    return np.argmax(y, axis=1)


def _is_finite(array):
    """Return whether every entry of ``array`` is finite.

    The squared norm sum(a * a), one BLAS dot product, is NaN or inf when an entry
    is, and it takes a fraction of the time of np.isfinite(array).all() with no
    temporary array. It also overflows for large finite entries, above a norm of
    about 1.8e19 in float32 or 1.3e154 in float64, so only then are the entries
    checked one by one.
    """
    if math.isfinite(np.vdot(array, array)):
        return True
    return bool(np.isfinite(array).all())


def _add_correct(count, outputs, targets):
    """Add the batch's correct predictions to ``count``; None where accuracy is undefined.

    Class indices (N,) compare with the argmax of the outputs, and targets (N, K)
    with K > 1 compare by argmax too. Single-column targets have no accuracy.
    """
    if count is None:
        return None
    classes = _target_classes(targets)
    if classes is None:
        return None
    return count + int(np.count_nonzero(np.argmax(outputs, axis=1) == classes))


def _progress_bar(epochs, progress):
    """Return a tqdm bar over epochs, or None when progress is off or stderr is not a terminal."""
    if not progress or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=epochs, unit="epoch", leave=False, dynamic_ncols=True)


def _report_epoch(bar, record, epochs):
    summary = f"train_loss={record['train_loss']:.4g}"
    if record["train_accuracy"] is not None:
        summary += f" train_acc={record['train_accuracy']:.3f}"
    if record["val_loss"] is not None:
        summary += f" val_loss={record['val_loss']:.4g}"
    if record["val_accuracy"] is not None:
        summary += f" val_acc={record['val_accuracy']:.3f}"
    if bar is not None:
        bar.set_postfix_str(summary, refresh=False)
        bar.update(1)
    else:
        logger.info("epoch %d/%d %s", record["epoch"], epochs, summary)
