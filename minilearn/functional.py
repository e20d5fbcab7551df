"""Pure functions on logits and probabilities, shared by the layers and the losses.

Shapes: N is the batch size and K the number of classes. Every function works
along ``axis`` (the last one by default) and keeps the input's dtype: float32
stays float32. Integer input is computed in float64.

Non-finite logits follow one policy. A row whose entries are all -inf has
logsumexp -inf. A row that contains +inf or NaN has no defined softmax, so
``softmax`` and ``log_softmax`` return NaN for the whole row and ``logsumexp``
returns +inf (for +inf) or NaN. The losses pass these NaN values on, which the
training loop reports as a non-finite loss.
"""

import numbers

import contextlib

import numpy as np

from minilearn.validation import check_class_targets


def _as_float(x):
    """Return x as an array, keeping float32 and float64 and converting anything else to float64."""
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    return x


def _log_sum_exp_parts(x, axis):
    """Split log(sum(exp(x))) along ``axis`` into the row maximum and a small remainder.

    Returns ``(argmax, row_max, shifted, exps, rest)``. ``shifted`` and ``exps`` have
    the shape of x, and the others keep ``axis`` as size 1. For a row with a finite
    maximum m:

        shifted = x - m
        exps    = exp(shifted), with 0 in place of one argmax entry's exp(0) = 1
        rest    = sum(exps), so that
        logsumexp(x)   = m + log1p(rest)
        log_softmax(x) = shifted - log1p(rest)

    Leaving the argmax entry's 1 out of the sum and adding it back through log1p
    keeps the result accurate when rest is tiny: for the logits [40, 0],
    log1p(exp(-40)) = 4.25e-18, where log(1 + exp(-40)) rounds to 0. Rows without a
    finite maximum produce meaningless values here, and the callers replace them.
    Callers may overwrite ``shifted`` and ``exps``, which are fresh arrays.
    """
    # argmax returns the first NaN of a row that has one, so row_max is NaN there, as np.max gives.
    argmax = np.argmax(x, axis=axis, keepdims=True)
    row_max = _take_at(x, argmax, axis)

    if np.isfinite(row_max).all():
        # x - m <= 0 in every row, so exp cannot overflow and no warning can occur.
        shifted = x - row_max
        exps = np.exp(shifted)
    else:
        shift = np.where(np.isfinite(row_max), row_max, 0).astype(x.dtype, copy=False)
        # Warnings can only come from rows without a finite maximum, whose values are discarded.
        with np.errstate(over="ignore", invalid="ignore"):
            shifted = x - shift
            exps = np.exp(shifted)
    _put_at(exps, argmax, 0, axis)
    rest = np.sum(exps, axis=axis, keepdims=True)
    return argmax, row_max, shifted, exps, rest


def _take_at(x, index, axis):
    """Return x at one index per row along ``axis``, like np.take_along_axis.

    A 2-D array along its last axis, the shape of every training batch, takes the
    faster fancy-indexing route.
    """
    if x.ndim == 2 and axis in (1, -1):
        return x[np.arange(x.shape[0])[:, None], index]
    return np.take_along_axis(x, index, axis=axis)


def _put_at(x, index, value, axis):
    """Set x at one index per row along ``axis`` to ``value`` in place, like np.put_along_axis."""
    if x.ndim == 2 and axis in (1, -1):
        x[np.arange(x.shape[0])[:, None], index] = value
    else:
        np.put_along_axis(x, index, value, axis=axis)


def _fill_rows_without_finite_max(out, row_max):
    """Set to NaN, in place, the rows of ``out`` whose maximum is +inf, -inf or NaN."""
    not_finite = ~np.isfinite(row_max)
    if not_finite.any():
        np.copyto(out, np.nan, where=not_finite)
    return out


def logsumexp(x, axis=-1, keepdims=False):
    """Compute log(sum(exp(x))) along ``axis`` without overflow.

    Each row is shifted by its own maximum m, because
    log(sum(exp(x))) = m + log(sum(exp(x - m))) and every exp(x - m) is at most 1.
    A row whose entries are all -inf gives -inf, a row containing +inf gives +inf
    and a row containing NaN gives NaN.
    """
    x = _as_float(x)
    _, row_max, _, _, rest = _log_sum_exp_parts(x, axis)

    # m + log1p(rest) is wrong without a finite m, but the maximum itself is the result there.
    with np.errstate(invalid="ignore"):
        out = np.where(np.isfinite(row_max), row_max + np.log1p(rest), row_max)

    if not keepdims:
        out = np.squeeze(out, axis=axis)
    return out


def log_softmax(x, axis=-1):
    """Compute log(softmax(x)) = x - logsumexp(x) along ``axis``, shape kept.

    The log-probability of each row's largest entry is -log1p(r), with r the sum of
    exp(x_j - max) over the other entries, so it keeps full precision when it is
    tiny: for the float64 logits [40, 0] it is -4.25e-18, not 0. Rows that contain
    +inf or NaN, and rows that are all -inf, give NaN. Other -inf entries give -inf.
    """
    return softmax_and_log_softmax(x, axis)[1]


