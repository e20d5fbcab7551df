import math
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from minilearn.plotting import LOSS_LABEL, draw_history, plot_history

REPOSITORY = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _records(n_epochs=5, loss_start=1.0, loss_ratio=0.8):
    return [
        {
            "epoch": epoch,
            "train_loss": loss_start * loss_ratio**epoch,
            "train_accuracy": min(1.0, 0.5 + 0.1 * epoch),
            "val_loss": 1.2 * loss_start * loss_ratio**epoch,
            "val_accuracy": min(1.0, 0.45 + 0.1 * epoch),
        }
        for epoch in range(1, n_epochs + 1)
    ]


def _labelled_lines(axes):
    return {line.get_label(): line for line in axes.get_lines()}


def _end_markers(axes):
    return [line for line in axes.get_lines()
            if line.get_marker() == "x" and len(line.get_xdata()) == 1]


def test_plot_history_writes_png(tmp_path):
    target = tmp_path / "loss_curve.png"

    returned = plot_history(_records(), target, title="iris, softmax regression")

    assert returned == target
    assert target.read_bytes().startswith(PNG_SIGNATURE)
    assert [path.name for path in tmp_path.iterdir()] == ["loss_curve.png"]


def test_draw_history_axes_and_labels():
    figure = draw_history(_records(), title="run 1")
    loss_axes, accuracy_axes = figure.axes

    assert [text.get_text() for text in figure.texts] == ["run 1"]
    assert loss_axes.get_xlabel() == "epoch"
    assert loss_axes.get_ylabel() == LOSS_LABEL == "loss (nats, mean per sample)"
    assert accuracy_axes.get_xlabel() == "epoch"
    assert accuracy_axes.get_ylabel() == "accuracy"
    assert set(_labelled_lines(loss_axes)) == {"training", "validation"}
    assert set(_labelled_lines(accuracy_axes)) == {"training", "validation"}
    assert loss_axes.get_legend() is not None
    assert accuracy_axes.get_legend() is not None
    assert loss_axes.xaxis.get_gridlines()[0].get_visible()


def test_loss_axis_log_scale_over_two_decades():
    wide = draw_history(_records(n_epochs=30, loss_ratio=0.8))
    narrow = draw_history(_records(n_epochs=5, loss_ratio=0.8))

    assert wide.axes[0].get_yscale() == "log"
    assert narrow.axes[0].get_yscale() == "linear"


def test_loss_axis_linear_with_zero_loss():
    records = _records(n_epochs=30, loss_ratio=0.5)
    records[-1]["train_loss"] = 0.0

    figure = draw_history(records)

    assert figure.axes[0].get_yscale() == "linear"


