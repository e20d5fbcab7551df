"""Experiments as sweeps of ordinary runs: scenarios times variants times seeds.

An experiment config is a TOML file with these keys:

- ``experiment``: the analysis that reads the runs, e.g. ``"mse_vs_ce"``.
- ``title``: a line for the summary and the figures.
- ``seeds``: the seeds every (scenario, variant) pair runs with.
- ``set``: overrides applied to every run.
- ``[scenarios.NAME]``: ``base``, a run config path relative to the experiment
  file, an optional ``label`` and ``set`` table, and keys that the analysis reads.
- ``[variants.NAME]``: an optional ``label`` and the ``set`` table that makes the
  variant, e.g. ``set = { "loss.name" = "mse", "model.output" = "softmax" }``.
- ``[lr_search]`` (optional): ``grid`` of learning rates and the ``seeds`` that
  choose one rate per (scenario, variant) on the validation split.
- ``[quick]``: a smaller budget, with the keys ``seeds``, ``set``, ``scenarios``,
  ``lr_grid`` and ``lr_seeds``, each replacing or adding to the full one.

``set`` tables take dotted keys, nested tables or both. Setting ``loss.name`` or
``optimizer.name`` to a new name clears the options that the base config gave the
old one. Overrides apply in the order base config, experiment, scenario, variant,
quick, and then the seed, the learning rate and ``training.record_cross_entropy =
true``, which every experiment run gets. Each (scenario, variant, seed) is an
ordinary run through ``minilearn.runner.run``, written to
``OUT/runs/SCENARIO/VARIANT/seed-N``. The seeds fix every run's numbers, so
running them in parallel with joblib changes none of them.
"""

import contextlib
import copy
import logging
import math
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minilearn.config import ConfigError, read_config_file, resolve_config
from minilearn.rundir import open_run_directory

logger = logging.getLogger(__name__)

EXPERIMENT_KEYS = {"experiment", "title", "seeds", "set", "scenarios", "variants", "lr_search",
                   "quick"}
SCENARIO_KEYS = {"base", "label", "set"}
VARIANT_KEYS = {"label", "set"}
LR_SEARCH_KEYS = {"grid", "seeds"}
QUICK_KEYS = {"seeds", "set", "scenarios", "lr_grid", "lr_seeds"}

# Loggers that report every epoch and run; a sweep of many runs keeps them at WARNING.
CHATTY_LOGGERS = ("minilearn.runner", "minilearn.training")


# Configs


@dataclass(frozen=True)
class Scenario:
    """One setting that every variant runs in: a base run config and its overrides."""

    name: str
    label: str
    base: Path
    overrides: tuple
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Variant:
    """One of the things compared, given by overrides such as ``loss.name = "mse"``."""

    name: str
    label: str
    overrides: tuple


@dataclass(frozen=True)
class LearningRateSearch:
    """The grid of learning rates tried per (scenario, variant) and the seeds that judge them."""

    grid: tuple
    seeds: tuple


@dataclass
class Experiment:
    """A resolved experiment config; ``options`` contains the top-level keys of the analysis."""

    kind: str
    path: Path
    title: str
    seeds: tuple
    overrides: tuple
    scenarios: dict
    variants: dict
    lr_search: LearningRateSearch | None
    quick: bool
    options: dict = field(default_factory=dict)


