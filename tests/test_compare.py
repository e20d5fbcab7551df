"""minilearn compare, and run files that other tools read without cleaning."""

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minilearn.compare import draw_comparison, format_table, load_run, load_runs, write_comparison
from minilearn.config import resolve_config
from minilearn.runner import run

REPO = Path(__file__).resolve().parent.parent


def minilearn(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "minilearn", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    """Two finished iris runs: SGD without and Adam with early stopping and a reference."""
    parent = tmp_path_factory.mktemp("runs")
    sgd = resolve_config({"data": {"name": "iris"}, "training": {"epochs": 4}})
    adam = resolve_config({"data": {"name": "iris"}, "training": {"epochs": 6},
                           "optimizer": {"name": "adam", "lr": 0.05},
                           "early_stopping": {"enabled": True, "patience": 2},
                           "reference": {"sklearn": True}})
    run(sgd, out=parent / "sgd", progress=False)
    run(adam, out=parent / "adam", progress=False)
    return parent / "sgd", parent / "adam"


def write_metrics(directory, payload):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "metrics.json").write_text(json.dumps(payload), encoding="utf-8")
    return directory


def test_load_run_reads_metrics(run_dirs):
    sgd, adam = run_dirs

    first, second = load_runs([sgd, adam])

    assert first.label == "sgd"
    assert first.status == "completed"
    assert len(first.records) == 4
    assert first.best_epoch is None
    assert second.best_epoch is not None
    assert 0 < second.reference_accuracy() <= 1


def test_table_has_final_metrics(run_dirs):
    runs = load_runs(run_dirs)

    lines = format_table(runs).splitlines()

    assert lines[0].split() == ["run", "status", "epochs", "best_epoch", "train_loss", "val_loss",
                                "val_accuracy", "test_loss", "test_accuracy", "sklearn_accuracy"]
    sgd_row = lines[1].split()
    assert sgd_row[:4] == ["sgd", "completed", "4", "-"]
    assert float(sgd_row[5]) == pytest.approx(runs[0].records[-1]["val_loss"], abs=5e-5)
    assert float(sgd_row[8]) == pytest.approx(runs[0].test["accuracy"], abs=5e-5)
    assert sgd_row[9] == "-"
    adam_row = lines[2].split()
    assert float(adam_row[9]) == pytest.approx(runs[1].reference_accuracy(), abs=5e-5)


def test_table_columns_align(run_dirs):
    lines = format_table(load_runs(run_dirs)).splitlines()

    ends = {len(line) for line in lines}
    assert len(ends) == 1


def test_same_names_are_labelled_by_path(run_dirs, tmp_path):
    other = tmp_path / "copy" / "sgd"
    other.mkdir(parents=True)
    (other / "metrics.json").write_bytes((run_dirs[0] / "metrics.json").read_bytes())

    runs = load_runs([run_dirs[0], other])

    assert [run.label for run in runs] == [str(run_dirs[0]), str(other)]


def test_figure_draws_every_run(run_dirs):
    figure = draw_comparison(load_runs(run_dirs), title="iris")

    loss_axes, accuracy_axes = figure.axes
    # Training and validation lines of two runs on each panel.
    assert len(loss_axes.get_lines()) == 4
    assert len(accuracy_axes.get_lines()) == 4
    legend = [text.get_text() for text in loss_axes.get_legend().get_texts()]
    assert legend == ["sgd", "adam", "validation", "training"]
    assert figure._suptitle.get_text() == "iris"


def test_write_comparison_png(run_dirs, tmp_path):
    path = write_comparison(load_runs(run_dirs), tmp_path / "both.png")

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_comparison_leaves_no_pyplot_figure(run_dirs, tmp_path):
    import matplotlib.pyplot as plt

    write_comparison(load_runs(run_dirs), tmp_path / "both.png")

    assert plt.get_fignums() == []


def test_diverged_run_with_nulls_is_drawn(tmp_path):
    diverged = write_metrics(tmp_path / "diverged", {
        "status": "diverged",
        "epochs": [{"epoch": 1, "train_loss": 2.0, "val_loss": 1.5, "train_accuracy": 0.4,
                    "val_accuracy": 0.5},
                   {"epoch": 2, "train_loss": None, "val_loss": None, "train_accuracy": None,
                    "val_accuracy": None}],
        "test": None,
    })

    runs = load_runs([diverged])
    write_comparison(runs, tmp_path / "diverged.png")

    row = format_table(runs).splitlines()[1].split()
    assert row[:4] == ["diverged", "diverged", "2", "-"]
    assert row[4:] == ["-"] * 6


@pytest.mark.parametrize("make, match", [
    (lambda tmp: tmp / "missing", "run directory .*missing does not exist"),
    (lambda tmp: (tmp / "file.txt").write_text("x") and tmp / "file.txt",
     "file.txt is not a directory"),
    (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "has no metrics.json"),
    (lambda tmp: write_metrics(tmp / "noepochs", {"epochs": [], "test": None}),
     "contains no epoch records"),
    (lambda tmp: write_metrics(tmp / "notlist", {"epochs": {"epoch": 1}}),
     "contains no epoch records"),
])
def test_bad_run_directories_raise(tmp_path, make, match):
    with pytest.raises(ValueError, match=match):
        load_run(make(tmp_path))


def test_invalid_json_raises(tmp_path):
    directory = tmp_path / "broken"
    directory.mkdir()
    (directory / "metrics.json").write_text('{"epochs": [NaN]}', encoding="utf-8")

    with pytest.raises(ValueError, match="is not valid JSON"):
        load_run(directory)


def test_out_directory_must_exist(run_dirs, tmp_path):
    with pytest.raises(ValueError, match="does not exist; create it"):
        write_comparison(load_runs(run_dirs), tmp_path / "nowhere" / "both.png")


def test_cli_compare(run_dirs, tmp_path):
    result = minilearn("compare", *run_dirs, "--out", tmp_path / "cmp.png", "--title", "iris")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("run ")
    assert lines[1].startswith("sgd ")
    assert lines[2].startswith("adam ")
    assert lines[3] == f"figure: {tmp_path / 'cmp.png'}"
    assert (tmp_path / "cmp.png").stat().st_size > 0


def test_cli_compare_default_output(run_dirs, tmp_path):
    result = minilearn("compare", run_dirs[0], cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "comparison.png").is_file()


def test_cli_compare_bad_directory(run_dirs, tmp_path):
    result = minilearn("compare", run_dirs[0], tmp_path / "nope", "--out", tmp_path / "x.png")

    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("minilearn: error: run directory ")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_cli_compare_needs_a_run(tmp_path):
    result = minilearn("compare")

    assert result.returncode == 2
    assert "RUN_DIR" in result.stderr


def test_metrics_csv_parses_as_numbers(run_dirs):
    with open(run_dirs[1] / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))

    assert list(rows[0]) == ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                             "lr", "nonfinite_steps", "seconds"]
    for row in rows:
        for column, text in row.items():
            assert text == "" or math.isfinite(float(text)), (column, text)


def test_metrics_csv_loads_with_pandas(run_dirs):
    pandas = pytest.importorskip("pandas")

    frame = pandas.read_csv(run_dirs[1] / "metrics.csv")

    assert frame["epoch"].dtype.kind == "i"
    for column in frame.columns:
        assert frame[column].dtype.kind in "if", column
    assert frame["epoch"].tolist() == list(range(1, len(frame) + 1))
    metrics = json.loads((run_dirs[1] / "metrics.json").read_text())
    assert frame["val_loss"].tolist() == [record["val_loss"] for record in metrics["epochs"]]
