"""Checks of arrays passed in by users, with messages that name the problem and the fix.

These raise ``ValueError`` or ``TypeError``. The CLI turns either into a one-line
error, so every message here must read well on its own.
"""

import numpy as np

SUPPORTED_DTYPES = (np.float32, np.float64)


def check_dtype(dtype, name="dtype"):
    """Return ``dtype`` as a numpy dtype, or raise if it is not float32 or float64."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise TypeError(
            f"{name}={dtype!r} is not a numpy dtype; use 'float32' or 'float64'"
        ) from None
    if resolved not in [np.dtype(d) for d in SUPPORTED_DTYPES]:
        raise TypeError(f"{name}={resolved} is not supported; use 'float32' or 'float64'")
    return resolved


def check_features(X, name="X"):
    """Check that X is a non-empty 2-D array of finite numbers and return it as an array."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D with shape (samples, features), got {X.ndim}-D "
            f"shape {X.shape}; reshape it, e.g. X.reshape(len(X), -1)"
        )
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples); pass at least one sample")
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise TypeError(f"{name} has dtype {X.dtype}; features must be real numbers")
    # A float64 sum is NaN or inf whenever an entry is, and unlike np.isfinite(X) it
    # allocates no array the size of X. Only then are the rows scanned, in blocks.
    if not np.isfinite(np.sum(X, dtype=np.float64)):
        count, first_row = _count_non_finite(X)
        if count:
            raise ValueError(
                f"{name} contains {count} NaN or infinite values, first in row "
                f"{first_row}; remove or impute them before training"
            )
    return X


def _count_non_finite(X, block_rows=4096):
    """Return (count of NaN or inf entries, first row with one) of X (N, D), in row blocks."""
    count = 0
    first_row = None
    for start in range(0, len(X), block_rows):
        bad = ~np.isfinite(X[start:start + block_rows])
        if first_row is None and bad.any():
            first_row = start + int(np.flatnonzero(bad.any(axis=1))[0])
        count += int(bad.sum())
    return count, first_row


def check_class_targets(targets, num_classes, ignore_index=None, name="targets"):
    """Check integer class targets of shape (N,) against K classes and return them as int64.

    Only ``ignore_index`` may lie outside [0, K). A float array is accepted when every
    value is a whole number, so targets loaded as 0.0, 1.0, ... still work.
    """
    targets = np.asarray(targets)
    if targets.ndim != 1:
        raise ValueError(f"{name} must be 1-D class indices of shape (N,), got shape {targets.shape}")
    kind = targets.dtype.kind
    if kind not in "iu":
        if kind != "f":
            raise TypeError(f"{name} must be integer class indices, got dtype {targets.dtype}")
        whole = np.isfinite(targets) & (targets == np.round(targets))
        if not whole.all():
            index = int(np.flatnonzero(~whole)[0])
            raise TypeError(
                f"{name} must be integer class indices, but {name}[{index}] = {targets[index]!r}"
            )
    targets = targets.astype(np.int64, copy=False)

    # min and max are one pass each, so the common all-valid batch builds no masks.
    if len(targets) == 0 or (targets.min() >= 0 and targets.max() < num_classes):
        return targets
    outside = (targets < 0) | (targets >= num_classes)
    if ignore_index is not None:
        outside &= targets != ignore_index
    if outside.any():
        index = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"{name}[{index}] = {int(targets[index])} is outside the valid class range "
            f"[0, {num_classes}); {int(outside.sum())} target(s) are out of range. Class "
            f"indices must be 0..{num_classes - 1}, so relabel the data or widen the output layer"
        )
    return targets
