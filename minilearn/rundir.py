"""The run directory: every file a run leaves behind, each written atomically.

Files: ``config.toml`` (the resolved config), ``manifest.json`` (seed, status,
times, command, versions, git commit), ``metrics.csv`` and ``metrics.json`` (one
record per epoch), ``loss_curve.png`` and ``model.npz``. Metrics are rewritten
after every epoch, so a run that is killed keeps its completed epochs.
"""

import datetime
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

from minilearn import io

CSV_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
               "nonfinite_steps", "seconds")

# Wall times vary between identical runs, so metrics.json leaves them out and stays
# byte-identical for the same config and seed. They are kept in metrics.csv.
TIMING_KEYS = ("seconds",)

STATUSES = ("running", "completed", "diverged", "interrupted", "failed")


def open_run_directory(out=None, *, parent="runs", name="run", overwrite=False):
    """Return the directory for a new run, created if needed.

    Without ``out`` a fresh directory ``parent/<name>-<time>`` is created exclusively.
    An explicit ``out`` that exists and is not empty is rejected unless ``overwrite``.
    """
    if out is None:
        return io.create_run_directory(Path(parent), name)

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory; choose another path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"--out {out} already exists and is not empty; choose a new "
                         "directory or pass --overwrite to replace its files")
    out.mkdir(parents=True, exist_ok=True)
    return out


class RunDirectory:
    """Writer of one run's files into ``path``."""

    def __init__(self, path):
        self.path = Path(path)
        self.manifest = {}

    def write_config(self, config_text):
        io.atomic_write_text(self.path / "config.toml", config_text)

    def start_manifest(self, *, seed, command, config_path=None):
        """Write the manifest with status ``running`` and everything known at the start."""
        self.manifest = {
            "status": "running",
            "seed": seed,
            "started": _now(),
            "ended": None,
            "command": list(command),
            "config": str(config_path) if config_path is not None else None,
            "message": "",
            "versions": package_versions(),
            "numerics": numeric_environment(),
            "git_commit": git_commit(),
        }
        self._write_manifest()

    def finish_manifest(self, status, message="", **extra):
        """Record how the run ended: one of ``STATUSES`` and an optional message."""
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}; expected one of {STATUSES}")
        self.manifest.update(status=status, ended=_now(), message=message, **extra)
        self._write_manifest()

    def _write_manifest(self):
        io.write_json(self.path / "manifest.json", self.manifest)

    def write_metrics(self, records, test=None, extra=None):
        """Write the epoch records to metrics.csv and metrics.json (which drops wall times)."""
        io.write_csv(self.path / "metrics.csv", records, CSV_COLUMNS)
        epochs = [{key: value for key, value in record.items() if key not in TIMING_KEYS}
                  for record in records]
        payload = {"epochs": epochs, "test": test}
        if extra:
            payload.update(extra)
        io.write_json(self.path / "metrics.json", payload)

    def write_plot(self, records, title, reference=None):
        """Draw loss_curve.png; ``reference`` maps labels to test accuracies drawn as dashed lines."""
        from minilearn.plotting import plot_history

        plot_history(records, self.path / "loss_curve.png", title=title, reference=reference)

    def write_model(self, model):
        model.save(self.path / "model.npz")


def package_versions():
    """Return the versions of Python and the packages that decide a run's numbers."""
    import sklearn

    from minilearn import __version__

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "minilearn": __version__,
        "platform": platform.platform(),
    }


def numeric_environment():
    """Return what, besides the versions, decides the last bits of a run's numbers.

    ``sgd_updates`` is ``"blas"`` or ``"numpy"`` (see ``minilearn.blas``), and
    ``openblas_kernel`` is the kernel family numpy's OpenBLAS runs, such as
    ``"Haswell"``, or None when threadpoolctl cannot tell.
    """
    from minilearn.blas import blas_available

    return {"sgd_updates": "blas" if blas_available() else "numpy",
            "openblas_kernel": _openblas_kernel()}


def _openblas_kernel():
    from minilearn.blas import blas_libraries

    for info in blas_libraries():
        if info.get("internal_api") == "openblas":
            return info.get("architecture")
    return None


def git_commit():
    """Return the commit of the minilearn checkout, or None when it is not a git checkout."""
    source = Path(__file__).resolve().parent.parent
    if not (source / ".git").exists():
        return None
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True,
                                text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def command_line():
    """Return the command that started this process, as a list of strings."""
    return [Path(sys.argv[0]).name] + sys.argv[1:]
