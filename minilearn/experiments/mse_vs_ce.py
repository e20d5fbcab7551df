"""MSE against cross-entropy for classification: figures and summary of the sweep.

The variants compared in every scenario (dataset and model) are cross-entropy on
the logits, MSE on the softmax probabilities against one-hot targets and MSE on
the raw outputs against one-hot targets. All variants of a seed start from the
same weights, because the weights are drawn from the seed before the output
layer and the loss are chosen. Each variant gets its own learning rate from a grid,
chosen on the validation split, unless ``--shared-lr`` sets one for all.

Files: ``mse_vs_ce_<scenario>.png`` per scenario, ``gradient_vs_margin.png``,
``summary.json`` and ``summary.md``.
"""

import logging

import numpy as np

from minilearn.config import ConfigError
from minilearn.experiments import report
from minilearn.layers import Softmax
from minilearn.losses import MSE, CrossEntropy

logger = logging.getLogger(__name__)

EXPERIMENT_KEYS = ("band", "margin_classes")
SCENARIO_KEYS = ("target_accuracy",)

DEFAULT_TARGET_ACCURACY = 0.9

# Axis label of each training loss, in the units minilearn reports it.
LOSS_LABELS = {
    "cross_entropy": "cross-entropy (nats per sample)",
    "mse": "MSE (mean over samples and classes)",
}


def check_options(experiment):
    """Check the keys this analysis reads; raises ConfigError naming the bad one."""
    source = experiment.path
    band = experiment.options.get("band", "std")
    if band not in ("std", "minmax"):
        raise ConfigError(f"{source}: band = {band!r} is invalid; expected \"std\" or \"minmax\"")
    classes = experiment.options.get("margin_classes", 10)
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise ConfigError(f"{source}: margin_classes = {classes!r} is invalid; expected an "
                          "integer >= 2")
    for scenario in experiment.scenarios.values():
        target = scenario.options.get("target_accuracy", DEFAULT_TARGET_ACCURACY)
        if isinstance(target, bool) or not isinstance(target, (int, float)) \
                or not 0 < target <= 1:
            raise ConfigError(f"{source}: scenarios.{scenario.name}.target_accuracy = "
                              f"{target!r} is invalid; expected a fraction in (0, 1]")


def analyze(result):
    """Draw the figures and return (summary dict, Markdown sections) of a finished sweep."""
    experiment = result.experiment
    band = experiment.options.get("band", "std")
    scenarios = {}
    sections = [_method_section(result, band)]

    for scenario in experiment.scenarios.values():
        target = float(scenario.options.get("target_accuracy", DEFAULT_TARGET_ACCURACY))
        variants = {variant.name: _variant_summary(result, scenario, variant, target)
                    for variant in experiment.variants.values()}
        figure_name = f"mse_vs_ce_{scenario.name}.png"
        _draw_scenario(result, scenario, target, band, result.out / figure_name)
        scenarios[scenario.name] = {"label": scenario.label, "target_accuracy": target,
                                    "figure": figure_name, "variants": variants}
        sections.append(_scenario_section(scenario, target, variants, figure_name))

    if result.lr_search:
        sections.append(_lr_search_section(result))

    classes = experiment.options.get("margin_classes", 10)
    margins, gradients = true_class_gradients(np.linspace(-12, 12, 241), classes)
    draw_gradient_figure(margins, gradients, classes, result.out / "gradient_vs_margin.png")
    sections.append(_gradient_section(margins, gradients, classes))

    summary = {"band": band, "scenarios": scenarios,
               "gradient_vs_margin": _gradient_samples(margins, gradients, classes)}
    return summary, sections


# Numbers per variant


def _variant_summary(result, scenario, variant, target):
    runs = result.runs(scenario.name, variant.name)
    config = runs[0].spec.config
    seeds = {}
    for record in runs:
        seeds[str(record.spec.seed)] = {
            "run": record.spec.directory,
            "status": record.status,
            "final_val_accuracy": record.final("val_accuracy"),
            "final_val_cross_entropy": record.final("val_cross_entropy"),
            "test_accuracy": record.test.get("accuracy"),
            "test_cross_entropy": record.test.get("cross_entropy"),
            "epochs_to_target": report.epochs_to_reach(record, "val_accuracy", target),
            "first_nonfinite": record.first_nonfinite,
        }

    reached = [entry["epochs_to_target"] for entry in seeds.values()
               if entry["epochs_to_target"] is not None]
    epochs_stats = report.seed_statistics(reached)
    epochs_stats["n_seeds"] = len(seeds)
    pair = (scenario.name, variant.name)
    return {
        "label": variant.label,
        "loss": config["loss"]["name"],
        "model_output": config["model"]["output"],
        "lr": config["optimizer"]["lr"],
        "lr_search": result.lr_search.get(pair),
        "epochs": config["training"]["epochs"],
        "final_val_accuracy": report.seed_statistics(
            [entry["final_val_accuracy"] for entry in seeds.values()]),
        "test_accuracy": report.seed_statistics([entry["test_accuracy"] for entry in seeds.values()]),
        "test_cross_entropy": report.seed_statistics(
            [entry["test_cross_entropy"] for entry in seeds.values()]),
        "epochs_to_target": epochs_stats,
        "seeds": seeds,
    }


