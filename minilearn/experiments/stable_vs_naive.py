"""Stable against naive softmax cross-entropy: figures and summary of the sweep, and a probe.

The variants are the stable fused log-softmax + NLL (``cross_entropy``), the naive
softmax -> log -> NLL (``naive_cross_entropy``) and the naive one with the common
1e-7 clip. The scenarios make the logits large: raw features, a temperature below
1, and float32 against float64. The runs keep training after a non-finite loss or
gradient (``training.on_nonfinite = "continue"``), so the summary can give the
epoch and step of each seed's first failure and the accuracy the run ended with.

The probe trains nothing. It scales a fixed logit vector from 1 to 1e4 and
compares each variant's loss and gradient, in float32 and float64, with a float64
log-sum-exp reference.

Files: ``stable_vs_naive_<scenario>.png`` per scenario, ``stable_vs_naive_probe.png``,
``summary.json`` and ``summary.md``.
"""

import logging
import math

import numpy as np

from minilearn.config import ConfigError, make_loss_from_config
from minilearn.experiments import report

logger = logging.getLogger(__name__)

EXPERIMENT_KEYS = ("band", "probe")
SCENARIO_KEYS = ()

PROBE_DEFAULTS = {"classes": 10, "points": 400, "max_scale": 1e4, "error_threshold": 1e-3}

# Each probe case: (title, sign of the true-class logit). The other logits are 0.
PROBE_CASES = {
    "true_largest": ("true class largest: z = s·(1, 0, ..., 0)", 1.0),
    "true_smallest": ("true class smallest: z = s·(-1, 0, ..., 0)", -1.0),
}
PROBE_DTYPES = ("float32", "float64")
DTYPE_STYLES = {"float64": "-", "float32": "--"}

# Errors are drawn on a log axis, so exact zeros are drawn at this floor.
ERROR_FLOOR = 1e-18


def check_options(experiment):
    """Check the keys this analysis reads; raises ConfigError naming the bad one."""
    source = experiment.path
    band = experiment.options.get("band", "std")
    if band not in ("std", "minmax"):
        raise ConfigError(f"{source}: band = {band!r} is invalid; expected \"std\" or \"minmax\"")
    probe = experiment.options.get("probe", {})
    if not isinstance(probe, dict):
        raise ConfigError(f"{source}: probe must be a table ([probe]), got {probe!r}")
    for key, value in probe.items():
        if key not in PROBE_DEFAULTS:
            raise ConfigError(f"{source}: unknown key 'probe.{key}'; expected one of "
                              f"{', '.join(PROBE_DEFAULTS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"{source}: probe.{key} = {value!r} is invalid; expected a "
                              "positive number")
    options = probe_options(experiment)
    if options["classes"] < 2 or options["points"] < 2 or options["max_scale"] <= 1:
        raise ConfigError(f"{source}: [probe] needs classes >= 2, points >= 2 and "
                          f"max_scale > 1, got {probe}")


def probe_options(experiment):
    """Return the probe's settings: the config's [probe] table over the defaults."""
    options = {**PROBE_DEFAULTS, **experiment.options.get("probe", {})}
    options["classes"] = int(options["classes"])
    options["points"] = int(options["points"])
    return options


def analyze(result):
    """Draw the figures, run the probe and return (summary dict, Markdown sections)."""
    experiment = result.experiment
    band = experiment.options.get("band", "std")
    scenarios = {}
    sections = [_method_section(experiment, band)]

    for scenario in experiment.scenarios.values():
        variants = {variant.name: _variant_summary(result, scenario, variant)
                    for variant in experiment.variants.values()}
        figure_name = f"stable_vs_naive_{scenario.name}.png"
        _draw_scenario(result, scenario, band, result.out / figure_name)
        config = result.runs(scenario.name, next(iter(experiment.variants)))[0].spec.config
        scenarios[scenario.name] = {"label": scenario.label, "figure": figure_name,
                                    "lr": config["optimizer"]["lr"],
                                    "dtype": config["model"]["dtype"],
                                    "temperature": config["model"]["temperature"],
                                    "standardize": config["data"]["standardize"],
                                    "variants": variants}
        sections.append(_scenario_section(scenario, scenarios[scenario.name], figure_name))

    options = probe_options(experiment)
    losses = {variant.name: _loss_table(result, variant.name)
              for variant in experiment.variants.values()}
    probe = run_probe(losses, options)
    draw_probe_figure(probe, experiment.variants, result.out / "stable_vs_naive_probe.png")
    sections.append(_probe_section(probe, experiment.variants))
    return {"band": band, "scenarios": scenarios, "probe": _probe_summary(probe)}, sections


