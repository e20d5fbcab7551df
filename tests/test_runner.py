"""Runs from Python: status on failure, metrics kept as epochs finish, model building."""

import json

import numpy as np
import pytest

from minilearn import cli, runner
from minilearn.config import load_config, resolve_config
from minilearn.layers import Linear, ReLU, Softmax, Tanh
from test_cli import CONFIGS


def test_exception_in_training_leaves_failed_status(tmp_path, monkeypatch, capsys):
    real_fit = runner.fit

    def failing_fit(*args, on_epoch_end=None, **kwargs):
        def explode(record, model):
            on_epoch_end(record, model)
            if record["epoch"] == 2:
                raise RuntimeError("disk quota exceeded")
        return real_fit(*args, on_epoch_end=explode, **kwargs)

    monkeypatch.setattr(runner, "fit", failing_fit)
    out = tmp_path / "run"

    code = cli.main(["run", str(CONFIGS / "softmax_iris.toml"), "--out", str(out), "--quiet"])

    assert code == 1
    error = capsys.readouterr().err.strip()
    assert error == "minilearn: error: RuntimeError: disk quota exceeded"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["message"] == "RuntimeError: disk quota exceeded"
    metrics = json.loads((out / "metrics.json").read_text())
    assert [record["epoch"] for record in metrics["epochs"]] == [1, 2]


def test_build_model_layers_and_init():
    config = resolve_config({"model": {"hidden": [8, 6], "activation": "tanh", "output": "softmax"},
                             "loss": {"name": "mse"}})

    model = runner.build_model(config["model"], 4, 3, np.random.default_rng(0))

    kinds = [type(layer) for layer in model.layers]
    assert kinds == [Linear, Tanh, Linear, Tanh, Linear, Softmax]
    assert [layer.init for layer in model.layers if isinstance(layer, Linear)] == ["glorot"] * 3
    assert model.layers[-2].params["weight"].shape == (6, 3)


def test_build_model_relu_uses_he_and_dtype():
    config = resolve_config({"model": {"hidden": [5], "dtype": "float32"}})

    model = runner.build_model(config["model"], 4, 3, np.random.default_rng(0))

    assert [type(layer) for layer in model.layers] == [Linear, ReLU, Linear]
    assert model.layers[0].init == "he"
    assert model.layers[2].init == "glorot"
    assert model.dtype == np.float32


def test_seed_streams_are_reproducible_and_distinct():
    first_init, first_shuffle = runner.seed_streams(3)
    second_init, second_shuffle = runner.seed_streams(3)

    assert first_init.random() == second_init.random()
    assert first_shuffle.random() == second_shuffle.random()
    assert runner.seed_streams(3)[0].random() != runner.seed_streams(3)[1].random()


def test_run_float32_keeps_dtype_in_saved_model(tmp_path):
    config = load_config(CONFIGS / "mlp_wine.toml", ["model.dtype=float32", "training.epochs=3"])

    result = runner.run(config, out=tmp_path / "run", progress=False)

    assert result.status == "completed"
    with np.load(tmp_path / "run" / "model.npz") as arrays:
        assert {arrays[name].dtype for name in arrays.files} == {np.dtype(np.float32)}


def test_runs_path_is_file_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "runs").write_text("not a directory")
    monkeypatch.chdir(tmp_path)

    code = cli.main(["run", str(CONFIGS / "softmax_iris.toml"), "--quiet"])

    error = capsys.readouterr().err.strip()
    assert code != 0
    assert error.startswith("minilearn: error: ")
    assert "runs" in error
    assert len(error.splitlines()) == 1
