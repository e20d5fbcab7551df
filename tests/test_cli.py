"""The minilearn command line, run as a user would run it, in a subprocess."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"


def minilearn(*args, cwd=None, env_update=None, timeout=120):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_update or {})
    return subprocess.run([sys.executable, "-m", "minilearn", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)


def strict_json(path):
    def reject(constant):
        raise ValueError(f"non-standard JSON constant {constant} in {path}")
    return json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=reject)


def test_run_writes_every_file(tmp_path):
    out = tmp_path / "run"

    result = minilearn("run", CONFIGS / "mlp_digits.toml", "--out", out, "--quiet",
                       "--set", "training.epochs=3")

    assert result.returncode == 0, result.stderr
    assert f"run directory: {out}" in result.stdout
    assert "test accuracy: " in result.stdout
    names = {path.name for path in out.iterdir()}
    assert names == {"config.toml", "manifest.json", "metrics.csv", "metrics.json",
                     "loss_curve.png", "model.npz"}

    config = tomllib.loads((out / "config.toml").read_text())
    assert config["training"]["epochs"] == 3
    assert config["model"]["hidden"] == [64]
    assert config["data"]["name"] == "digits"

    manifest = strict_json(out / "manifest.json")
    assert manifest["status"] == "completed"
    assert manifest["seed"] == 0
    assert manifest["started"] and manifest["ended"]
    assert "run" in manifest["command"]
    for package in ("python", "numpy", "scikit-learn"):
        assert manifest["versions"][package]

    metrics = strict_json(out / "metrics.json")
    assert [record["epoch"] for record in metrics["epochs"]] == [1, 2, 3]
    for record in metrics["epochs"]:
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
            assert isinstance(record[key], float), key
        assert "seconds" not in record
    assert 0.8 < metrics["test"]["accuracy"] <= 1.0
    assert metrics["test"]["loss"] > 0

    with open(out / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3]
    assert float(rows[-1]["val_loss"]) == metrics["epochs"][-1]["val_loss"]
    assert float(rows[0]["seconds"]) > 0

    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with np.load(out / "model.npz", allow_pickle=False) as arrays:
        assert set(arrays.files) == {"0.weight", "0.bias", "2.weight", "2.bias"}
        assert arrays["0.weight"].shape == (64, 64)


def test_saved_config_repeats_the_run(tmp_path):
    first = tmp_path / "first"
    second = tmp_path / "second"
    assert minilearn("run", CONFIGS / "softmax_iris.toml", "--out", first, "--quiet",
                     "--set", "training.epochs=4").returncode == 0

    result = minilearn("run", first / "config.toml", "--out", second, "--quiet")

    assert result.returncode == 0, result.stderr
    assert (first / "metrics.json").read_bytes() == (second / "metrics.json").read_bytes()
    assert (first / "model.npz").read_bytes() == (second / "model.npz").read_bytes()


def test_python_module_and_help():
    result = minilearn("--help")

    assert result.returncode == 0
    assert "run" in result.stdout
    assert "--out" in minilearn("run", "--help").stdout


@pytest.mark.parametrize("args, message", [
    (["run", "missing.toml"], "missing.toml: config file not found"),
    (["run", "{configs}/mlp_iris.toml", "--set", "optimiser.lr=1"], "did you mean 'optimizer'?"),
    (["run", "{configs}/mlp_iris.toml", "--set", "training.batch_size=0"], "training.batch_size = 0 is invalid"),
    (["run", "{configs}/mlp_iris.toml", "--set", "model.hidden=[64,"], "not valid TOML"),
    (["run", "{bad}"], "invalid TOML"),
])
def test_bad_input_one_line_exit_2(tmp_path, args, message):
    bad = tmp_path / "bad.toml"
    bad.write_text("[training]\nepochs = .5\n")
    args = [arg.format(configs=CONFIGS, bad=bad) for arg in args]

    result = minilearn(*args, cwd=tmp_path)

    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_out_directory_not_empty_needs_overwrite(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    args = ["run", CONFIGS / "softmax_iris.toml", "--out", out, "--quiet", "--set", "training.epochs=1"]

    refused = minilearn(*args)
    allowed = minilearn(*args, "--overwrite")

    assert refused.returncode == 2
    assert "--overwrite" in refused.stderr
    assert allowed.returncode == 0, allowed.stderr
    assert (out / "notes.txt").read_text() == "keep me"


def test_progress_bar_not_in_logs(tmp_path):
    result = minilearn("run", CONFIGS / "softmax_iris.toml", "--out", tmp_path / "run",
                       "--set", "training.epochs=5")

    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr
    assert "epoch 5/5" in result.stderr


def test_plot_written_without_display(tmp_path):
    env = {"MPLBACKEND": "TkAgg"}
    env_without_display = {key: value for key, value in os.environ.items() if key != "DISPLAY"}
    env_without_display.update(env)

    result = subprocess.run(
        [sys.executable, "-m", "minilearn", "run", str(CONFIGS / "softmax_iris.toml"), "--out",
         str(tmp_path / "run"), "--quiet", "--set", "training.epochs=2"],
        env={**env_without_display, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=120)

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "loss_curve.png").stat().st_size > 1000


def test_diverged_run_keeps_finite_epochs_and_strict_json(tmp_path):
    out = tmp_path / "run"

    result = minilearn("run", CONFIGS / "softmax_digits.toml", "--out", out, "--quiet",
                       "--set", "loss.name=naive_cross_entropy", "--set", "data.standardize=false",
                       "--set", "optimizer.lr=50", "--set", "training.epochs=20")

    assert result.returncode == 1
    assert "diverged at epoch" in result.stderr
    assert "lower the learning rate" in result.stderr
    manifest = strict_json(out / "manifest.json")
    assert manifest["status"] == "diverged"
    metrics = strict_json(out / "metrics.json")
    assert metrics["status"] == "diverged"
    for record in metrics["epochs"]:
        assert np.isfinite(record["train_loss"])
    assert metrics["first_nonfinite"]["epoch"] == len(metrics["epochs"]) + 1


def test_runs_started_together_never_share_a_directory(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "minilearn", "run", str(CONFIGS / "softmax_iris.toml"),
               "--quiet", "--set", "training.epochs=1"]

    processes = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE) for _ in range(4)]
    codes = [process.wait(timeout=120) for process in processes]

    assert codes == [0, 0, 0, 0]
    directories = sorted((tmp_path / "runs").iterdir())
    assert len(directories) == 4
    for directory in directories:
        assert strict_json(directory / "manifest.json")["status"] == "completed"


def test_sigint_keeps_completed_epochs(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen(
        [sys.executable, "-m", "minilearn", "run", str(CONFIGS / "mlp_digits.toml"), "--out",
         str(out), "--quiet", "--set", "training.epochs=100000", "--set", "training.batch_size=8"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    deadline = time.monotonic() + 60
    while not (out / "metrics.csv").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    manifest = strict_json(out / "manifest.json")
    assert manifest["status"] == "interrupted"
    metrics = strict_json(out / "metrics.json")
    assert len(metrics["epochs"]) >= 1
    assert [record["epoch"] for record in metrics["epochs"]] == list(range(1, len(metrics["epochs"]) + 1))
    assert (out / "model.npz").exists()


def test_unset_lets_shipped_config_switch_to_adam(tmp_path):
    result = minilearn("run", CONFIGS / "mlp_iris.toml", "--out", tmp_path / "run", "--quiet",
                       "--set", "optimizer.name=adam", "--set", "optimizer.lr=0.01",
                       "--unset", "optimizer.momentum", "--set", "training.epochs=2")

    assert result.returncode == 0, result.stderr
    config = tomllib.loads((tmp_path / "run" / "config.toml").read_text())
    assert config["optimizer"]["name"] == "adam"
    assert "momentum" not in config["optimizer"]


@pytest.mark.parametrize("args, message", [
    (["run", "{configs}/mlp_iris.toml", "--set", "optimizer.name=adam"],
     "mlp_iris.toml with --set/--unset: unknown key 'optimizer.momentum' for optimizer 'adam' "
     "(its options: "),
    (["run", "{configs}/mlp_iris.toml", "--set", "optimizer.name=adam"],
     "remove it from the config or with --unset optimizer.momentum"),
    (["run", "{configs}/mlp_iris.toml", "--unset", "optimizer.nesterov"],
     "--unset optimizer.nesterov: the config does not set 'optimizer.nesterov'"),
    (["run", "{configs}/mlp_iris.toml", "--set", "optimizer.lr=.5"],
     "write numbers with a digit before the point (0.5, not .5)"),
    (["run", "{configs}/mlp_iris.toml", "--set", "optimizer.lr=nan"],
     "optimizer.lr = nan is not a finite number; use a finite value"),
    (["run", "{configs}/mlp_iris.toml", "--set", "foo.bar=1"],
     "unknown config key 'foo'; valid keys here: "),
    (["run", "{configs}/mlp_iris.toml", "--set", "training.epochs.x=1"],
     "training.epochs is a value, not a table; set it with --set training.epochs=VALUE"),
    (["run", "{configs}"], "is a directory, not a config file"),
    (["replay", "{configs}/no-such-run"], "run directory not found"),
    (["experiment", "no_such_experiment"], "invalid choice: 'no_such_experiment'"),
    (["run"], "the following arguments are required: CONFIG"),
])
def test_more_bad_input_one_line_exit_2(tmp_path, args, message):
    args = [arg.format(configs=CONFIGS) for arg in args]

    result = minilearn(*args, cwd=tmp_path)

    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_option_points_to_command_help():
    result = minilearn("run", "configs/mlp_iris.toml", "--bogus")

    assert result.returncode == 2
    assert result.stderr == ("minilearn: error: unrecognized arguments: --bogus; "
                             "see minilearn run --help\n")
