"""Several runs side by side: their curves in one figure and their final metrics in one table.

Each run is a directory written by ``minilearn run``, read through its
``metrics.json``. The figure is drawn on matplotlib's ``Figure`` with an Agg
canvas, never through pyplot, so it needs no display. matplotlib is imported
inside the drawing function, so importing this module stays cheap.
"""

import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minilearn.io import atomic_write_bytes
from minilearn.plotting import LOG_SCALE_RATIO, LOSS_LABEL

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"

# Columns of the table: (header, function of a RunSummary that returns the value).
TABLE_COLUMNS = (
    ("run", lambda run: run.label),
    ("status", lambda run: run.status),
    ("epochs", lambda run: len(run.records)),
    ("best_epoch", lambda run: run.best_epoch),
    ("train_loss", lambda run: run.last("train_loss")),
    ("val_loss", lambda run: run.last("val_loss")),
    ("val_accuracy", lambda run: run.last("val_accuracy")),
    ("test_loss", lambda run: (run.test or {}).get("loss")),
    ("test_accuracy", lambda run: (run.test or {}).get("accuracy")),
    ("sklearn_accuracy", lambda run: run.reference_accuracy()),
)


TEXT_COLUMNS = ("run", "status")


@dataclass
class RunSummary:
    """The parts of one run directory that ``compare`` reads.

    ``records`` are the epoch records of metrics.json, ``test`` its test metrics
    (or None) and ``reference`` its scikit-learn reference (or None). ``label``
    names the run in the figure and the table.
    """

    path: Path
    label: str
    status: str
    records: list
    test: dict | None
    best_epoch: int | None
    reference: dict | None

    def last(self, key):
        """Return ``key`` of the last epoch record, or None when it was not measured."""
        return self.records[-1].get(key)

    def reference_accuracy(self):
        """Return the scikit-learn reference's test accuracy, or None without one."""
        record = (self.reference or {}).get("sklearn") or {}
        return (record.get("test") or {}).get("accuracy")


def load_run(path):
    """Read the run directory at ``path``; a path that is not a finished run raises ValueError."""
    path = Path(path)
    if not path.is_dir():
        reason = "does not exist" if not path.exists() else "is not a directory"
        raise ValueError(f"run directory {path} {reason}; pass directories written by "
                         "minilearn run")
    metrics_path = path / METRICS_FILE
    if not metrics_path.is_file():
        raise ValueError(f"{path} has no {METRICS_FILE}, so it is not a run directory; pass "
                         "directories written by minilearn run")

    metrics = _read_strict_json(metrics_path)
    records = metrics.get("epochs") if isinstance(metrics, dict) else None
    if not isinstance(records, list) or not records \
            or not all(isinstance(record, dict) and "epoch" in record for record in records):
        raise ValueError(f"{metrics_path} contains no epoch records; the run ended before its "
                         "first epoch, so there is nothing to compare")

    return RunSummary(path=path, label=path.name, status=_status(path, metrics),
                      records=records, test=metrics.get("test"),
                      best_epoch=metrics.get("best_epoch"), reference=metrics.get("reference"))


def load_runs(paths):
    """Read every run directory in ``paths``; runs whose names collide are labelled by their paths."""
    runs = [load_run(path) for path in paths]
    names = [run.label for run in runs]
    for run in runs:
        if names.count(run.label) > 1:
            run.label = str(run.path)
    return runs


def _read_strict_json(path):
    def reject(constant):
        raise ValueError(f"the non-standard constant {constant}")

    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=reject)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); rerun the run to rewrite it") \
            from None


def _status(path, metrics):
    """Return the run's status from metrics.json, else from manifest.json, else "unknown"."""
    status = metrics.get("status")
    if status:
        return status
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unknown"
    return manifest.get("status", "unknown") if isinstance(manifest, dict) else "unknown"


# The table