def load_experiment(path, *, quick=False, experiment_keys=(), scenario_keys=(), kind=None):
    """Read and check the experiment config at ``path``; raises ConfigError on a problem.

    ``experiment_keys`` and ``scenario_keys`` name the extra keys that the analysis
    reads at the top level and in each scenario. ``kind``, when given, is the
    experiment the config must be for. With ``quick`` the ``[quick]``
    table replaces the seeds, scenarios and learning-rate grid, and adds its ``set``.
    """
    path = Path(path)
    raw = read_config_file(path)
    source = str(path)
    found = raw.get("experiment")
    if not isinstance(found, str) or not found:
        raise ConfigError(f"{source}: 'experiment' is missing or not a string; name the "
                          "analysis, e.g. experiment = \"mse_vs_ce\"")
    if kind is not None and found != kind:
        raise ConfigError(f"{source} is a config of experiment {found!r}, not {kind!r}; run "
                          f"'minilearn experiment {found}' or pass a config of {kind}")
    _check_keys(raw, EXPERIMENT_KEYS | set(experiment_keys), source, "")
    quick_table = _table(raw, "quick", source)
    _check_keys(quick_table, QUICK_KEYS, source, "quick.")

    seeds = _seed_list(raw.get("seeds"), source, "seeds")
    if quick and "seeds" in quick_table:
        seeds = _seed_list(quick_table["seeds"], source, "quick.seeds")

    overrides = _overrides(raw.get("set", {}), source, "set")
    if quick:
        overrides += _overrides(quick_table.get("set", {}), source, "quick.set")

    scenarios = _scenarios(raw, path, set(scenario_keys))
    if quick and "scenarios" in quick_table:
        scenarios = _pick_scenarios(scenarios, quick_table["scenarios"], source)
    variants = _variants(raw, source)
    lr_search = _lr_search(raw, quick_table if quick else {}, source)

    options = {key: raw[key] for key in experiment_keys if key in raw}
    return Experiment(kind=found, path=path, title=str(raw.get("title", kind)), seeds=seeds,
                      overrides=overrides, scenarios=scenarios, variants=variants,
                      lr_search=lr_search, quick=quick, options=options)


def _check_keys(table, allowed, source, prefix):
    for key in table:
        if key not in allowed:
            valid = ", ".join(sorted(allowed))
            raise ConfigError(f"{source}: unknown key {prefix + key!r}; expected one of {valid}")


def _table(raw, key, source):
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {key} must be a table ([{key}]), got {value!r}")
    return value


def _seed_list(value, source, key):
    if not isinstance(value, list) or not value or any(
            isinstance(seed, bool) or not isinstance(seed, int) or seed < 0 for seed in value):
        raise ConfigError(f"{source}: {key} = {value!r} is invalid; expected a non-empty list "
                          "of non-negative integers, e.g. [0, 1, 2, 3, 4]")
    if len(set(value)) != len(value):
        raise ConfigError(f"{source}: {key} = {value!r} repeats a seed; list each seed once")
    return tuple(value)


def _overrides(table, source, key):
    """Flatten a ``set`` table into ((key, path, ...), value) pairs, names first."""
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: {key} must be a table of config keys, e.g. "
                          f"{key} = {{ \"optimizer.lr\" = 0.1 }}, got {table!r}")
    pairs = list(_flatten(table, ()))
    for keys, _value in pairs:
        if not all(keys):
            raise ConfigError(f"{source}: {key} has the key {'.'.join(keys)!r} with an empty part")

    # loss.name and optimizer.name clear their table, so they go before its options.
    pairs.sort(key=lambda pair: not _is_section_name(pair[0]))
    return tuple(pairs)


def _flatten(table, prefix):
    for key, value in table.items():
        keys = prefix + tuple(key.split("."))
        if isinstance(value, dict) and value:
            yield from _flatten(value, keys)
        else:
            yield keys, value


def _is_section_name(keys):
    return len(keys) == 2 and keys[0] in ("loss", "optimizer") and keys[1] == "name"


def _scenarios(raw, path, extra_keys):
    source = str(path)
    table = _table(raw, "scenarios", source)
    if not table:
        raise ConfigError(f"{source}: no scenarios; add at least one [scenarios.NAME] table "
                          "with base = \"../some_config.toml\"")
    scenarios = {}
    for name, spec in table.items():
        prefix = f"scenarios.{name}."
        if not isinstance(spec, dict):
            raise ConfigError(f"{source}: scenarios.{name} must be a table, got {spec!r}")
        _check_keys(spec, SCENARIO_KEYS | extra_keys, source, prefix)
        base = spec.get("base")
        if not isinstance(base, str) or not base:
            raise ConfigError(f"{source}: {prefix}base is missing; name the run config that "
                              "the scenario starts from, relative to the experiment file")
        base_path = (path.parent / base).resolve()
        if not base_path.is_file():
            raise ConfigError(f"{source}: {prefix}base = {base!r} is not a file "
                              f"({base_path}); check the path")
        options = {key: spec[key] for key in extra_keys if key in spec}
        scenarios[name] = Scenario(name=name, label=str(spec.get("label", name)), base=base_path,
                                   overrides=_overrides(spec.get("set", {}), source, prefix + "set"),
                                   options=options)
    return scenarios


