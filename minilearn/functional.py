"""Pure functions on logits and probabilities, shared by the layers and the losses.

Shapes: N is the batch size and K the number of classes. Every function works
along ``axis`` (the last one by default) and keeps the input's dtype.
"""

import numpy as np


def logsumexp(x, axis=-1, keepdims=False):
    """Compute log(sum(exp(x))) along ``axis`` without overflow.

    Each row is shifted by its own maximum m, because
    log(sum(exp(x))) = m + log(sum(exp(x - m))) and every exp(x - m) is at most 1.
    A row whose entries are all -inf gives -inf.
    """
    x = np.asarray(x)
    row_max = np.max(x, axis=axis, keepdims=True)
    # An all -inf row would give -inf - (-inf) = nan; shift such rows by 0 instead.
    shift = np.where(np.isfinite(row_max), row_max, 0).astype(x.dtype, copy=False)

    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - shift), axis=axis, keepdims=True)) + shift

    if not keepdims:
        out = np.squeeze(out, axis=axis)
    return out


def log_softmax(x, axis=-1):
    """Compute log(softmax(x)) = x - logsumexp(x) along ``axis``, shape kept."""
    x = np.asarray(x)
    return x - logsumexp(x, axis=axis, keepdims=True)


def softmax(x, axis=-1):
    """Compute exp(x) / sum(exp(x)) along ``axis``, shifted by each row's maximum."""
    x = np.asarray(x)
    shifted = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return shifted / np.sum(shifted, axis=axis, keepdims=True)


def one_hot(targets, num_classes, dtype=np.float64):
    """Return the one-hot matrix of shape (N, K) for integer targets of shape (N,)."""
    out = np.zeros((len(targets), num_classes), dtype=dtype)
    out[np.arange(len(targets)), targets] = 1
    return out
