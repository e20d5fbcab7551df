"""The flagship experiments: sweeps of ordinary runs, each with its own figures and summary.

``run_experiment(name, ...)`` is what ``minilearn experiment NAME`` and the scripts
in ``experiments/`` call. It reads the experiment config, runs the sweep (see
``minilearn.sweep``), and lets the experiment's module draw its figures and write
``summary.json`` and ``summary.md`` into the output directory.
"""

import importlib
import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from minilearn import io, sweep

logger = logging.getLogger(__name__)

# Experiment name -> module that analyses its runs.
EXPERIMENTS = {
    "mse_vs_ce": "minilearn.experiments.mse_vs_ce",
    "stable_vs_naive": "minilearn.experiments.stable_vs_naive",
}

# The shipped experiment configs, in a source checkout.
CONFIG_DIRECTORY = Path(__file__).resolve().parent.parent.parent / "configs" / "experiments"


@dataclass
class ExperimentResult:
    """The output directory, summary and wall time of a finished experiment."""

    out: Path
    summary: dict
    wall_seconds: float


def default_config(name):
    """Return the path of the shipped config of experiment ``name``."""
    path = CONFIG_DIRECTORY / f"{name}.toml"
    if not path.is_file():
        raise ValueError(f"the default config of experiment {name!r} was not found at {path}; "
                         "pass --config FILE")
    return path


def run_experiment(name, *, config=None, out=None, jobs=1, backend=None, quick=False,
                   overwrite=False, shared_lr=None, command=None):
    """Run experiment ``name`` and write its runs, figures and summary; returns ExperimentResult.

    ``config`` defaults to ``configs/experiments/NAME.toml``, and ``out`` to a new
    directory ``runs/NAME-<time>``. ``jobs`` and ``backend`` go to joblib.
    ``shared_lr`` gives every run that learning rate instead of each variant's own.
    ``command`` is the command line recorded in the summary.
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; expected one of {', '.join(EXPERIMENTS)}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or (jobs < 1 and jobs != -1):
        raise ValueError(f"--jobs {jobs!r} is invalid; use a positive number of parallel runs, "
                         "or -1 for one per CPU core")
    if shared_lr is not None and not shared_lr > 0:
        raise ValueError(f"--shared-lr {shared_lr!r} is invalid; use a positive learning rate")
    module = importlib.import_module(EXPERIMENTS[name])

    config_path = Path(config) if config is not None else default_config(name)
    experiment = sweep.load_experiment(config_path, quick=quick,
                                       experiment_keys=module.EXPERIMENT_KEYS,
                                       scenario_keys=module.SCENARIO_KEYS, kind=name)
    module.check_options(experiment)
    sweep.check_backend(backend)

    started = time.perf_counter()
    load_average = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    out = sweep.open_output(out, name, overwrite)
    logger.info("experiment %s: writing into %s", name, out)
    result = sweep.run_sweep(experiment, out, jobs=jobs, backend=backend, overwrite=overwrite,
                             shared_lr=shared_lr)
    summary, sections = module.analyze(result)

    wall_seconds = time.perf_counter() - started
    header = {
        "experiment": name,
        "title": experiment.title,
        "config": str(config_path),
        "command": command or sweep.command_text(),
        "budget": "quick" if quick else "default",
        "seeds": list(experiment.seeds),
        "jobs": jobs,
        "backend": backend or "loky",
        "learning_rates": result.lr_mode,
        "wall_seconds": round(wall_seconds, 1),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": load_average,
        "platform": platform.platform(),
    }
    summary = {**header, **summary}
    io.write_json(out / "summary.json", summary)
    io.atomic_write_text(out / "summary.md", _markdown(header, sections))
    logger.info("experiment %s finished in %.1f s", name, wall_seconds)
    return ExperimentResult(out, summary, wall_seconds)


def _load_note(load_average):
    if load_average is None:
        return ""
    return f" whose 1-minute load average was {load_average:.2f} at the start"


def _markdown(header, sections):
    lines = [
        f"# {header['title']}",
        "",
        f"Made by `{header['command']}` ({header['budget']} budget) in "
        f"{header['wall_seconds']:.0f} s of wall time with {header['jobs']} job(s) on joblib's "
        f"{header['backend']} backend, on a machine with {header['cpu_count']} CPU cores "
        f"({header['platform']}){_load_note(header['load_average_at_start'])}.",
        "",
        f"Seeds: {', '.join(str(seed) for seed in header['seeds'])}. Every (scenario, variant, "
        "seed) is an ordinary run directory under `runs/`, and `summary.json` holds every "
        "number below per seed.",
    ]
    for section in sections:
        lines += ["", section.rstrip()]
    return "\n".join(lines) + "\n"