def _pick_scenarios(scenarios, names, source):
    if not isinstance(names, list) or not names or any(name not in scenarios for name in names):
        raise ConfigError(f"{source}: quick.scenarios = {names!r} is invalid; expected a "
                          f"non-empty list of scenario names from: {', '.join(scenarios)}")
    return {name: scenarios[name] for name in names}


def _variants(raw, source):
    table = _table(raw, "variants", source)
    if not table:
        raise ConfigError(f"{source}: no variants; add at least one [variants.NAME] table "
                          "with its set = { ... } overrides")
    variants = {}
    for name, spec in table.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"{source}: variants.{name} must be a table, got {spec!r}")
        _check_keys(spec, VARIANT_KEYS, source, f"variants.{name}.")
        variants[name] = Variant(name=name, label=str(spec.get("label", name)),
                                 overrides=_overrides(spec.get("set", {}), source,
                                                      f"variants.{name}.set"))
    return variants


def _lr_search(raw, quick_table, source):
    if "lr_search" not in raw:
        return None
    table = _table(raw, "lr_search", source)
    _check_keys(table, LR_SEARCH_KEYS, source, "lr_search.")
    grid = quick_table.get("lr_grid", table.get("grid"))
    if not isinstance(grid, list) or not grid or any(
            isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0
            or not math.isfinite(lr) for lr in grid):
        raise ConfigError(f"{source}: lr_search.grid = {grid!r} is invalid; expected a "
                          "non-empty list of positive learning rates, e.g. [0.01, 0.1, 1.0]")
    seeds = quick_table.get("lr_seeds", table.get("seeds", [0]))
    return LearningRateSearch(grid=tuple(sorted(float(lr) for lr in grid)),
                              seeds=_seed_list(seeds, source, "lr_search.seeds"))


# Run configs


@dataclass(frozen=True)
class RunSpec:
    """One planned run: where it goes, relative to the output directory, and its config."""

    scenario: str
    variant: str
    seed: int
    lr: float | None
    directory: str
    config: dict


def run_config(experiment, scenario, variant, seed, lr=None):
    """Return the resolved run config of one (scenario, variant, seed), with ``lr`` if given."""
    raw = read_config_file(scenario.base)
    for overrides in (experiment.overrides, scenario.overrides, variant.overrides):
        _apply_overrides(raw, overrides)
    raw["seed"] = seed
    raw["name"] = f"{scenario.name}-{variant.name}"
    raw.setdefault("training", {})["record_cross_entropy"] = True
    if lr is not None:
        raw.setdefault("optimizer", {})["lr"] = lr
    source = f"{experiment.path} (scenario {scenario.name!r}, variant {variant.name!r})"
    return resolve_config(raw, source=source)


def _apply_overrides(raw, overrides):
    for keys, value in overrides:
        table = raw
        for key in keys[:-1]:
            table = table.setdefault(key, {})
            if not isinstance(table, dict):
                raise ConfigError(f"override {'.'.join(keys)}: {key!r} is not a table")
        if _is_section_name(keys) and table.get("name") != value:
            table.clear()
        table[keys[-1]] = copy.deepcopy(value)


def plan_runs(experiment, learning_rates=None, seeds=None, prefix="runs"):
    """Return the RunSpec of every (scenario, variant, seed), scenario by scenario.

    ``learning_rates`` maps (scenario, variant) to a rate, or is a dict of lists
    for a search, in which case each rate gets its own ``lr-<rate>`` directory.
    """
    seeds = experiment.seeds if seeds is None else seeds
    specs = []
    for scenario in experiment.scenarios.values():
        for variant in experiment.variants.values():
            rates = (learning_rates or {}).get((scenario.name, variant.name), None)
            for lr in rates if isinstance(rates, (list, tuple)) else [rates]:
                for seed in seeds:
                    parts = [prefix, scenario.name, variant.name]
                    if isinstance(rates, (list, tuple)):
                        parts.append(f"lr-{lr:g}")
                    parts.append(f"seed-{seed}")
                    config = run_config(experiment, scenario, variant, seed, lr)
                    specs.append(RunSpec(scenario.name, variant.name, seed, lr, "/".join(parts),
                                         config))
    return specs