# Markdown


def _method_section(result, band):
    experiment = result.experiment
    if result.lr_mode == "search":
        search = experiment.lr_search
        rates = (f"Each variant gets its own learning rate per scenario, chosen from the grid "
                 f"{', '.join(f'{lr:g}' for lr in search.grid)} by the highest final validation "
                 f"accuracy of seed(s) {', '.join(map(str, search.seeds))} (ties go to the lower "
                 "validation cross-entropy).")
    elif result.lr_mode == "shared":
        shared = next(iter(result.learning_rates.values()))
        rates = f"Every variant uses the same learning rate, {shared:g} (`--shared-lr`)."
    else:
        rates = "Every run uses the learning rate of its config."
    what = "min to max" if band == "minmax" else "one standard deviation (ddof=1)"
    return "\n".join([
        "## Method",
        "",
        "Variants: " + "; ".join(f"`{variant.name}`: {variant.label}"
                                 for variant in experiment.variants.values()) + ".",
        "All variants of a seed share the data split, the initial weights and the batch order.",
        rates,
        f"Tables give the mean ± standard deviation (ddof=1) over seeds, and the figures shade "
        f"{what} around the mean.",
        "Cross-entropy is computed from each model's outputs whatever it was trained on: the "
        "stable log-softmax of the logits, where the softmax-output model is scored on the "
        "logits that feed its softmax (so no clipping is needed) and the raw outputs of the "
        "identity-output MSE model are read as logits.",
    ])


def _scenario_section(scenario, target, variants, figure_name):
    headers = ["variant", "lr", "final val accuracy", "test accuracy",
               "test cross-entropy (nats)", f"epochs to {target:g} val accuracy"]
    rows = []
    for name, entry in variants.items():
        lr = f"{entry['lr']:g}"
        if entry["lr_search"] and entry["lr_search"]["chosen_at_grid_edge"]:
            lr += " (grid edge)"
        rows.append([f"`{name}`", lr, report.format_statistics(entry["final_val_accuracy"]),
                     report.format_statistics(entry["test_accuracy"]),
                     report.format_statistics(entry["test_cross_entropy"]),
                     _format_epochs(entry["epochs_to_target"])])
    return "\n".join([f"## {scenario.label}", "", report.markdown_table(headers, rows), "",
                      f"![{scenario.label}]({figure_name})"])


def _format_epochs(stats):
    if stats["n"] == 0:
        return f"not reached (0 of {stats['n_seeds']} seeds)"
    text = f"{stats['mean']:.1f}"
    if stats["std"] is not None:
        text += f" ± {stats['std']:.1f}"
    return text + f" ({stats['n']} of {stats['n_seeds']} seeds reached it)"


def _lr_search_section(result):
    headers = ["scenario", "variant"] + [f"lr {lr:g}" for lr in result.experiment.lr_search.grid]
    rows = []
    for (scenario, variant), search in result.lr_search.items():
        cells = []
        for row in search["rates"]:
            text = f"{row['val_accuracy']:.3f}" if row["finished"] else _unfinished(row)
            if row["lr"] == search["chosen"]:
                text = f"**{text}**"
            cells.append(text)
        rows.append([scenario, f"`{variant}`"] + cells)
    return "\n".join(["## Learning-rate search", "",
                      "Final validation accuracy of each rate; the chosen one is in bold. "
                      "\"diverged\" means the loss or gradient became non-finite and the run "
                      "stopped, and \"failed\" that the run raised an error, which its "
                      "manifest.json records.", "",
                      report.markdown_table(headers, rows)])


def _unfinished(row):
    for status in ("failed", "diverged"):
        if status in row["statuses"]:
            return status
    return "NaN outputs"


def _gradient_section(margins, gradients, classes):
    samples = _gradient_samples(margins, gradients, classes)
    headers = ["margin", "cross-entropy", "MSE after softmax"]
    rows = [[f"{row['margin']:g}", f"{row['cross_entropy']:.3g}", f"{row['mse_softmax']:.3g}"]
            for row in samples["points"]]
    return "\n".join([
        "## Gradient with respect to the true-class logit",
        "",
        f"{classes} classes, the other logits 0, so the margin is the true-class logit minus "
        "the largest other logit. Each value is d(loss of one sample)/d(true-class logit), "
        "from the library's own backward passes.",
        "",
        report.markdown_table(headers, rows),
        "",
        "![gradient against margin](gradient_vs_margin.png)",
    ])


# The gradient against the margin