def _loss_table(result, variant):
    record = next(record for record in result.records if record.spec.variant == variant)
    return record.spec.config["loss"]


# Numbers per variant


def _variant_summary(result, scenario, variant):
    runs = result.runs(scenario.name, variant.name)
    seeds = {}
    for record in runs:
        outputs_finite = math.isfinite(record.final("val_cross_entropy"))
        seeds[str(record.spec.seed)] = {
            "run": record.spec.directory,
            "status": record.status,
            "first_nonfinite": record.first_nonfinite,
            "nonfinite_steps": int(np.nansum(record.series("nonfinite_steps"))),
            "final_train_loss": record.final("train_loss"),
            "final_val_accuracy": record.final("val_accuracy"),
            "test_accuracy": record.test.get("accuracy"),
            "final_outputs_finite": outputs_finite,
        }

    failures = [entry["first_nonfinite"] for entry in seeds.values()
                if entry["first_nonfinite"] is not None]
    return {
        "label": variant.label,
        "loss": runs[0].spec.config["loss"],
        "seeds_with_nonfinite": len(failures),
        "first_nonfinite_epoch": report.seed_statistics([failure["epoch"] for failure in failures]),
        "first_nonfinite_global_step": report.seed_statistics(
            [failure["global_step"] for failure in failures]),
        "final_val_accuracy": report.seed_statistics(
            [entry["final_val_accuracy"] for entry in seeds.values()]),
        "test_accuracy": report.seed_statistics([entry["test_accuracy"] for entry in seeds.values()]),
        "seeds": seeds,
    }


# Markdown


def _method_section(experiment, band):
    what = "min to max" if band == "minmax" else "one standard deviation (ddof=1)"
    return "\n".join([
        "## Method",
        "",
        "Variants: " + "; ".join(f"`{variant.name}`: {variant.label}"
                                 for variant in experiment.variants.values()) + ".",
        "All variants of a seed share the data split, the initial weights and the batch order. "
        "Training goes on after a non-finite loss or gradient, and the update of that step is "
        "applied, so a NaN gradient turns the weights into NaN for the rest of the run.",
        "\"first non-finite\" gives, per seed, the epoch and the step within it (both as the "
        "run's metrics.json records them, epochs from 1 and steps from 0) of the first step "
        "whose loss or gradient was NaN or inf.",
        "A model whose outputs are NaN predicts class 0 for every sample (the argmax of a NaN "
        "row), so its accuracy is the share of class 0. Such runs are marked \"NaN outputs\".",
        f"Figures show the mean over seeds with {what} shaded, until the first epoch at which "
        "some seed is no longer finite. From there each seed is a thin line that ends with an "
        "x at its last finite value. Validation accuracy is drawn only while the model's "
        "outputs are finite.",
    ])


def _scenario_section(scenario, entry, figure_name):
    headers = ["variant", "seeds with a non-finite value", "first non-finite (seed: epoch/step)",
               "final val accuracy", "test accuracy"]
    rows = []
    for name, variant in entry["variants"].items():
        failures = []
        for seed, run in variant["seeds"].items():
            failure = run["first_nonfinite"]
            if failure is not None:
                failures.append(f"{seed}: {failure['epoch']}/{failure['step']} "
                                f"({failure['quantity']})")
        broken = sum(not run["final_outputs_finite"] for run in variant["seeds"].values())
        accuracy = report.format_statistics(variant["final_val_accuracy"])
        if broken:
            accuracy += f"; {broken} of {len(variant['seeds'])} with NaN outputs"
        rows.append([f"`{name}`", f"{variant['seeds_with_nonfinite']} of {len(variant['seeds'])}",
                     "; ".join(failures) or "none", accuracy,
                     report.format_statistics(variant["test_accuracy"])])
    settings = (f"learning rate {entry['lr']:g}, {entry['dtype']}, temperature "
                f"{entry['temperature']:g}, features "
                f"{'standardized' if entry['standardize'] else 'raw (not standardized)'}")
    return "\n".join([f"## {scenario.label}", "", settings + ".", "",
                      report.markdown_table(headers, rows), "", f"![{scenario.label}]({figure_name})"])


