"""Training curves as PNG files.

The figures are drawn with matplotlib's object API (``Figure`` and
``FigureCanvasAgg``) and never through pyplot. So they load no GUI backend,
whatever MPLBACKEND and DISPLAY are set to, and leave no figure in pyplot's list
of open figures. matplotlib is imported inside the functions that use it, so that
``import minilearn`` stays fast.
"""

import io
import logging
import math
from numbers import Real
from pathlib import Path

import numpy as np

from minilearn.io import atomic_write_bytes

logger = logging.getLogger(__name__)

LOSS_LABEL = "loss (nats, mean per sample)"

# The loss axis turns logarithmic when the largest finite loss is more than this
# many times the smallest, i.e. when the losses span more than two decades.
LOG_SCALE_RATIO = 100.0

# Above this loss, the loss axis gets explicit decade ticks (see _fix_log_ticks).
HUGE_LOSS = 1e100

# Lines with at most this many points get a marker on each point, so that a run of
# one or a few epochs still shows up.
MARKER_MAX_POINTS = 20


def plot_history(records, path, *, title=None, reference=None):
    """Draw the training curves of ``records`` and write them to ``path`` as PNG.

    The figure is the one ``draw_history`` returns, and the file is written
    atomically. Returns ``path`` as a ``Path``.
    """
    figure = draw_history(records, title=title, reference=reference)

    buffer = io.BytesIO()
    # Axis transforms of losses near the float maximum overflow harmlessly while drawing.
    with np.errstate(over="ignore"):
        figure.savefig(buffer, format="png", dpi=100)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    logger.debug("wrote training curves for %d epochs to %s", len(records), path)
    return path


def draw_history(records, *, title=None, reference=None):
    """Return a matplotlib ``Figure`` with loss and accuracy per epoch side by side.

    ``records`` is a list of dicts, one per epoch in order, with keys ``epoch``,
    ``train_loss``, ``train_accuracy``, ``val_loss`` and ``val_accuracy``.
    Accuracies are fractions in [0, 1]. A missing key or None means the value was
    not measured, and the point is left out. NaN and inf are left out as well.
    When a line's values turn NaN or inf after its last finite value, the line ends
    there with an "x" marker.

    ``reference`` optionally maps a label to a test accuracy, drawn as a dashed
    horizontal line on the accuracy panel. The figure has an Agg canvas and is not
    registered with pyplot, so it is freed like any other object.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = _epochs(records)
    reference = _check_reference(reference)

    figure = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    loss_axes, accuracy_axes = figure.subplots(1, 2)

    _draw_loss_panel(loss_axes, records, epochs)
    _draw_accuracy_panel(accuracy_axes, records, epochs, reference)
    if title:
        figure.suptitle(title)
    return figure


def _epochs(records):
    if isinstance(records, dict) or not hasattr(records, "__len__"):
        raise TypeError(
            f"records must be a list of dicts, one per epoch, got {type(records).__name__}"
        )
    if len(records) == 0:
        raise ValueError("records is empty; pass at least one epoch to plot")

    epochs = []
    for index, record in enumerate(records):
        if not isinstance(record, dict) or "epoch" not in record:
            raise ValueError(
                f"records[{index}] = {record!r} is not a dict with an 'epoch' key; pass "
                f"one dict per epoch such as {{'epoch': 1, 'train_loss': 0.7}}"
            )
        epochs.append(_number(record["epoch"], index, "epoch"))
    return np.array(epochs, dtype=np.float64)


def _check_reference(reference):
    if reference is None:
        return {}
    if not isinstance(reference, dict):
        raise TypeError(
            f"reference must be a dict of label -> test accuracy, got {type(reference).__name__}"
        )
    for label, accuracy in reference.items():
        if isinstance(accuracy, bool) or not isinstance(accuracy, Real) \
                or not math.isfinite(accuracy):
            raise ValueError(
                f"reference[{label!r}] = {accuracy!r} is not a finite number; pass the "
                f"test accuracy as a fraction such as 0.93"
            )
    return {str(label): float(accuracy) for label, accuracy in reference.items()}


def _number(value, index, key):
    """Return a record's value as a float, with NaN for None."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(
            f"records[{index}][{key!r}] = {value!r} is not a number; epochs and metrics "
            f"must be numbers or None"
        )
    return float(value)


