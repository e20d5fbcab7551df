"""The two flagship experiments and their sweep machinery, run end to end on the quick budget."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minilearn import sweep
from minilearn.config import ConfigError, load_config, resolve_config
from minilearn.experiments import mse_vs_ce, report, run_experiment, stable_vs_naive
from minilearn.gradcheck import numerical_gradient
from minilearn.layers import Temperature
from minilearn.runner import build_model, output_cross_entropy, run, seed_streams

REPO = Path(__file__).resolve().parent.parent
EXPERIMENT_CONFIGS = REPO / "configs" / "experiments"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def python(*args, timeout=300):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def strict_json(path):
    def reject(constant):
        raise ValueError(f"non-standard JSON constant {constant} in {path}")
    return json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=reject)


def assert_png(path):
    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 10_000, path


def write_experiment(tmp_path, text):
    path = tmp_path / "experiment.toml"
    path.write_text(text.replace("BASE", str(REPO / "configs" / "softmax_digits.toml")))
    return path


# End to end on the quick budget


@pytest.fixture(scope="module")
def mse_quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("mse") / "out"
    result = python("experiments/mse_vs_ce.py", "--quick", "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    return out, result


@pytest.fixture(scope="module")
def stable_quick_one_job(tmp_path_factory):
    out = tmp_path_factory.mktemp("stable1") / "out"
    result = python("-m", "minilearn", "experiment", "stable_vs_naive", "--quick", "--out", out,
                    "--jobs", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def stable_quick_two_jobs(tmp_path_factory):
    out = tmp_path_factory.mktemp("stable2") / "out"
    result = python("experiments/stable_vs_naive.py", "--quick", "--out", out, "--jobs", "2",
                    "--quiet")
    assert result.returncode == 0, result.stderr
    return out


def test_mse_vs_ce_quick_writes_figures(mse_quick):
    out, result = mse_quick

    assert f"experiment directory: {out}" in result.stdout
    for name in ("mse_vs_ce_digits_softmax.png", "mse_vs_ce_breast_cancer_mlp.png",
                 "gradient_vs_margin.png"):
        assert_png(out / name)


def test_mse_vs_ce_summary_has_every_run(mse_quick):
    out, _ = mse_quick
    summary = strict_json(out / "summary.json")

    assert summary["experiment"] == "mse_vs_ce"
    assert summary["budget"] == "quick"
    assert summary["seeds"] == [0, 1]
    assert summary["learning_rates"] == "search"
    assert set(summary["scenarios"]) == {"digits_softmax", "breast_cancer_mlp"}
    for scenario in summary["scenarios"].values():
        assert set(scenario["variants"]) == {"cross_entropy", "mse_softmax", "mse_logits"}
        for variant in scenario["variants"].values():
            assert set(variant["seeds"]) == {"0", "1"}
            assert variant["lr"] in (0.03, 0.3)
            assert variant["lr_search"]["chosen"] == variant["lr"]
            assert [row["lr"] for row in variant["lr_search"]["rates"]] == [0.03, 0.3]
            assert variant["test_accuracy"]["n_seeds"] == 2
            for seed in variant["seeds"].values():
                assert 0 <= seed["test_accuracy"] <= 1
                assert math.isfinite(seed["test_cross_entropy"])
                assert (out / seed["run"] / "metrics.json").is_file()


def test_mse_vs_ce_variants_use_their_losses(mse_quick):
    out, _ = mse_quick
    variants = strict_json(out / "summary.json")["scenarios"]["digits_softmax"]["variants"]

    assert (variants["cross_entropy"]["loss"], variants["cross_entropy"]["model_output"]) \
        == ("cross_entropy", "logits")
    assert (variants["mse_softmax"]["loss"], variants["mse_softmax"]["model_output"]) \
        == ("mse", "softmax")
    assert (variants["mse_logits"]["loss"], variants["mse_logits"]["model_output"]) \
        == ("mse", "logits")


def test_mse_vs_ce_markdown_table(mse_quick):
    out, _ = mse_quick
    text = (out / "summary.md").read_text(encoding="utf-8")

    assert "experiments/mse_vs_ce.py --quick" in text
    assert "| variant | lr | final val accuracy | test accuracy |" in text
    assert "`mse_softmax`" in text
    assert "## Learning-rate search" in text
    assert "![gradient against margin](gradient_vs_margin.png)" in text


def test_stable_vs_naive_quick_writes_figures(stable_quick_one_job):
    out = stable_quick_one_job

    for name in ("stable_vs_naive_raw_high_lr.png", "stable_vs_naive_temperature_float32.png",
                 "stable_vs_naive_probe.png"):
        assert_png(out / name)
    assert (out / "summary.md").read_text().startswith("# Stable against naive")


def test_stable_vs_naive_summary_has_every_run(stable_quick_one_job):
    summary = strict_json(stable_quick_one_job / "summary.json")

    assert set(summary["scenarios"]) == {"raw_high_lr", "temperature_float32"}
    for scenario in summary["scenarios"].values():
        assert set(scenario["variants"]) == {"cross_entropy", "naive", "naive_clip"}
        for variant in scenario["variants"].values():
            assert set(variant["seeds"]) == {"0", "1"}


def test_naive_failure_recorded_where_built_to_break(stable_quick_one_job):
    variants = strict_json(stable_quick_one_job / "summary.json")["scenarios"]["raw_high_lr"][
        "variants"]

    naive = variants["naive"]
    assert naive["seeds_with_nonfinite"] == 2
    for seed in naive["seeds"].values():
        failure = seed["first_nonfinite"]
        assert failure["epoch"] >= 1
        assert failure["step"] >= 0
        assert failure["global_step"] >= failure["step"]
        assert failure["quantity"]
        assert seed["final_outputs_finite"] is False
        manifest = strict_json(stable_quick_one_job / seed["run"] / "manifest.json")
        assert manifest["first_nonfinite"] == failure


def test_stable_path_finite_where_naive_breaks(stable_quick_one_job):
    out = stable_quick_one_job
    stable = strict_json(out / "summary.json")["scenarios"]["raw_high_lr"]["variants"][
        "cross_entropy"]

    assert stable["seeds_with_nonfinite"] == 0
    for seed in stable["seeds"].values():
        assert seed["first_nonfinite"] is None
        assert seed["final_outputs_finite"] is True
        assert seed["test_accuracy"] > 0.5
        metrics = strict_json(out / seed["run"] / "metrics.json")
        assert all(epoch["nonfinite_steps"] == 0 for epoch in metrics["epochs"])
        assert all(math.isfinite(epoch["train_loss"]) for epoch in metrics["epochs"])


def test_probe_marks_overflow_and_underflow(stable_quick_one_job):
    probe = strict_json(stable_quick_one_job / "summary.json")["probe"]

    assert probe["limits"]["float32"]["overflow"] == pytest.approx(88.72, abs=0.01)
    assert probe["limits"]["float64"]["overflow"] == pytest.approx(709.78, abs=0.01)
    assert 88 < probe["limits"]["float32"]["underflow"] < 110
    assert 700 < probe["limits"]["float64"]["underflow"] < 800
    for case in ("true_largest", "true_smallest"):
        for dtype in ("float32", "float64"):
            assert probe["results"][case][dtype]["cross_entropy"]["first_failure"] is None
    largest = probe["results"]["true_largest"]
    assert 88.72 < largest["float32"]["naive"]["first_nonfinite"] < 100
    assert 709.78 < largest["float64"]["naive"]["first_nonfinite"] < 800
    clipped = probe["results"]["true_smallest"]["float64"]["naive_clip"]
    assert clipped["first_nonfinite"] is None
    assert clipped["first_failure"] < 20


def test_jobs_one_and_two_give_same_numbers(stable_quick_one_job, stable_quick_two_jobs):
    one = strict_json(stable_quick_one_job / "summary.json")
    two = strict_json(stable_quick_two_jobs / "summary.json")

    assert one["scenarios"] == two["scenarios"]
    assert one["probe"] == two["probe"]
    metrics = sorted(stable_quick_one_job.glob("runs/*/*/*/metrics.json"))
    assert len(metrics) == 12
    for path in metrics:
        twin = stable_quick_two_jobs / path.relative_to(stable_quick_one_job)
        assert path.read_bytes() == twin.read_bytes(), path


def test_shared_lr_gives_every_run_one_rate(tmp_path):
    path = write_experiment(tmp_path, """
