"""The benchmark runs end to end on a small workload; it checks that it works, not how fast."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minilearn.benchmark import (
    STEP_PARTS,
    Workload,
    format_breakdown,
    format_table,
    run_benchmark,
    time_floor,
    time_step_parts,
)

REPO = Path(__file__).resolve().parent.parent


def test_quick_benchmark_script_prints_every_row():
    result = subprocess.run(
        [sys.executable, str(REPO / "experiments" / "benchmark.py"), "--quick", "--no-torch"],
        capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})

    assert result.returncode == 0, result.stderr
    for row in ("| float32 | floor |", "| float32 | minilearn |", "| float32 | scikit-learn |",
                "| float64 | floor |", "| float64 | minilearn |", "| float64 | scikit-learn |"):
        assert row in result.stdout, row
    assert "Machine: " in result.stdout
    assert "times the floor" in result.stdout
    assert "minilearn --help: " in result.stdout


def test_benchmark_results_are_positive_times():
    workload = Workload(samples=600, features=20, hidden=8, classes=3, batch_size=64, repeats=2)

    results = run_benchmark(workload, dtypes=("float32",), peers=())

    assert set(results[0].seconds) == {"floor", "minilearn"}
    assert all(seconds > 0 for seconds in results[0].seconds.values())
    assert results[0].peak_extra_bytes > 0
    assert "| float32 | minilearn | " in format_table(results, workload)


def test_benchmark_data_keeps_dtype():
    X, y = Workload(samples=100, features=5).make_data("float32")

    assert X.dtype == np.float32
    assert X.shape == (100, 5)
    assert y.min() >= 0
    assert y.max() < 10
    assert time_floor(Workload(samples=100, features=5, hidden=4, repeats=1), X, y) > 0


@pytest.mark.parametrize("arguments, message", [
    (["--samples", "0"], "minilearn: error: --samples must be a positive integer, got 0"),
    (["--classes", "1"], "minilearn: error: --classes must be at least 2, got 1"),
    (["--samples", "50", "--classes", "100"],
     "minilearn: error: --samples must be at least --classes (100) so that every class occurs, "
     "got 50"),
    (["--fast"], "minilearn: error: unrecognized arguments: --fast; see minilearn bench --help"),
])
def test_bench_rejects_bad_arguments(arguments, message):
    result = subprocess.run([sys.executable, "-m", "minilearn", "bench", *arguments],
                            capture_output=True, text=True, timeout=60,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})

    assert result.returncode == 2
    assert result.stderr == message + "\n"


def test_benchmark_labels_cover_every_class():
    _, y = Workload(samples=25, features=3, classes=10).make_data("float64")

    assert set(y.tolist()) == set(range(10))


def test_step_breakdown_times_every_part():
    workload = Workload(samples=600, features=20, hidden=8, classes=3, batch_size=64, repeats=2)
    X, y = workload.make_data("float32")

    parts = time_step_parts(workload, X, y)

    assert tuple(parts) == STEP_PARTS
    assert all(seconds > 0 for seconds in parts.values())
    table = format_breakdown("float32", parts, 0.01, workload.repeats)
    assert "| SGD update | " in table
    assert "| total | " in table


def test_bench_breakdown_flag_prints_tables():
    result = subprocess.run(
        [sys.executable, "-m", "minilearn", "bench", "--quick", "--no-torch", "--no-sklearn",
         "--no-startup", "--breakdown", "--dtype", "float32", "--quiet"],
        capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})

    assert result.returncode == 0, result.stderr
    assert "Parts of a float32 minilearn epoch, timed part by part" in result.stdout
    assert "INFO" not in result.stderr
    assert "| batch gather | " in result.stdout
    assert "SGD updates through " in result.stdout