def true_class_gradients(margins, n_classes):
    """Return (margins, {loss: dL/dz_y}) for logits with z_y = margin and every other logit 0.

    The gradients come from the library's backward passes, one sample per margin:
    ``CrossEntropy``, and ``Softmax`` followed by ``MSE`` against the one-hot target.
    """
    margins = np.asarray(margins, dtype=np.float64)
    logits = np.zeros((len(margins), n_classes))
    logits[:, 0] = margins
    targets = np.zeros(len(margins), dtype=np.int64)

    cross_entropy = CrossEntropy(reduction="none")
    cross_entropy.forward(logits, targets)
    ce_gradient = cross_entropy.backward()[:, 0]

    softmax = Softmax()
    squared_error = MSE(reduction="none")
    squared_error.forward(softmax.forward(logits), targets)
    mse_gradient = softmax.backward(squared_error.backward())[:, 0]
    return margins, {"cross_entropy": ce_gradient, "mse_softmax": mse_gradient}


def _gradient_samples(margins, gradients, classes):
    points = []
    for margin in (-10, -5, -2, 0, 2, 5):
        index = int(np.argmin(np.abs(margins - margin)))
        points.append({"margin": float(margins[index]),
                       "cross_entropy": float(gradients["cross_entropy"][index]),
                       "mse_softmax": float(gradients["mse_softmax"][index])})
    return {"classes": classes, "other_logits": 0.0, "points": points}


def draw_gradient_figure(margins, gradients, classes, path):
    """Draw dL/dz_y against the margin, on a linear and a log scale, and write it to ``path``."""
    figure = report.new_figure(11, 4.2)
    linear_axes, log_axes = figure.subplots(1, 2)
    styles = {"cross_entropy": ("cross-entropy on logits", "C0"),
              "mse_softmax": ("MSE after softmax, one-hot target", "C1")}

    for name, values in gradients.items():
        label, color = styles[name]
        linear_axes.plot(margins, values, label=label, color=color)
        log_axes.plot(margins, np.abs(values), label=label, color=color)

    for axes in (linear_axes, log_axes):
        axes.axvspan(margins.min(), 0, color="grey", alpha=0.12, linewidth=0,
                     label="wrong prediction (margin < 0)")
        axes.set_xlabel("true-class margin z_y - max other z (logit units)")
        axes.grid(True, alpha=0.3)
    linear_axes.set_ylabel("dL/dz_y (per sample)")
    linear_axes.set_title("gradient on the true-class logit")
    log_axes.set_yscale("log")
    log_axes.set_ylabel("|dL/dz_y| (per sample, log scale)")
    log_axes.set_title("MSE's gradient vanishes when confidently wrong")
    linear_axes.legend(loc="center left")
    log_axes.legend(loc="lower left")
    figure.suptitle(f"{classes} classes, every other logit 0; MSE is the mean over the "
                    f"{classes} outputs, as minilearn's MSE computes it")
    report.save_figure(figure, path)


# Scenario figure


def _draw_scenario(result, scenario, target, band, path):
    variants = list(result.experiment.variants.values())
    count = len(variants)
    layout = [[f"loss {index}" for index in range(count) for _ in range(2)],
              ["accuracy"] * count + ["cross_entropy"] * count]
    figure = report.new_figure(max(4.2 * count, 10), 8)
    panels = figure.subplot_mosaic(layout)
    n_seeds = len(result.experiment.seeds)

    marked = False
    accuracy_matrices, ce_matrices = [], []
    for index, variant in enumerate(variants):
        runs = result.runs(scenario.name, variant.name)
        color = f"C{index}"
        loss_name = runs[0].spec.config["loss"]["name"]

        loss_axes = panels[f"loss {index}"]
        losses = report.seed_matrix(runs, "train_loss")
        marked |= report.draw_seed_band(loss_axes, losses, label="training loss", color=color,
                                       band=band, marker_level=index)
        report.use_log_scale_if_wide(loss_axes, [losses])
        report.finish_epoch_axes(loss_axes, f"{variant.name}: own training loss",
                LOSS_LABELS.get(loss_name, f"{loss_name} (training loss)"))

        accuracy = report.seed_matrix(runs, "val_accuracy")
        cross_entropy = report.seed_matrix(runs, "val_cross_entropy")
        marked |= report.draw_seed_band(panels["accuracy"], accuracy, label=variant.name,
                                       color=color, band=band, marker_level=index)
        marked |= report.draw_seed_band(panels["cross_entropy"], cross_entropy,
                                       label=variant.name, color=color, band=band,
                                       marker_level=index)
        accuracy_matrices.append(accuracy)
        ce_matrices.append(cross_entropy)

    panels["accuracy"].axhline(target, color="black", linestyle="--", linewidth=1,
                               label=f"target {target:g}")
    report.finish_epoch_axes(panels["accuracy"], "validation accuracy", "accuracy (fraction correct)")
    report.use_log_scale_if_wide(panels["cross_entropy"], ce_matrices)
    report.finish_epoch_axes(panels["cross_entropy"], "validation cross-entropy, all variants",
            "cross-entropy (nats per sample)")
    if marked:
        panels["accuracy"].plot([], [], "kx", label="last finite value")

    lr_note = ", ".join(f"{variant.name} lr {result.runs(scenario.name, variant.name)[0].spec.config['optimizer']['lr']:g}"
                        for variant in variants)
    figure.suptitle(f"{scenario.label}: {report.band_legend_note(band, n_seeds)}\n{lr_note}")
    report.save_figure(figure, path)