experiment = "mse_vs_ce"
seeds = [3]
set = { "training.epochs" = 1 }
[lr_search]
grid = [0.01, 0.1]
[scenarios.digits]
base = "BASE"
[variants.cross_entropy]
set = { "loss.name" = "cross_entropy" }
[variants.mse_softmax]
set = { "loss.name" = "mse", "model.output" = "softmax" }
""")

    result = run_experiment("mse_vs_ce", config=path, out=tmp_path / "out", shared_lr=0.02)

    assert result.summary["learning_rates"] == "shared"
    assert not (tmp_path / "out" / "lr_search").exists()
    for variant in result.summary["scenarios"]["digits"]["variants"].values():
        assert variant["lr"] == 0.02
        assert variant["lr_search"] is None
    assert "the same learning rate, 0.02" in (tmp_path / "out" / "summary.md").read_text()


# Config of an experiment


def test_variants_share_initial_weights():
    experiment = sweep.load_experiment(EXPERIMENT_CONFIGS / "mse_vs_ce.toml",
                                       experiment_keys=mse_vs_ce.EXPERIMENT_KEYS,
                                       scenario_keys=mse_vs_ce.SCENARIO_KEYS)
    scenario = experiment.scenarios["digits_mlp"]
    weights = []
    for variant in experiment.variants.values():
        config = sweep.run_config(experiment, scenario, variant, seed=4)
        init_rng, _ = seed_streams(config["seed"])
        model = build_model(config["model"], 64, 10, init_rng)
        weights.append(model.state_dict())

    for other in weights[1:]:
        assert other.keys() == weights[0].keys()
        for name in weights[0]:
            np.testing.assert_array_equal(other[name], weights[0][name])


def test_quick_replaces_seeds_and_scenarios():
    full = sweep.load_experiment(EXPERIMENT_CONFIGS / "stable_vs_naive.toml",
                                 experiment_keys=stable_vs_naive.EXPERIMENT_KEYS)
    quick = sweep.load_experiment(EXPERIMENT_CONFIGS / "stable_vs_naive.toml", quick=True,
                                  experiment_keys=stable_vs_naive.EXPERIMENT_KEYS)

    assert full.seeds == (0, 1, 2, 3, 4)
    assert len(full.scenarios) == 5
    assert quick.seeds == (0, 1)
    assert list(quick.scenarios) == ["raw_high_lr", "temperature_float32"]
    scenario, variant = quick.scenarios["raw_high_lr"], quick.variants["naive_clip"]
    config = sweep.run_config(quick, scenario, variant, seed=1)
    assert config["training"]["epochs"] == 3
    assert config["training"]["on_nonfinite"] == "continue"
    assert config["training"]["record_cross_entropy"] is True
    assert config["loss"] == {"name": "naive_cross_entropy", "clip": 1e-7, "reduction": "mean"}
    assert config["data"]["standardize"] is False
    assert config["optimizer"]["lr"] == 0.4


def test_new_loss_name_clears_old_options(tmp_path):
    base = tmp_path / "base.toml"
    base.write_text('[loss]\nname = "cross_entropy"\nlabel_smoothing = 0.1\n')
    path = tmp_path / "experiment.toml"
    path.write_text(f"""