def test_nan_in_later_epochs_ends_line_with_marker(tmp_path):
    records = _records(n_epochs=6)
    for record in records[3:]:
        record["train_loss"] = float("nan")
        record["train_accuracy"] = float("nan")
    records[4]["val_loss"] = float("inf")

    figure = draw_history(records)
    plot_history(records, tmp_path / "curve.png")
    loss_axes, accuracy_axes = figure.axes
    training = _labelled_lines(loss_axes)["training"]
    validation = _labelled_lines(loss_axes)["validation"]
    markers = _end_markers(loss_axes)

    np.testing.assert_array_equal(training.get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(validation.get_xdata(), [1, 2, 3, 4, 6])
    assert len(markers) == 1
    assert markers[0].get_xdata()[0] == 3
    assert markers[0].get_ydata()[0] == pytest.approx(records[2]["train_loss"])
    assert "last finite value (later NaN or inf)" in _labelled_lines(loss_axes)
    assert len(_end_markers(accuracy_axes)) == 1
    assert (tmp_path / "curve.png").read_bytes().startswith(PNG_SIGNATURE)


def test_unmeasured_values_draw_no_marker():
    records = _records(n_epochs=6)
    for record in records:
        if record["epoch"] % 2:
            record["val_loss"] = None
        record.pop("val_accuracy")

    figure = draw_history(records)
    loss_axes, accuracy_axes = figure.axes

    np.testing.assert_array_equal(_labelled_lines(loss_axes)["validation"].get_xdata(),
                                  [2, 4, 6])
    assert "validation" not in _labelled_lines(accuracy_axes)
    assert _end_markers(loss_axes) == []


def test_all_values_nonfinite_draws_no_line():
    records = [{"epoch": 1, "train_loss": float("nan"), "train_accuracy": None,
                "val_loss": None, "val_accuracy": None}]

    figure = draw_history(records)

    assert figure.axes[0].get_lines() == []
    assert figure.axes[0].get_legend() is None


def test_reference_lines_on_accuracy_panel():
    reference = {"scikit-learn LogisticRegression": np.float64(0.95), "majority class": 0.33}

    figure = draw_history(_records(), reference=reference)
    lines = _labelled_lines(figure.axes[1])

    reference_line = lines["scikit-learn LogisticRegression (test 0.950)"]
    assert reference_line.get_linestyle() == "--"
    assert list(reference_line.get_ydata()) == [0.95, 0.95]
    assert "majority class (test 0.330)" in lines
    assert not any("test" in label for label in _labelled_lines(figure.axes[0]))


def test_single_epoch_plots(tmp_path):
    target = tmp_path / "one.png"

    plot_history(_records(n_epochs=1), target)

    assert target.read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.parametrize(
    "records, error, message",
    [
        ([], ValueError, "records is empty"),
        ({"epoch": 1}, TypeError, "records must be a list of dicts"),
        ([{"train_loss": 1.0}], ValueError, r"records\[0\] = .* 'epoch' key"),
        ([{"epoch": 1, "train_loss": "0.5"}], TypeError,
         r"records\[0\]\['train_loss'\] = '0.5' is not a number"),
    ],
)
def test_plot_history_rejects_bad_records(tmp_path, records, error, message):
    with pytest.raises(error, match=message):
        plot_history(records, tmp_path / "curve.png")
    assert not (tmp_path / "curve.png").exists()


def test_plot_history_rejects_bad_reference(tmp_path):
    with pytest.raises(ValueError, match=r"reference\['baseline'\] = nan is not a finite number"):
        plot_history(_records(), tmp_path / "curve.png", reference={"baseline": math.nan})
    with pytest.raises(TypeError, match="reference must be a dict"):
        plot_history(_records(), tmp_path / "curve.png", reference=[0.9])


def test_repeated_plots_leave_no_open_figures(tmp_path):
    import matplotlib.pyplot as plt

    open_before = plt.get_fignums()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for index in range(25):
            plot_history(_records(), tmp_path / f"curve{index}.png")

    assert plt.get_fignums() == open_before
    assert len(list(tmp_path.glob("curve*.png"))) == 25


_PLOT_PROCESS = textwrap.dedent("""
    import sys
    from minilearn.plotting import plot_history

    records = [{"epoch": 1, "train_loss": 0.9, "train_accuracy": 0.6,
                "val_loss": 1.0, "val_accuracy": 0.55},
               {"epoch": 2, "train_loss": 0.5, "train_accuracy": 0.8,
                "val_loss": float("nan"), "val_accuracy": None}]
    plot_history(records, sys.argv[1], title="headless")
    gui_modules = [name for name in sys.modules if name.startswith(("tkinter", "_tkinter"))]
    print(",".join(gui_modules))
""")


def test_plot_ignores_gui_backend_without_display(tmp_path):
    target = tmp_path / "curve.png"
    environment = {key: value for key, value in os.environ.items() if key != "DISPLAY"}
    environment["MPLBACKEND"] = "TkAgg"

    result = subprocess.run([sys.executable, "-c", _PLOT_PROCESS, str(target)],
                            cwd=REPOSITORY, env=environment, capture_output=True,
                            text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
    assert target.stat().st_size > len(PNG_SIGNATURE)
    assert target.read_bytes().startswith(PNG_SIGNATURE)


@pytest.mark.parametrize("largest", [1e268, 1e307])
def test_plot_history_huge_finite_losses(tmp_path, largest):
    losses = np.logspace(0, np.log10(largest), 12)
    records = [{"epoch": i + 1, "train_loss": float(loss), "train_accuracy": 0.1,
                "val_loss": float(loss) * 1.5 if loss * 1.5 < 1.7e308 else float(loss),
                "val_accuracy": 0.1} for i, loss in enumerate(losses)]

    plot_history(records, tmp_path / "huge.png")

    assert (tmp_path / "huge.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