def _probe_section(probe, variants):
    threshold = probe["options"]["error_threshold"]
    headers = ["case", "dtype"] + [f"`{name}`" for name in variants]
    rows = []
    for case, (title, _sign) in PROBE_CASES.items():
        for dtype in PROBE_DTYPES:
            cells = [_describe_failure(probe["results"][case][dtype][name], threshold,
                                       probe["options"]["max_scale"])
                     for name in variants]
            rows.append([title, dtype] + cells)
    limits = probe["limits"]
    lines = [
        "## Probe: loss and gradient against a float64 log-sum-exp reference",
        "",
        f"{probe['options']['classes']} classes and {probe['options']['points']} logit scales s "
        f"from 1 to {probe['options']['max_scale']:g}, spaced evenly in log s. The error is "
        "|value - reference| / (1 + |reference|) for the loss, and the same with Euclidean "
        "norms for the gradient, both computed on the logits as rounded to the dtype. A variant "
        f"fails where either error exceeds {threshold:g} or a value is NaN or inf. The scales "
        "lie on a grid, so a failure is reported at the first grid scale past it.",
        "",
        f"exp overflows above log(max) = {limits['float32']['overflow']:.2f} in float32 and "
        f"{limits['float64']['overflow']:.2f} in float64. In the true-class-smallest case the "
        "naive softmax rounds the true class's probability to 0 from s = "
        f"{_format_scale(limits['float32']['underflow'])} in float32 and s = "
        f"{_format_scale(limits['float64']['underflow'])} in float64. Its gradient fails "
        "earlier, near the overflow scale, because the backward pass of the log divides by "
        "p_y, and 1/p_y = (K - 1 + exp(-s)) exp(s) overflows a little before exp(s) does.",
        "",
        report.markdown_table(headers, rows),
        "",
        "![probe](stable_vs_naive_probe.png)",
    ]
    return "\n".join(lines)


def _describe_failure(entry, threshold, max_scale):
    if entry["first_failure"] is None:
        return f"correct to s = {max_scale:g} (max error {entry['max_error']:.1e})"
    text = f"fails from s = {_format_scale(entry['first_failure'])}"
    if entry["first_nonfinite"] is None:
        return text + f" (error > {threshold:g}, stays finite)"
    if entry["first_nonfinite"] == entry["first_failure"]:
        return text + " (NaN or inf)"
    return text + f" (error > {threshold:g}); NaN or inf from s = " \
        + _format_scale(entry["first_nonfinite"])


def _format_scale(scale):
    return "-" if scale is None else f"{scale:.4g}"


# The probe


def reference_loss_and_gradient(logits, targets):
    """Return the per-sample cross-entropy (N,) and its gradient (N, K) in float64.

    loss = logsumexp(z) - z_y and gradient = softmax(z) - onehot(y), with logsumexp
    written as m + log1p(sum over the non-maximal entries of exp(z - m)) for the
    row maximum m, so nothing overflows and small losses keep their digits.
    """
    logits = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(logits))
    top = np.argmax(logits, axis=1)
    row_max = logits[rows, top]
    shifted = np.exp(logits - row_max[:, None])
    shifted[rows, top] = 0.0
    log_sum_exp = row_max + np.log1p(shifted.sum(axis=1))

    loss = log_sum_exp - logits[rows, targets]
    gradient = np.exp(logits - log_sum_exp[:, None])
    gradient[rows, targets] -= 1.0
    return loss, gradient