# Running


def execute_runs(specs, out, *, jobs=1, backend=None, overwrite=False, config_path=None):
    """Run every spec into ``out/<spec.directory>``, ``jobs`` at a time with joblib.

    ``backend`` is a joblib backend name such as "loky" (processes, the default),
    "threading" or one that a cluster library registered, e.g. "dask". Returns one
    dict per spec, in order, with the run's ``status`` and ``message``.
    """
    from joblib import Parallel, delayed

    check_backend(backend)
    parallel = Parallel(n_jobs=jobs, backend=backend, return_as="generator")
    logger.info("running %d runs with %s job(s)%s", len(specs), jobs,
                f" on the joblib backend {backend!r}" if backend else "")
    tasks = (delayed(_run_one)(spec.config, Path(out) / spec.directory, overwrite, config_path)
             for spec in specs)
    outcomes = []
    for index, outcome in enumerate(parallel(tasks), start=1):
        outcomes.append(outcome)
        logger.debug("run %d/%d done: %s (%s)", index, len(specs), outcome["path"],
                     outcome["status"])
    return outcomes


def check_backend(backend):
    """Raise ValueError when joblib does not know the backend name ``backend``."""
    from joblib import Parallel

    try:
        Parallel(n_jobs=1, backend=backend)
    except ValueError as error:
        raise ValueError(f"--backend {backend}: {error}") from None


def _run_one(config, path, overwrite, config_path):
    """Train one run without a progress bar; runs inside a joblib worker.

    An exception inside the run is logged and returned as status "failed", which
    the run's manifest also records, so one broken run does not end the sweep.
    A bad output directory is still raised, because every other run would hit it too.
    """
    from minilearn.runner import run

    open_run_directory(path, overwrite=overwrite)
    try:
        with _quiet_loggers(CHATTY_LOGGERS):
            result = run(config, out=path, overwrite=True, config_path=config_path,
                         progress=False)
    except Exception as error:  # noqa: BLE001 - recorded in the manifest and the summary
        message = f"{type(error).__name__}: {error}"
        logger.warning("run %s failed: %s", path, message)
        return {"path": str(path), "status": "failed", "message": message}
    return {"path": str(result.path), "status": result.status, "message": result.message}


@contextlib.contextmanager
def _quiet_loggers(names):
    loggers = [logging.getLogger(name) for name in names]
    levels = [each.level for each in loggers]
    for each in loggers:
        each.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for each, level in zip(loggers, levels):
            each.setLevel(level)


@dataclass
class RunRecord:
    """The metrics and final status of one finished run."""

    spec: RunSpec
    epochs: list
    test: dict
    status: str
    first_nonfinite: dict | None

    def series(self, key):
        """Return one metric over the epochs as a float array, NaN where missing or None."""
        return np.array([_as_float(record.get(key)) for record in self.epochs], dtype=float)

    def final(self, key):
        """Return the metric's value at the last epoch, NaN without epochs."""
        values = self.series(key)
        return float(values[-1]) if values.size else math.nan


def read_run(out, spec):
    """Read the metrics and the final status of the run that ``spec`` planned inside ``out``.

    The status comes from the manifest, which also records a run that failed after
    training. A run that failed before its first epoch has no metrics, so it reads
    as no epochs and no test results, and one without a manifest reads as failed.
    """
    directory = Path(out) / spec.directory
    metrics_path = directory / "metrics.json"
    metrics = _read_json(metrics_path) if metrics_path.is_file() else {}
    manifest_path = directory / "manifest.json"
    manifest = _read_json(manifest_path) if manifest_path.is_file() else {"status": "failed"}
    return RunRecord(spec=spec, epochs=metrics.get("epochs", []), test=metrics.get("test") or {},
                     status=manifest.get("status", "unknown"),
                     first_nonfinite=metrics.get("first_nonfinite"))


def _read_json(path):
    import json

    return json.loads(Path(path).read_text(encoding="utf-8"))


def _as_float(value):
    return math.nan if value is None else float(value)


# Learning-rate search


