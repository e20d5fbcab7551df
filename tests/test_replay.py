"""Exact replay and model storage: identical reruns, detected differences, checked loads."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from minilearn import blas, layers
from minilearn.config import load_config
from minilearn.model import Sequential
from minilearn.replay import compare_numerics, compare_run_directories, replay_run
from minilearn.runner import run
from test_cli import CONFIGS, minilearn


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "original"
    config = load_config(CONFIGS / "mlp_iris.toml", ["training.epochs=5"])
    run(config, out=out, progress=False)
    return out


def test_same_config_twice_is_byte_identical(finished_run, tmp_path):
    config = load_config(CONFIGS / "mlp_iris.toml", ["training.epochs=5"])

    run(config, out=tmp_path / "again", progress=False)

    for name in ("metrics.json", "model.npz", "config.toml"):
        assert (finished_run / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name


def test_replay_reports_identical(finished_run, tmp_path):
    report = replay_run(finished_run, out=tmp_path / "replay")

    assert report.identical, report.differences
    assert report.replay == tmp_path / "replay"


def test_replay_cli_default_directory_beside_original(finished_run):
    result = minilearn("replay", finished_run, "--quiet")

    assert result.returncode == 0, result.stderr
    assert "identical" in result.stdout
    replays = [path for path in finished_run.parent.iterdir() if path.name.startswith("original-replay-")]
    assert len(replays) == 1


def test_replay_catches_changed_metric(finished_run, tmp_path):
    changed = tmp_path / "changed"
    changed.mkdir()
    for path in finished_run.iterdir():
        (changed / path.name).write_bytes(path.read_bytes())
    metrics = json.loads((changed / "metrics.json").read_text())
    metrics["epochs"][2]["val_loss"] = np.nextafter(metrics["epochs"][2]["val_loss"], 1.0)
    (changed / "metrics.json").write_text(json.dumps(metrics))

    result = minilearn("replay", changed, "--out", tmp_path / "replay", "--quiet")

    assert result.returncode == 1
    assert "different: metrics.json.epochs[2].val_loss" in result.stdout


def test_compare_catches_changed_parameter(finished_run, tmp_path):
    changed = tmp_path / "changed"
    changed.mkdir()
    for path in finished_run.iterdir():
        (changed / path.name).write_bytes(path.read_bytes())
    with np.load(changed / "model.npz") as stored:
        arrays = {name: stored[name].copy() for name in stored.files}
    arrays["2.bias"][1] += 1e-12
    np.savez(changed / "model.npz", **arrays)

    differences = compare_run_directories(finished_run, changed)

    assert differences == [f"model.npz: parameter '2.bias' differs first at index (1,): "
                           f"{np.load(finished_run / 'model.npz')['2.bias'][1]!r} against "
                           f"{arrays['2.bias'][1]!r}"]


def test_replay_rejects_non_run_directory(tmp_path):
    result = minilearn("replay", tmp_path)

    assert result.returncode == 2
    assert "is not a run directory (no config.toml)" in result.stderr


def small_model(dtype=np.float64, hidden=4):
    rng = np.random.default_rng(0)
    return Sequential([layers.Linear(3, hidden, rng=rng, dtype=dtype), layers.ReLU(),
                       layers.Linear(hidden, 2, rng=rng, dtype=dtype)])


def test_save_load_round_trip(tmp_path):
    model = small_model()
    model.save(tmp_path / "model.npz")
    other = Sequential([layers.Linear(3, 4, rng=np.random.default_rng(9)), layers.ReLU(),
                        layers.Linear(4, 2, rng=np.random.default_rng(9))])

    other.load(tmp_path / "model.npz")

    for name, value in model.named_parameters().items():
        np.testing.assert_array_equal(other.named_parameters()[name], value)


@pytest.mark.parametrize("target, match", [
    (lambda: small_model(hidden=5), r"parameter '0.weight' has shape \(3, 4\) and dtype float64, but the model expects shape \(3, 5\)"),
    (lambda: small_model(dtype=np.float32), r"dtype float64, but the model expects shape \(3, 4\) and dtype float32"),
    (lambda: Sequential([layers.Linear(3, 2, rng=np.random.default_rng(0))]), r"unexpected parameters \['2.bias', '2.weight'\]"),
])
def test_load_rejects_mismatch(tmp_path, target, match):
    small_model().save(tmp_path / "model.npz")

    with pytest.raises(ValueError, match=match):
        target().load(tmp_path / "model.npz")


def test_load_rejects_corrupt_and_pickled_files(tmp_path):
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip file")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **{"0.weight": np.array([{"a": 1}], dtype=object)})

    with pytest.raises(ValueError, match="corrupt.npz"):
        small_model().load(corrupt)
    with pytest.raises(ValueError, match="pickled.npz"):
        small_model().load(pickled)


def test_save_load_keeps_batch_norm_running_statistics(tmp_path):
    rng = np.random.default_rng(0)
    model = Sequential([layers.Linear(3, 4, rng=rng), layers.BatchNorm1d(4), layers.ReLU(),
                        layers.Linear(4, 2, rng=rng)])
    for _ in range(3):
        model.forward(rng.normal(size=(8, 3)))
    model.save(tmp_path / "model.npz")
    fresh = Sequential([layers.Linear(3, 4, rng=rng), layers.BatchNorm1d(4), layers.ReLU(),
                        layers.Linear(4, 2, rng=rng)])

    fresh.load(tmp_path / "model.npz")

    for name in ("running_mean", "running_var", "batches_tracked"):
        np.testing.assert_array_equal(fresh.layers[1].buffers[name], model.layers[1].buffers[name])
    X = rng.normal(size=(5, 3))
    np.testing.assert_array_equal(fresh.predict_proba(X), model.predict_proba(X))


def test_manifest_records_numerics(finished_run):
    manifest = json.loads((finished_run / "manifest.json").read_text())

    assert manifest["numerics"]["sgd_updates"] in ("blas", "numpy")
    assert "openblas_kernel" in manifest["numerics"]


@pytest.mark.skipif(not blas.blas_available(), reason="numpy's bundled OpenBLAS was not found")
def test_replay_names_changed_sgd_updates(tmp_path):
    original = tmp_path / "numpy-updates"
    result = subprocess.run(
        [sys.executable, "-m", "minilearn", "run", str(CONFIGS / "mlp_iris.toml"), "--set",
         "training.epochs=5", "--out", str(original), "--quiet"],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, MINILEARN_BLAS_UPDATES="0"))
    assert result.returncode == 0, result.stderr

    report = replay_run(original, out=tmp_path / "replay")

    assert report.environment_notes[0] == ("the original ran with sgd_updates = 'numpy' and the "
                                           "replay with 'blas'")
    assert "MINILEARN_BLAS_UPDATES=0" in report.environment_notes[-1]


def test_replay_without_numerics_gives_no_notes(finished_run, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    for path in finished_run.iterdir():
        (old / path.name).write_bytes(path.read_bytes())
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["numerics"]
    (old / "manifest.json").write_text(json.dumps(manifest))

    assert compare_numerics(old, finished_run) == []
