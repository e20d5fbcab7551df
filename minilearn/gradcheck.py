"""Central finite differences, the self-contained reference for every backward pass."""

import numpy as np


def numerical_gradient(f, x, eps=1e-6):
    """Estimate d f(x) / dx for a scalar function f by central differences.

    ``x`` is perturbed in place, one entry at a time, and restored, so f may read
    it by reference (as a layer reads its own parameters). The truncation error is
    O(eps**2), so use float64 for x. Returns an array shaped like x.
    """
    grad = np.zeros_like(x, dtype=np.float64)
    flat_x = x.reshape(-1)
    flat_grad = grad.reshape(-1)
    for i in range(flat_x.size):
        original = flat_x[i]
        flat_x[i] = original + eps
        f_plus = f()
        flat_x[i] = original - eps
        f_minus = f()
        flat_x[i] = original
        flat_grad[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def relative_error(a, b):
    """Max over entries of |a - b| / max(|a| + |b|, 1e-8): near 0 when they agree."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = np.maximum(np.abs(a) + np.abs(b), 1e-8)
    return float(np.max(np.abs(a - b) / scale)) if a.size else 0.0