experiment = "mse_vs_ce"
seeds = [0]
[scenarios.s]
base = "{base}"
[variants.mse]
set = {{ "loss.name" = "mse" }}
[variants.smooth]
set.loss.label_smoothing = 0.2
""")
    experiment = sweep.load_experiment(path)

    mse = sweep.run_config(experiment, experiment.scenarios["s"], experiment.variants["mse"], 0)
    smooth = sweep.run_config(experiment, experiment.scenarios["s"],
                              experiment.variants["smooth"], 0)

    assert mse["loss"]["name"] == "mse"
    assert "label_smoothing" not in mse["loss"]
    assert smooth["loss"]["name"] == "cross_entropy"
    assert smooth["loss"]["label_smoothing"] == 0.2


@pytest.mark.parametrize("text, message", [
    ('seeds = [0]\n[scenarios.s]\nbase = "BASE"\n[variants.v]\n', "'experiment' is missing"),
    ('experiment = "mse_vs_ce"\nseeds = []\n[scenarios.s]\nbase = "BASE"\n[variants.v]\n',
     "seeds = [] is invalid"),
    ('experiment = "mse_vs_ce"\nseeds = [0, 0]\n[scenarios.s]\nbase = "BASE"\n[variants.v]\n',
     "repeats a seed"),
    ('experiment = "mse_vs_ce"\nseeds = [0]\n[variants.v]\n', "no scenarios"),
    ('experiment = "mse_vs_ce"\nseeds = [0]\n[scenarios.s]\nbase = "BASE"\n', "no variants"),
    ('experiment = "mse_vs_ce"\nseeds = [0]\n[scenarios.s]\nbase = "missing.toml"\n'
     '[variants.v]\n', "is not a file"),
    ('experiment = "mse_vs_ce"\nseeds = [0]\nsed = 1\n[scenarios.s]\nbase = "BASE"\n'
     '[variants.v]\n', "unknown key 'sed'"),
    ('experiment = "mse_vs_ce"\nseeds = [0]\n[lr_search]\ngrid = [0.1, -1]\n[scenarios.s]\n'
     'base = "BASE"\n[variants.v]\n', "lr_search.grid"),
])
def test_experiment_config_errors(tmp_path, text, message):
    path = write_experiment(tmp_path, text)

    with pytest.raises(ConfigError, match=re.escape(message)):
        sweep.load_experiment(path)


def test_bad_variant_key_names_variant(tmp_path):
    path = write_experiment(tmp_path, 'experiment = "mse_vs_ce"\nseeds = [0]\n[scenarios.s]\n'
                                      'base = "BASE"\n[variants.v]\nset = { "model.hiden" = [3] }\n')
    experiment = sweep.load_experiment(path)

    with pytest.raises(ConfigError, match="variant 'v'.*model.hiden"):
        sweep.plan_runs(experiment)


def test_cli_rejects_config_of_other_experiment():
    result = python("-m", "minilearn", "experiment", "mse_vs_ce", "--config",
                    EXPERIMENT_CONFIGS / "stable_vs_naive.toml", "--quick")

    assert result.returncode == 2
    assert "is a config of experiment 'stable_vs_naive'" in result.stderr


def test_cli_rejects_unknown_backend(tmp_path):
    result = python("-m", "minilearn", "experiment", "mse_vs_ce", "--quick", "--backend",
                    "nosuch", "--out", tmp_path / "out")

    assert result.returncode == 2
    assert "--backend nosuch" in result.stderr
    assert not (tmp_path / "out").exists()


# Config keys the experiments added


def test_temperature_layer_gradient():
    rng = np.random.default_rng(0)
    layer = Temperature(0.25)
    x = rng.normal(size=(3, 4))
    upstream = rng.normal(size=(3, 4))

    out = layer.forward(x)
    grad = layer.backward(upstream)

    np.testing.assert_allclose(out, x * 4)
    expected = numerical_gradient(lambda: float(np.sum(layer.forward(x) * upstream)), x)
    np.testing.assert_allclose(grad, expected, rtol=1e-6)


def test_temperature_keeps_float32():
    x = np.ones((2, 3), dtype=np.float32)

    assert Temperature(0.1).forward(x).dtype == np.float32
    assert Temperature(0.1).backward(x).dtype == np.float32


def test_temperature_in_model_config():
    default = resolve_config({})
    scaled = resolve_config({"model": {"temperature": 0.5, "output": "softmax"},
                             "loss": {"name": "mse"}})

    assert default["model"]["temperature"] == 1.0
    plain = build_model(default["model"], 4, 3, np.random.default_rng(0))
    model = build_model(scaled["model"], 4, 3, np.random.default_rng(0))
    assert not any(isinstance(layer, Temperature) for layer in plain.layers)
    assert isinstance(model.layers[-2], Temperature)
    assert model.output_kind == "probabilities"
    x = np.random.default_rng(1).normal(size=(5, 4))
    logits = x @ model.layers[0].params["weight"] / 0.5
    np.testing.assert_allclose(model.forward(x), np.exp(logits) / np.exp(logits).sum(
        axis=1, keepdims=True))
    with pytest.raises(ConfigError, match="model.temperature"):
        resolve_config({"model": {"temperature": 0}})


def test_record_cross_entropy_in_metrics(tmp_path):
    config = load_config(REPO / "configs" / "softmax_iris.toml",
                         ["training.epochs=2", "training.record_cross_entropy=true",
                          "loss.name=\"mse\"", "model.output=\"softmax\""])

    result = run(config, out=tmp_path / "run", progress=False)

    metrics = strict_json(tmp_path / "run" / "metrics.json")
    assert all(math.isfinite(epoch["val_cross_entropy"]) for epoch in metrics["epochs"])
    assert metrics["test"]["cross_entropy"] == result.test["cross_entropy"]
    assert resolve_config({})["training"]["record_cross_entropy"] is False


def test_output_cross_entropy_uses_logits_before_softmax():
    config = resolve_config({"model": {"output": "softmax"}, "loss": {"name": "mse"}})
    model = build_model(config["model"], 2, 3, np.random.default_rng(0))
    model.layers[0].params["weight"][...] = [[800.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    X = np.array([[1.0, 0.0]])
    y = np.array([1])

    value = output_cross_entropy(model, X, y)

    assert model.forward(X)[0, 1] == 0.0
    assert value == pytest.approx(800.0)


# Analysis pieces


def test_mse_gradient_vanishes_when_confidently_wrong():
    margins, gradients = mse_vs_ce.true_class_gradients([-10.0, 0.0, 10.0], 10)

    ce, mse = gradients["cross_entropy"], gradients["mse_softmax"]
    assert ce[0] == pytest.approx(-1.0, abs=1e-3)
    assert abs(mse[0]) < 1e-4 * abs(ce[0])
    assert mse[0] < 0 and mse[1] < 0
    assert abs(mse[1]) > 100 * abs(mse[0])
    # CE's own gradient is p_y - 1; at margin 0 with 10 classes p_y = 0.1.
    assert ce[1] == pytest.approx(-0.9)


def test_reference_matches_stable_loss():
    logits = np.array([[3.0, -1.0, 0.5], [1000.0, 0.0, -1000.0]])
    targets = np.array([2, 1])

    loss, gradient = stable_vs_naive.reference_loss_and_gradient(logits, targets)

    expected = np.log(np.exp(logits[0]).sum()) - 0.5
    assert loss[0] == pytest.approx(expected)
    assert loss[1] == pytest.approx(1000.0)
    np.testing.assert_allclose(gradient.sum(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(gradient[1], [1.0, -1.0, 0.0], atol=1e-12)


def test_seed_band_marks_broken_seed():
    figure = report.new_figure(4, 3)
    axes = figure.subplots()
    matrix = np.array([[1.0, 0.5, 0.3, 0.2], [1.1, 0.6, np.nan, np.nan]])

    marked = report.draw_seed_band(axes, matrix, label="loss", color="C0")

    assert marked
    mean_line = axes.get_lines()[0]
    np.testing.assert_array_equal(mean_line.get_xdata(), [1, 2])
    np.testing.assert_allclose(mean_line.get_ydata(), [1.05, 0.55])
    markers = [line for line in axes.get_lines() if line.get_marker() == "x"]
    assert len(markers) == 1
    np.testing.assert_array_equal(markers[0].get_xdata(), [2])


def test_seed_band_without_finite_values():
    figure = report.new_figure(4, 3)
    axes = figure.subplots()

    marked = report.draw_seed_band(axes, np.full((2, 3), np.nan), label="naive", color="C1")

    assert marked
    assert "naive (no finite epoch)" in axes.get_legend_handles_labels()[1]


def test_seed_statistics_skip_nonfinite():
    stats = report.seed_statistics([0.5, None, 0.7, float("nan")])

    assert stats["mean"] == pytest.approx(0.6)
    assert stats["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert (stats["n"], stats["n_seeds"]) == (2, 4)
    assert report.format_statistics(stats) == "0.600 ± 0.141 (2 of 4 finite)"