def _series(records, key):
    """Return (values, diverged) for one metric, both arrays of shape (epochs,).

    ``values`` has NaN where the value is missing, None, NaN or inf. ``diverged`` is
    True where the value is NaN or inf, which marks a run that broke down, as
    opposed to a value that was never measured.
    """
    values = np.array([_number(record.get(key), index, key)
                       for index, record in enumerate(records)])
    measured = np.array([record.get(key) is not None for record in records])
    diverged = measured & ~np.isfinite(values)
    values[~np.isfinite(values)] = math.nan
    return values, diverged


def _draw_line(axes, epochs, values, diverged, label, color):
    """Plot the finite points of one metric. Return True when it drew an end marker."""
    finite = np.isfinite(values)
    if not finite.any():
        return False

    marker = "o" if finite.sum() <= MARKER_MAX_POINTS else None
    axes.plot(epochs[finite], values[finite], label=label, color=color, marker=marker,
              markersize=3)

    last = int(np.flatnonzero(finite)[-1])
    if not diverged[last + 1:].any():
        return False
    axes.plot([epochs[last]], [values[last]], linestyle="none", marker="x", markersize=10,
              markeredgewidth=2, color=color)
    return True


def _draw_metric_lines(axes, records, epochs, metric):
    """Draw the training and validation lines of ``metric`` and return their finite values."""
    drawn_end_marker = False
    finite_values = []
    for prefix, label, color in (("train", "training", "C0"), ("val", "validation", "C1")):
        values, diverged = _series(records, f"{prefix}_{metric}")
        drawn_end_marker |= _draw_line(axes, epochs, values, diverged, label, color)
        finite_values.append(values[np.isfinite(values)])

    if drawn_end_marker:
        # One legend entry explains the "x" markers of both lines.
        axes.plot([], [], linestyle="none", marker="x", color="black",
                  label="last finite value (later NaN or inf)")
    return np.concatenate(finite_values)


def _draw_loss_panel(axes, records, epochs):
    losses = _draw_metric_lines(axes, records, epochs, "loss")

    positive = losses[losses > 0]
    if positive.size == losses.size and positive.size \
            and positive.max() > LOG_SCALE_RATIO * positive.min():
        axes.set_yscale("log")
        if positive.max() > HUGE_LOSS:
            _fix_log_ticks(axes, positive.min(), positive.max())

    _finish_axes(axes, "loss per epoch", LOSS_LABEL)


def _fix_log_ticks(axes, low, high):
    """Set explicit limits and decade ticks on a log axis that reaches near the float maximum.

    matplotlib 3.11's automatic log ticks and margins overflow to inf for losses
    beyond about 1e250, and its tick code then raises OverflowError.
    """
    from matplotlib.ticker import FixedLocator, NullLocator

    first, last = np.floor(np.log10(low)), np.floor(np.log10(high))
    exponents = np.unique(np.round(np.linspace(first, last, 7)))
    axes.yaxis.set_major_locator(FixedLocator(10.0 ** exponents))
    axes.yaxis.set_minor_locator(NullLocator())
    axes.set_ylim(low / 2, min(high * 2, np.finfo(np.float64).max))


def _draw_accuracy_panel(axes, records, epochs, reference):
    _draw_metric_lines(axes, records, epochs, "accuracy")

    for index, (label, accuracy) in enumerate(reference.items()):
        axes.axhline(accuracy, linestyle="--", linewidth=1, color=f"C{index + 2}",
                     label=f"{label} (test {accuracy:.3f})")

    axes.set_ylim(-0.02, 1.02)
    _finish_axes(axes, "accuracy per epoch", "accuracy")


def _finish_axes(axes, title, ylabel):
    from matplotlib.ticker import MaxNLocator

    axes.set_title(title)
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(True, which="major", alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend()