def softmax_and_log_softmax(x, axis=-1):
    """Compute ``(softmax(x), log_softmax(x))`` along ``axis`` in one pass over x.

    A loss that needs both, such as ``CrossEntropy``, saves one exp of the whole
    array. The probabilities are exp(x - m) / (1 + r) and the log-probabilities
    x - m - log1p(r), with m the row maximum and r the sum of exp(x_j - m) over
    every entry but one argmax. Non-finite rows follow ``log_softmax``.
    """
    x = _as_float(x)
    argmax, row_max, shifted, exps, rest = _log_sum_exp_parts(x, axis)

    # In place, because large temporary arrays cost more than the arithmetic here.
    finite_rows = np.isfinite(row_max).all()
    with contextlib.nullcontext() if finite_rows else np.errstate(invalid="ignore"):
        log_probs = np.subtract(shifted, np.log1p(rest), out=shifted)
        _put_at(exps, argmax, 1, axis)
        probs = np.divide(exps, 1 + rest, out=exps)

    if not finite_rows:
        _fill_rows_without_finite_max(log_probs, row_max)
        _fill_rows_without_finite_max(probs, row_max)
    return probs, log_probs


def softmax(x, axis=-1):
    """Compute exp(x) / sum(exp(x)) along ``axis``, shifted by each row's maximum.

    Rows that contain +inf or NaN, and rows that are all -inf, give NaN.
    """
    x = _as_float(x)
    row_max = np.max(x, axis=axis, keepdims=True)

    # inf - inf in the rows without a finite maximum is the NaN those rows should get.
    with np.errstate(invalid="ignore"):
        out = np.subtract(x, row_max)
        np.exp(out, out=out)
    out /= np.sum(out, axis=axis, keepdims=True)
    return out


def sigmoid(x):
    """Compute 1 / (1 + exp(-x)) elementwise without overflow.

    exp(-|x|) never overflows, so each sign uses the algebraically equal form built
    on it: 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0, with e = exp(-|x|).
    Both keep full relative precision, e.g. sigmoid(-100) = 3.720075976020836e-44.
    """
    x = _as_float(x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def one_hot(targets, num_classes, dtype=np.float64):
    """Return the one-hot matrix of shape (N, K) for integer targets of shape (N,).

    Targets outside [0, K) raise ValueError instead of wrapping around, so -1 is
    never taken as the last class.
    """
    targets = check_class_targets(targets, num_classes)
    out = np.zeros((len(targets), num_classes), dtype=dtype)
    out[np.arange(len(targets)), targets] = 1
    return out


def _log_base(base):
    """Return log(base), the divisor that turns nats into units of ``base``."""
    if base is None:
        return 1.0
    if isinstance(base, bool) or not isinstance(base, numbers.Real):
        raise TypeError(f"base must be a number or None, got {base!r}; use None or np.e for "
                        "nats and 2 for bits")
    if not (np.isfinite(base) and base > 0 and base != 1):
        raise ValueError(f"base must be a positive finite number other than 1, got {base!r}; "
                         "use None or np.e for nats and 2 for bits")
    return float(np.log(base))


def entropy(p, axis=-1, base=None):
    """Compute the Shannon entropy H(p) = -sum_k p_k log p_k along ``axis``.

    ``p`` is taken as given, without normalizing it. Terms with p_k = 0 count as 0
    (the limit of p log p). ``base`` None or e gives nats and 2 gives bits.
    """
    p = _as_float(p)
    scale = _log_base(base)

    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p == 0, p.dtype.type(0), p * np.log(p))
    return -np.sum(terms, axis=axis) / scale


def cross_entropy(p, q, axis=-1, base=None):
    """Compute the cross-entropy H(p, q) = -sum_k p_k log q_k along ``axis``.

    For probability distributions p and q, taken as given. Terms with p_k = 0 count
    as 0, even where q_k = 0, and a term with p_k > 0 and q_k = 0 makes the result
    inf. ``base`` None or e gives nats and 2 gives bits. For a loss on logits use
    ``minilearn.losses.CrossEntropy``.
    """
    p = _as_float(p)
    q = _as_float(q)
    scale = _log_base(base)

    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p == 0, p.dtype.type(0), p * np.log(q))
    return -np.sum(terms, axis=axis) / scale


def kl_divergence(p, q, axis=-1, base=None):
    """Compute the Kullback-Leibler divergence KL(p || q) = sum_k p_k log(p_k / q_k) along ``axis``.

    Equals cross_entropy(p, q) - entropy(p) up to rounding. Terms with p_k = 0 count
    as 0, and a term with p_k > 0 and q_k = 0 makes the result inf. ``base`` None or
    e gives nats and 2 gives bits.
    """
    p = _as_float(p)
    q = _as_float(q)
    scale = _log_base(base)

    # log p - log q rather than log(p / q), because p / q can overflow or underflow.
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p == 0, p.dtype.type(0), p * (np.log(p) - np.log(q)))
    return np.sum(terms, axis=axis) / scale