def search_learning_rates(experiment, out, *, jobs=1, backend=None, overwrite=False):
    """Train every rate of the grid per (scenario, variant) and choose one on validation.

    The chosen rate has the highest final validation accuracy, averaged over the
    search seeds, and a tie goes to the lower mean validation cross-entropy. A run
    that stopped early, or whose outputs became non-finite, scores below every run
    that finished. Returns (chosen, report): chosen maps (scenario, variant) to the
    rate, and report contains the score of every rate for the summary.
    """
    search = experiment.lr_search
    grid = {(scenario, variant): list(search.grid)
            for scenario in experiment.scenarios for variant in experiment.variants}
    specs = plan_runs(experiment, grid, seeds=search.seeds, prefix="lr_search")
    execute_runs(specs, out, jobs=jobs, backend=backend, overwrite=overwrite,
                 config_path=experiment.path)

    scores = {}
    for spec in specs:
        record = read_run(out, spec)
        scores.setdefault((spec.scenario, spec.variant), {}).setdefault(spec.lr, []).append(
            _search_score(record))

    chosen = {}
    report = {}
    for pair, by_rate in scores.items():
        rows = []
        for lr, runs in by_rate.items():
            rows.append({"lr": lr,
                         "val_accuracy": float(np.mean([run[0] for run in runs])),
                         "val_cross_entropy": float(np.mean([run[1] for run in runs])),
                         "finished": all(run[2] for run in runs),
                         "statuses": [run[3] for run in runs]})
        best = max(rows, key=lambda row: (row["finished"], row["val_accuracy"],
                                          -_nan_to_inf(row["val_cross_entropy"])))
        chosen[pair] = best["lr"]
        at_edge = best["lr"] in (search.grid[0], search.grid[-1]) and len(search.grid) > 1
        report[pair] = {"grid": list(search.grid), "seeds": list(search.seeds),
                        "chosen": best["lr"], "chosen_at_grid_edge": at_edge, "rates": rows}
    return chosen, report


def _search_score(record):
    """Return (final val accuracy, final val cross-entropy, finished, status) of one search run."""
    accuracy = record.final("val_accuracy")
    cross_entropy = record.final("val_cross_entropy")
    finished = record.status == "completed" and math.isfinite(cross_entropy) \
        and math.isfinite(accuracy)
    return (accuracy if finished else 0.0, cross_entropy, finished, record.status)


def _nan_to_inf(value):
    return math.inf if not math.isfinite(value) else value


# The sweep


@dataclass
class SweepResult:
    """The finished runs of an experiment and the learning rates they used."""

    experiment: Experiment
    out: Path
    records: list
    learning_rates: dict
    lr_search: dict
    lr_mode: str

    def runs(self, scenario, variant):
        """Return the RunRecords of one (scenario, variant), in seed order."""
        return [record for record in self.records
                if record.spec.scenario == scenario and record.spec.variant == variant]


def run_sweep(experiment, out, *, jobs=1, backend=None, overwrite=False, shared_lr=None):
    """Run the learning-rate search (if any) and then every (scenario, variant, seed).

    ``shared_lr`` skips the search and gives every run that learning rate.
    """
    learning_rates = {}
    lr_search = {}
    lr_mode = "config"
    if shared_lr is not None:
        lr_mode = "shared"
        learning_rates = {(scenario, variant): shared_lr
                          for scenario in experiment.scenarios for variant in experiment.variants}
    elif experiment.lr_search is not None:
        lr_mode = "search"
        learning_rates, lr_search = search_learning_rates(experiment, out, jobs=jobs,
                                                          backend=backend, overwrite=overwrite)

    specs = plan_runs(experiment, learning_rates)
    execute_runs(specs, out, jobs=jobs, backend=backend, overwrite=overwrite,
                 config_path=experiment.path)
    records = [read_run(out, spec) for spec in specs]
    return SweepResult(experiment, Path(out), records, learning_rates, lr_search, lr_mode)


def open_output(out, name, overwrite):
    """Return the experiment's output directory: ``out`` or a new ``runs/<name>-<time>``."""
    return open_run_directory(out, parent="runs", name=name, overwrite=overwrite)


def command_text():
    """Return the command line of this process as a shell command a user can repeat."""
    program = Path(sys.argv[0]).name
    if program == "__main__.py":
        words = ["python", "-m", "minilearn"]
    elif program.endswith(".py"):
        words = ["python", sys.argv[0]]
    else:
        words = [program]
    return shlex.join(words + sys.argv[1:])
