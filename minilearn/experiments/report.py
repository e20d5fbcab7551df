"""Tables and figures of an experiment: statistics over seeds, Markdown and matplotlib.

Figures are drawn with matplotlib's object API (``Figure`` and ``FigureCanvasAgg``),
never through pyplot, and matplotlib is imported inside the functions that draw.
"""

import logging
import math
from pathlib import Path

import numpy as np

from minilearn import io

logger = logging.getLogger(__name__)

# A positive series whose largest value is more than this many times its smallest
# spans more than two decades and gets a logarithmic axis.
LOG_SCALE_RATIO = 100.0


def _as_float(value):
    return math.nan if value is None else float(value)


# Statistics over seeds


def seed_statistics(values):
    """Return mean, std (ddof=1), min, max and counts of per-seed values, ignoring non-finite ones.

    ``n`` counts the finite values and ``n_seeds`` all of them, so a table can show
    how many seeds a mean leaves out. Missing statistics are None.
    """
    values = np.array([_as_float(value) for value in values], dtype=float)
    finite = values[np.isfinite(values)]
    stats = {"mean": None, "std": None, "min": None, "max": None,
             "n": int(finite.size), "n_seeds": int(values.size)}
    if finite.size:
        stats.update(mean=float(finite.mean()), min=float(finite.min()), max=float(finite.max()))
    if finite.size > 1:
        stats["std"] = float(finite.std(ddof=1))
    return stats


def format_statistics(stats, digits=3):
    """Format seed statistics as "mean ± std", noting seeds left out as non-finite."""
    if stats["mean"] is None:
        return "non-finite" if stats["n_seeds"] else "-"
    text = f"{stats['mean']:.{digits}f}"
    if stats["std"] is not None:
        text += f" ± {stats['std']:.{digits}f}"
    if stats["n"] < stats["n_seeds"]:
        text += f" ({stats['n']} of {stats['n_seeds']} finite)"
    return text


def epochs_to_reach(record, key, threshold):
    """Return the first epoch whose ``key`` is at least ``threshold``, or None."""
    for entry in record.epochs:
        value = entry.get(key)
        if value is not None and value >= threshold:
            return int(entry["epoch"])
    return None


def markdown_table(headers, rows):
    """Return a Markdown table with one header row; cells are converted with str."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines)


# Figures


def new_figure(width, height):
    """Return a matplotlib Figure on an Agg canvas, not registered with pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path, dpi=110):
    """Write ``figure`` to ``path`` as PNG, atomically, and return the path."""
    import io as bytes_io

    buffer = bytes_io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    path = Path(path)
    io.atomic_write_bytes(path, buffer.getvalue())
    logger.info("wrote %s", path)
    return path


def seed_matrix(records, key):
    """Return one metric of several runs as an array (runs, epochs), NaN-padded on the right."""
    series = [record.series(key) for record in records]
    length = max((len(values) for values in series), default=0)
    matrix = np.full((len(series), length), np.nan)
    for row, values in enumerate(series):
        matrix[row, :len(values)] = values
    return matrix


def draw_seed_band(axes, matrix, *, label, color, band="std", linestyle="-", marker_level=0):
    """Draw the mean over seeds (rows of ``matrix``) per epoch, with a shaded band.

    ``band`` is "std" (mean ± one standard deviation) or "minmax". The mean and band
    cover the epochs up to the first at which some seed is not finite. From there on
    every seed is drawn as its own thin line, and a seed that becomes non-finite ends
    at its last finite value with an "x" marker. A seed with no finite value at all
    gets an "x" near the bottom of the axes at the first epoch, raised by
    ``marker_level`` steps so that several lines' markers stay visible. Returns True
    when it drew an "x".
    """
    if matrix.size == 0:
        return False
    epochs = np.arange(1, matrix.shape[1] + 1)
    finite = np.isfinite(matrix)
    all_finite = finite.all(axis=0)
    prefix = int(np.argmin(all_finite)) if not all_finite.all() else len(epochs)

    if prefix:
        _draw_mean_band(axes, epochs[:prefix], matrix[:, :prefix], label, color, band, linestyle)
    marked = False
    unlabelled = prefix == 0
    for row, values in enumerate(matrix):
        if prefix == len(epochs):
            break
        seed_label = label if unlabelled and finite[row].any() else None
        unlabelled = unlabelled and seed_label is None
        marked |= _draw_single_seed(axes, epochs, values, finite[row], prefix, color, linestyle,
                                    label=seed_label, marker_level=marker_level)

    if unlabelled:
        # No seed had a finite value, so only "x" markers name this line's color.
        axes.plot([], [], color=color, marker="x", linestyle="none",
                  label=f"{label} (no finite epoch)")
    return marked


def _draw_mean_band(axes, epochs, matrix, label, color, band, linestyle):
    mean = matrix.mean(axis=0)
    if band == "minmax":
        low, high = matrix.min(axis=0), matrix.max(axis=0)
    else:
        spread = matrix.std(axis=0, ddof=1) if len(matrix) > 1 else np.zeros_like(mean)
        low, high = mean - spread, mean + spread
    marker = "o" if len(epochs) <= 3 else None
    axes.plot(epochs, mean, color=color, label=label, linestyle=linestyle, marker=marker,
              markersize=3)
    if len(matrix) > 1:
        axes.fill_between(epochs, low, high, color=color, alpha=0.2, linewidth=0)


def _draw_single_seed(axes, epochs, values, finite, prefix, color, linestyle, label,
                      marker_level):
    """Draw one seed from the end of the shared prefix on; returns True when it drew an "x"."""
    if not finite.any():
        height = 0.03 + 0.05 * marker_level
        axes.plot([epochs[0]], [height], transform=axes.get_xaxis_transform(), marker="x",
                  markersize=9, markeredgewidth=2, color=color, linestyle="none", clip_on=False)
        return True
    last = int(np.flatnonzero(finite)[-1])
    start = max(prefix - 1, 0)
    shown = slice(start, last + 1)
    axes.plot(epochs[shown][finite[shown]], values[shown][finite[shown]], color=color,
              linewidth=0.8, alpha=0.7, linestyle=linestyle, label=label)
    # Values after the last finite one are NaN or inf, or missing because the run stopped.
    broke = last < len(values) - 1
    if broke:
        axes.plot([epochs[last]], [values[last]], marker="x", markersize=9, markeredgewidth=2,
                  color=color, linestyle="none")
    return broke


def use_log_scale_if_wide(axes, matrices):
    """Switch the y axis to log scale when the positive finite values span two decades."""
    values = np.concatenate([matrix[np.isfinite(matrix)].ravel() for matrix in matrices]
                            or [np.array([])])
    if values.size and (values > 0).all() and values.max() > LOG_SCALE_RATIO * values.min():
        axes.set_yscale("log")
        return True
    return False


def finish_epoch_axes(axes, title, ylabel):
    """Label a panel whose x axis is the epoch: title, axis labels, integer ticks, grid, legend."""
    from matplotlib.ticker import MaxNLocator

    axes.set_title(title)
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(True, alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small")


def band_legend_note(band, n_seeds):
    """Return the legend text that explains the shaded band."""
    what = "min to max" if band == "minmax" else "± 1 std"
    return f"line: mean over {n_seeds} seeds, band: {what}"