def format_table(runs):
    """Return the final metrics of ``runs`` as an aligned text table, one run per row.

    Losses and accuracies come from the last epoch record, test metrics from the
    test split. A value that was not measured, or is not finite, shows as "-".
    """
    headers = [header for header, _ in TABLE_COLUMNS]
    rows = [[_cell(value_of(run)) for _, value_of in TABLE_COLUMNS] for run in runs]
    widths = [max(len(header), *(len(row[index]) for row in rows))
              for index, header in enumerate(headers)]

    lines = [_format_row(headers, headers, widths)]
    lines.extend(_format_row(row, headers, widths) for row in rows)
    return "\n".join(lines)


def _format_row(cells, headers, widths):
    """Join one row's cells: text columns aligned left, numbers right."""
    aligned = [cell.ljust(width) if header in TEXT_COLUMNS else cell.rjust(width)
               for cell, header, width in zip(cells, headers, widths)]
    return "  ".join(aligned).rstrip()


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return str(value)
    value = float(value)
    return f"{value:.4f}" if math.isfinite(value) else "-"


# The figure


def draw_comparison(runs, *, title=None):
    """Return a matplotlib ``Figure``: loss and accuracy per epoch of every run.

    Each run has one color. Validation values are solid lines and training
    values dashed ones. The loss axis turns logarithmic when the losses span more
    than two decades, as in a run's own plot.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    figure = Figure(figsize=(12, 4.6), layout="constrained")
    FigureCanvasAgg(figure)
    loss_axes, accuracy_axes = figure.subplots(1, 2)

    losses = []
    for index, run in enumerate(runs):
        color = f"C{index % 10}"
        losses.extend(_draw_run(loss_axes, run, "loss", color))
        _draw_run(accuracy_axes, run, "accuracy", color)

    positive = np.array([value for value in losses if value > 0])
    if positive.size and positive.size == len(losses) \
            and positive.max() > LOG_SCALE_RATIO * positive.min():
        loss_axes.set_yscale("log")

    run_handles = [Line2D([], [], color=f"C{index % 10}", label=run.label)
                   for index, run in enumerate(runs)]
    style_handles = [Line2D([], [], color="gray", linestyle="-", label="validation"),
                     Line2D([], [], color="gray", linestyle="--", label="training")]
    _finish_axes(loss_axes, "loss per epoch", LOSS_LABEL, run_handles + style_handles)
    accuracy_axes.set_ylim(-0.02, 1.02)
    _finish_axes(accuracy_axes, "accuracy per epoch", "accuracy", run_handles + style_handles)
    if title:
        figure.suptitle(title)
    return figure


def _draw_run(axes, run, metric, color):
    """Draw one run's training and validation lines of ``metric``; returns their finite values."""
    epochs = np.array([float(record["epoch"]) for record in run.records])
    drawn = []
    for prefix, style in (("train", "--"), ("val", "-")):
        values = np.array([_as_float(record.get(f"{prefix}_{metric}")) for record in run.records])
        finite = np.isfinite(values)
        if not finite.any():
            continue
        marker = "o" if finite.sum() <= 20 else None
        axes.plot(epochs[finite], values[finite], color=color, linestyle=style, marker=marker,
                  markersize=3, alpha=1.0 if prefix == "val" else 0.6)
        drawn.extend(values[finite].tolist())
    return drawn


def _as_float(value):
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _finish_axes(axes, title, ylabel, handles):
    from matplotlib.ticker import MaxNLocator

    axes.set_title(title)
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(handles=handles, fontsize="small")


def write_comparison(runs, path, *, title=None):
    """Draw the comparison of ``runs`` and write it to ``path`` as PNG, atomically; returns the path."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"--out {path}: the directory {path.parent} does not exist; create it "
                         "or choose another path")
    figure = draw_comparison(runs, title=title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())
    logger.debug("wrote the comparison of %d runs to %s", len(runs), path)
    return path