def run_probe(loss_tables, options):
    """Compare each variant's loss and gradient with the reference over the logit scales.

    ``loss_tables`` maps a variant name to its resolved ``[loss]`` table. Returns a
    dict with the scales, the dtype limits and, per case, dtype and variant, the
    error arrays and the scale of the first failure.
    """
    scales = np.logspace(0, math.log10(options["max_scale"]), options["points"])
    results = {}
    for case, (_title, sign) in PROBE_CASES.items():
        direction = np.zeros(options["classes"])
        direction[0] = sign
        results[case] = {}
        for dtype in PROBE_DTYPES:
            logits = (scales[:, None] * direction[None, :]).astype(dtype)
            targets = np.zeros(len(scales), dtype=np.int64)
            reference = reference_loss_and_gradient(logits, targets)
            results[case][dtype] = {
                name: _probe_variant(table, logits, targets, reference, scales,
                                     options["error_threshold"])
                for name, table in loss_tables.items()}
    return {"scales": scales, "options": options, "results": results,
            "limits": {dtype: _dtype_limits(dtype, scales, options["classes"])
                       for dtype in PROBE_DTYPES}}


def _probe_variant(loss_table, logits, targets, reference, scales, threshold):
    loss = make_loss_from_config({**loss_table, "reduction": "none"})
    with np.errstate(all="ignore"):
        values = np.asarray(loss.forward(logits, targets), dtype=np.float64)
        gradient = np.asarray(loss.backward(), dtype=np.float64)

    reference_loss, reference_gradient = reference
    with np.errstate(all="ignore"):
        loss_error = np.abs(values - reference_loss) / (1 + np.abs(reference_loss))
        gradient_error = (np.linalg.norm(gradient - reference_gradient, axis=1)
                          / (1 + np.linalg.norm(reference_gradient, axis=1)))
    nonfinite = ~np.isfinite(values) | ~np.isfinite(gradient).all(axis=1)
    loss_error[~np.isfinite(loss_error)] = np.inf
    gradient_error[~np.isfinite(gradient_error)] = np.inf
    failed = nonfinite | (loss_error > threshold) | (gradient_error > threshold)
    finite_errors = np.concatenate([loss_error[~nonfinite], gradient_error[~nonfinite]])
    return {
        "loss_error": loss_error,
        "gradient_error": gradient_error,
        "first_nonfinite": _first_scale(scales, nonfinite),
        "first_failure": _first_scale(scales, failed),
        "max_error": float(finite_errors.max()) if finite_errors.size else None,
    }


def _first_scale(scales, mask):
    return float(scales[np.argmax(mask)]) if mask.any() else None


def _dtype_limits(dtype, scales, classes):
    """Return where exp overflows and where the naive softmax rounds p_y to 0, for one dtype."""
    dtype = np.dtype(dtype)
    overflow = float(np.log(np.finfo(dtype).max))
    logits = -scales.astype(dtype)
    with np.errstate(all="ignore"):
        exps = np.exp(logits)
        probability = exps / (exps + dtype.type(classes - 1))
    underflow = _first_scale(scales, probability == 0)
    return {"overflow": overflow, "underflow": underflow}


def _probe_summary(probe):
    results = {}
    for case, by_dtype in probe["results"].items():
        results[case] = {}
        for dtype, by_variant in by_dtype.items():
            results[case][dtype] = {
                name: {key: entry[key] for key in ("first_failure", "first_nonfinite",
                                                   "max_error")}
                for name, entry in by_variant.items()}
    return {"options": probe["options"], "limits": probe["limits"],
            "cases": {case: title for case, (title, _sign) in PROBE_CASES.items()},
            "results": results}


def draw_probe_figure(probe, variants, path):
    """Draw the loss and gradient errors against the logit scale, one row per case."""
    figure = report.new_figure(12, 8.5)
    grid = figure.subplots(2, 2, sharex=True)
    scales = probe["scales"]
    colors = {name: f"C{index}" for index, name in enumerate(variants)}

    for row, (case, (title, _sign)) in enumerate(PROBE_CASES.items()):
        for column, key in enumerate(("loss_error", "gradient_error")):
            axes = grid[row][column]
            for dtype in PROBE_DTYPES:
                for name in variants:
                    entry = probe["results"][case][dtype][name]
                    _draw_error_line(axes, scales, entry[key], colors[name],
                                     DTYPE_STYLES[dtype], f"{name}, {dtype}")
            _draw_limits(axes, probe["limits"], case)
            axes.set_xscale("log")
            axes.set_yscale("log")
            axes.set_ylim(ERROR_FLOOR / 3, 1e3)
            axes.grid(True, alpha=0.3)
            quantity = "loss" if key == "loss_error" else "gradient"
            axes.set_title(f"{title}: {quantity}", fontsize="medium")
            axes.set_ylabel(f"{quantity} error, relative to 1 + |reference|")
            if row == 1:
                axes.set_xlabel("logit scale s (logit units)")
    grid[0][0].plot([], [], "kx", label="last finite value (then NaN or inf)")
    handles, labels = grid[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=4, fontsize="small")
    figure.suptitle(f"{probe['options']['classes']} classes, float64 log-sum-exp reference; "
                    f"errors of 0 are drawn at {ERROR_FLOOR:g}")
    report.save_figure(figure, path)


