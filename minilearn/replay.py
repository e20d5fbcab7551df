"""Exact replay: rerun a run from its saved config and compare the results bit for bit."""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minilearn.io import load_arrays_npz


@dataclass
class ReplayReport:
    """The outcome of a replay: where it went and every difference found, first one first."""

    original: Path
    replay: Path
    differences: list
    # Sentences on how the two runs' numeric environments differ, which alone can
    # change the last bits of every number.
    environment_notes: list = field(default_factory=list)

    @property
    def identical(self):
        return not self.differences


def replay_run(run_dir, *, out=None, overwrite=False, progress=False):
    """Rerun ``run_dir`` from its ``config.toml`` into a new directory and compare.

    Without ``out`` the replay goes to a new directory beside the original, named
    ``<original name>-replay-<time>``.
    """
    from minilearn.config import load_config
    from minilearn.runner import run

    run_dir = Path(run_dir)
    config_path = run_dir / "config.toml"
    if not run_dir.exists():
        raise ValueError(f"{run_dir}: run directory not found; pass a directory written by "
                         "minilearn run")
    if not run_dir.is_dir() or not config_path.is_file():
        raise ValueError(f"{run_dir} is not a run directory (no config.toml); pass a directory "
                         "written by minilearn run")

    config = load_config(config_path)
    result = run(config, out=out, overwrite=overwrite, runs_parent=run_dir.parent,
                 run_name=f"{run_dir.name}-replay", config_path=config_path, progress=progress)
    return ReplayReport(run_dir, result.path, compare_run_directories(run_dir, result.path),
                        compare_numerics(run_dir, result.path))


def compare_numerics(original, replay):
    """Return one sentence per entry of the manifests' ``numerics`` that differs between runs.

    A run directory without a manifest, or a manifest from before ``numerics`` was
    recorded, gives no sentences.
    """
    before, after = _numerics(Path(original)), _numerics(Path(replay))
    notes = [f"the original ran with {key} = {before.get(key)!r} and the replay with "
             f"{after.get(key)!r}"
             for key in sorted(set(before) & set(after)) if before[key] != after[key]]
    if before.get("sgd_updates") == "numpy" and after.get("sgd_updates") == "blas":
        notes.append("set MINILEARN_BLAS_UPDATES=0 to replay with the original's numpy SGD "
                     "updates")
    return notes


def _numerics(run_dir):
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    numerics = manifest.get("numerics") if isinstance(manifest, dict) else None
    return numerics if isinstance(numerics, dict) else {}


def compare_run_directories(original, replay):
    """Return the differences between two runs' metrics.json and model.npz, as sentences.

    Numbers are compared exactly: JSON floats written with repr read back to the same
    float, and arrays are compared by their bytes, so NaN equals NaN.
    """
    original = Path(original)
    replay = Path(replay)
    differences = []

    first_metrics = _read_json(original / "metrics.json")
    second_metrics = _read_json(replay / "metrics.json")
    differences += _compare_values(first_metrics, second_metrics, "metrics.json")

    first_params = load_arrays_npz(original / "model.npz")
    second_params = load_arrays_npz(replay / "model.npz")
    differences += _compare_arrays(first_params, second_params)
    return differences


def _read_json(path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path} is missing; the run did not finish writing its metrics") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None


def _compare_values(first, second, where):
    if isinstance(first, dict) and isinstance(second, dict):
        differences = []
        for key in list(first) + [key for key in second if key not in first]:
            if key not in first or key not in second:
                differences.append(f"{where}: key {key!r} is only in "
                                   f"{'the original' if key in first else 'the replay'}")
                continue
            differences += _compare_values(first[key], second[key], f"{where}.{key}")
        return differences

    if isinstance(first, list) and isinstance(second, list):
        if len(first) != len(second):
            return [f"{where}: the original has {len(first)} entries, the replay {len(second)}"]
        differences = []
        for index, (a, b) in enumerate(zip(first, second)):
            differences += _compare_values(a, b, f"{where}[{index}]")
        return differences

    if type(first) is not type(second) or first != second:
        return [f"{where}: the original has {first!r}, the replay {second!r}"]
    return []


def _compare_arrays(first, second):
    differences = []
    for name in sorted(set(first) | set(second)):
        if name not in first or name not in second:
            differences.append(f"model.npz: parameter {name!r} is only in "
                               f"{'the original' if name in first else 'the replay'}")
            continue
        a, b = first[name], second[name]
        if a.shape != b.shape or a.dtype != b.dtype:
            differences.append(f"model.npz: parameter {name!r} has shape {a.shape} {a.dtype} in "
                               f"the original and {b.shape} {b.dtype} in the replay")
        elif a.tobytes() != b.tobytes():
            index = np.unravel_index(int(np.flatnonzero(a.ravel() != b.ravel())[0]), a.shape)
            differences.append(f"model.npz: parameter {name!r} differs first at index "
                               f"{tuple(int(i) for i in index)}: {a[index]!r} against {b[index]!r}")
    return differences