def _draw_error_line(axes, scales, errors, color, linestyle, label):
    finite = np.isfinite(errors)
    end = int(np.argmin(finite)) if not finite.all() else len(errors)
    shown = np.maximum(errors[:end], ERROR_FLOOR)
    axes.plot(scales[:end], shown, color=color, linestyle=linestyle, label=label)
    if end < len(errors) and end > 0:
        axes.plot([scales[end - 1]], [shown[-1]], marker="x", markersize=9, markeredgewidth=2,
                  color=color, linestyle="none")


def _draw_limits(axes, limits, case):
    from matplotlib.transforms import blended_transform_factory

    transform = blended_transform_factory(axes.transData, axes.transAxes)
    marks = []
    for dtype, limit in limits.items():
        # With the true class smallest, the naive backward pass divides by p_y = exp(-s) / ...,
        # and that reciprocal overflows at the same scale as exp(s).
        overflowing = "exp(s)" if case == "true_largest" else "1/p_y"
        marks.append((limit["overflow"], ":", "top",
                      f"{dtype} {overflowing} overflow: {limit['overflow']:.1f}"))
        if case == "true_smallest" and limit["underflow"] is not None:
            marks.append((limit["underflow"], "-.", "bottom",
                          f"{dtype} p_y = 0: {limit['underflow']:.1f}"))
    for scale, linestyle, end, text in marks:
        axes.axvline(scale, color="grey", linestyle=linestyle, linewidth=1.2)
        # Overflow labels hang from the top and underflow labels stand on the bottom,
        # so the two labels of one dtype do not overlap.
        height, alignment = (0.97, "right") if end == "top" else (0.03, "left")
        axes.text(scale, height, text, transform=transform, rotation=90, fontsize="x-small",
                  ha=alignment, va=end, color="dimgrey")


# Scenario figure


def _draw_scenario(result, scenario, band, path):
    figure = report.new_figure(12, 4.6)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    n_seeds = len(result.experiment.seeds)
    losses = []
    marked = False

    for index, variant in enumerate(result.experiment.variants.values()):
        runs = result.runs(scenario.name, variant.name)
        color = f"C{index}"
        loss = report.seed_matrix(runs, "train_loss")
        accuracy = report.seed_matrix(runs, "val_accuracy")
        # The accuracy of NaN outputs is an artefact of argmax, so it is left out.
        accuracy[~np.isfinite(report.seed_matrix(runs, "val_cross_entropy"))] = np.nan
        marked |= report.draw_seed_band(loss_axes, loss, label=variant.name, color=color,
                                       band=band, marker_level=index)
        marked |= report.draw_seed_band(accuracy_axes, accuracy, label=variant.name, color=color,
                                       band=band, marker_level=index)
        losses.append(loss)

    report.use_log_scale_if_wide(loss_axes, losses)
    if marked:
        loss_axes.plot([], [], "kx", label="last finite value (then NaN or inf)")
    report.finish_epoch_axes(loss_axes, "training loss", "cross-entropy (nats per sample)")
    accuracy_axes.set_ylim(-0.02, 1.02)
    report.finish_epoch_axes(accuracy_axes, "validation accuracy (while outputs are finite)",
            "accuracy (fraction correct)")
    figure.suptitle(f"{scenario.label}: {report.band_legend_note(band, n_seeds)}")
    report.save_figure(figure, path)

