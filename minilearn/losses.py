"""Loss functions with hand-derived backward passes.

Every loss follows one contract:

- ``forward(outputs, targets)`` returns the loss and caches what the backward pass
  needs. The loss is a Python float for ``reduction="mean"`` or ``"sum"`` and an
  array of shape (N,), one value per sample, for ``reduction="none"``.
- ``backward(grad_output=None)`` returns dL/d(outputs), with the shape and dtype of
  the outputs. For ``"mean"`` and ``"sum"``, ``grad_output`` is the scalar upstream
  gradient (default 1). For ``"none"`` it is the upstream gradient of each sample's
  loss, shape (N,), default ones.
- ``expects`` names what the outputs must be: ``"logits"``, ``"probabilities"``,
  ``"log_probabilities"`` or ``"any"``. The training code reads it to decide what
  the model's last layer emits.

Shapes: N is the batch size and K the number of classes. Outputs in float32 give
a float32 gradient. Outputs of other numeric dtypes are computed in float64.
"""

import inspect
import math
import numbers

import numpy as np

from minilearn import functional as F
from minilearn.registry import LOSSES
from minilearn.validation import check_class_targets

REDUCTIONS = ("mean", "sum", "none")


# Checks of the options passed to a loss's constructor.

def _check_reduction(reduction, owner):
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"{owner} reduction must be one of {', '.join(map(repr, REDUCTIONS))}, got "
            f"{reduction!r}; use 'mean' to average over samples or 'none' for one loss per sample"
        )
    return reduction


def _check_weight(weight, owner):
    """Return the class weights as a float64 array (K,), or None."""
    if weight is None:
        return None
    array = np.asarray(weight)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number) \
            or np.issubdtype(array.dtype, np.complexfloating):
        raise TypeError(f"{owner} weight must be real numbers, one per class, got dtype {array.dtype}")
    if array.ndim != 1 or array.size == 0:
        raise ValueError(
            f"{owner} weight must be 1-D with one entry per class, got shape {array.shape}; "
            "pass a list such as [1.0, 2.0, 1.0]"
        )
    array = array.astype(np.float64)
    bad = ~np.isfinite(array) | (array < 0)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{owner} weight must be finite and non-negative, but weight[{index}] = "
            f"{float(array[index])}; use 0 to leave a class out"
        )
    return array


def _check_ignore_index(ignore_index, owner):
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(
            f"{owner} ignore_index must be an integer class index or None, got {ignore_index!r}; "
            "use e.g. -100 for the label of unlabeled samples"
        )
    return int(ignore_index)


def _check_fraction(value, name, owner, low, high, *, open_interval=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner} {name} must be a number, got {value!r}")
    inside = low < value < high if open_interval else low <= value <= high
    if not inside:
        interval = f"({low}, {high})" if open_interval else f"[{low}, {high}]"
        raise ValueError(f"{owner} {name} must lie in {interval}, got {value!r}; "
                         f"pick a value in {interval}, e.g. 0.1")
    return float(value)


# Checks of the arrays passed to forward.

def _as_outputs(outputs, name="outputs"):
    """Return outputs as a float32 or float64 array; other numeric dtypes become float64."""
    outputs = np.asarray(outputs)
    if outputs.dtype == bool or not np.issubdtype(outputs.dtype, np.number) \
            or np.issubdtype(outputs.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real numbers, got dtype {outputs.dtype}")
    if outputs.dtype not in (np.float32, np.float64):
        outputs = outputs.astype(np.float64)
    if outputs.ndim == 0 or outputs.shape[0] == 0:
        raise ValueError(f"{name} must have a batch axis with at least one sample, got shape "
                         f"{outputs.shape}; pass an array of shape (N, ...) with N >= 1")
    return outputs


def _as_class_outputs(outputs, name):
    """Return outputs as a float array of shape (N, K), or raise naming the shape received."""
    outputs = _as_outputs(outputs, name)
    if outputs.ndim != 2 or outputs.shape[1] == 0:
        raise ValueError(
            f"{name} must be 2-D with shape (N, K), one row of class scores per sample, got "
            f"shape {outputs.shape}; for a single sample use {name}.reshape(1, -1)"
        )
    return outputs


def _check_batch_size(outputs, targets, name):
    if np.ndim(targets) == 0:
        raise ValueError(f"targets must have one entry per sample, got the scalar {targets!r}; "
                         "pass an array of shape (N,)")
    n_outputs, n_targets = outputs.shape[0], np.shape(targets)[0]
    if n_outputs != n_targets:
        raise ValueError(
            f"{name} has {n_outputs} samples but targets has {n_targets}; pass one target "
            "per sample, e.g. the same batch rows of both"
        )


def _as_soft_targets(targets, shape, dtype):
    """Return class probabilities (N, K) after checking that they are finite and in [0, 1]."""
    if targets.shape != shape:
        raise ValueError(f"soft targets must have the shape of the logits {shape}, got "
                         f"{targets.shape}; pass one probability per class and sample")
    bad = ~np.isfinite(targets) | (targets < 0) | (targets > 1)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"soft targets must be probabilities in [0, 1], but targets[{row}, {column}] = "
            f"{float(targets[row, column])}; pass class probabilities, or integer class indices (N,)"
        )
    return targets.astype(dtype, copy=False)


def _is_soft(targets):
    """Return True for class probabilities (N, K), recognized by ndim 2 and a float dtype."""
    return targets.ndim == 2 and np.issubdtype(targets.dtype, np.floating)


# Reduction shared by all losses.

def _reduce(losses, reduction, denominator):
    """Reduce per-sample losses (N,) to a float, or return them for reduction "none".

    ``denominator`` is what "mean" divides the sum by. When it is 0, for instance
    when every sample is ignored, the mean is NaN, as 0 / 0 is.
    """
    if reduction == "none":
        return losses
    total = np.add.reduce(losses, axis=None, dtype=np.float64)
    if reduction == "sum":
        return float(total)
    if denominator:
        return float(total) / float(denominator)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(total / np.float64(denominator))


def _upstream_scale(grad_output, reduction, denominator, n_samples, dtype, ndim=2):
    """Return the factor that turns per-sample gradients into dL/d(outputs).

    For "mean" it is the scalar grad_output / denominator, or 0 when the denominator
    is 0 (every sample ignored or weighted 0, so no sample has a gradient). For "sum"
    it is the scalar grad_output. For "none" it is the upstream gradient of each
    sample, shaped (N, 1, ...) with ``ndim`` axes so that it scales whole samples.
    """
    if reduction == "none":
        if grad_output is None:
            return dtype.type(1)
        grad_output = np.asarray(grad_output, dtype=dtype)
        if grad_output.shape != (n_samples,):
            raise ValueError(
                f"grad_output for reduction 'none' must have shape ({n_samples},), one value per "
                f"sample, got shape {grad_output.shape}"
            )
        return grad_output.reshape((n_samples,) + (1,) * (ndim - 1))

    if grad_output is None:
        grad_output = 1.0
    elif np.ndim(grad_output) != 0:
        raise ValueError(
            f"grad_output for reduction {reduction!r} must be a scalar, got shape "
            f"{np.shape(grad_output)}; use reduction 'none' for per-sample upstream gradients"
        )
    scale = float(grad_output)
    if reduction == "mean":
        scale = scale / float(denominator) if denominator else 0.0
    return dtype.type(scale)


class Loss:
    """Base class of all losses: the forward/backward contract and the reduction option."""

    expects = "any"

    def __init__(self, reduction="mean"):
        self.reduction = _check_reduction(reduction, type(self).__name__)
        self._cache = None

    def forward(self, outputs, targets):
        raise NotImplementedError

    def backward(self, grad_output=None):
        raise NotImplementedError

    def __call__(self, outputs, targets):
        return self.forward(outputs, targets)

    def _cached(self):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward was called before forward; "
                               "call forward(outputs, targets) first")
        return self._cache

    def __repr__(self):
        return f"{type(self).__name__}(reduction={self.reduction!r})"


def _class_index_terms(targets, n_classes, weight, ignore_index):
    """Return (targets, kept, sample_weight) for class-index targets (N,).

    ``targets`` has ignored entries replaced by 0 so that it can index safely,
    ``kept`` marks the samples that are not ignored and ``sample_weight`` is the
    weight of each sample's target class, 0 for ignored samples.
    """
    targets = check_class_targets(targets, n_classes, ignore_index)
    if ignore_index is None:
        kept = np.ones(len(targets), dtype=bool)
    else:
        kept = targets != ignore_index
        targets = np.where(kept, targets, 0)

    if weight is None:
        sample_weight = kept.astype(np.float64)
    else:
        sample_weight = np.where(kept, weight[targets], 0.0)
    return targets, kept, sample_weight


def _target_losses(sample_weight, target_log_probs):
    """Return -w[y_n] log p[n, y_n] per sample (N,), in the dtype of the log-probabilities.

    A sample with weight 0, which includes every ignored sample, gives 0 even when its
    log-probability is -inf.
    """
    with np.errstate(invalid="ignore"):
        losses = -sample_weight * target_log_probs
    losses = np.where(sample_weight == 0, 0, losses)
    return losses.astype(target_log_probs.dtype, copy=False)


def _weighted_sum(coefficients, values, axis):
    """Return sum(coefficients * values) along ``axis``, counting terms with coefficient 0 as 0.

    A class with target probability 0 and log-probability -inf then adds 0, not NaN.
    """
    with np.errstate(invalid="ignore"):
        products = coefficients * values
    return np.sum(np.where(coefficients == 0, 0, products), axis=axis)


class CrossEntropy(Loss):
    """Cross-entropy of softmax(logits) against class indices or class probabilities.

    ``forward(logits, targets)`` takes logits (N, K) and either class indices (N,)
    or class probabilities (N, K), the soft targets, recognized as a 2-D float
    array. It computes log p = log_softmax(logits), each row shifted by its
    own maximum, and then the negative log-likelihood, so the loss is finite for
    logits of any finite magnitude. Semantics follow PyTorch's CrossEntropyLoss:

    - class indices: loss_n = -w[y_n] log p[n, y_n]. "mean" divides the sum by the
      summed weights w[y_n] of the kept samples, which is their count without weights.
    - ``ignore_index``: a sample with this target adds nothing to the loss, the
      smoothing term or the gradient. If every sample is ignored, the "mean" loss is
      NaN (0 / 0) and the gradient is zero, as in PyTorch.
    - ``label_smoothing`` eps: the target becomes t = (1 - eps) onehot(y) + eps / K,
      so loss_n = -sum_k w_k t_nk log p_nk (w_k = 1 without weights). "mean" still
      divides by the summed w[y_n] of the kept samples.
    - soft targets t (N, K) in [0, 1]: loss_n = -sum_k w_k t_nk log p_nk, smoothed as
      above when eps > 0, and "mean" divides by N. Rows need not sum to 1.
      ``ignore_index`` does not apply to them and raises ValueError.

    A class with target probability 0 adds 0 even if its logit is -inf. A row with
    a +inf or NaN logit has a NaN loss and a NaN gradient row (see
    ``minilearn.functional``), unless the sample is ignored.

    Gradient, for logits z (N, K), p = softmax(z) and plain class indices y:

    1. l_n = -log p[n, y_n] = -z[n, y_n] + logsumexp(z_n).
    2. d logsumexp(z_n) / dz[n, j] = exp(z[n, j]) / sum_k exp(z[n, k]) = p[n, j].
    3. d(-z[n, y_n]) / dz[n, j] = -1 if j = y_n, else 0, i.e. -onehot(y_n)_j.
    4. So dl_n/dz_n = p_n - onehot(y_n), and no other sample's loss depends on z_n.
    5. L = (1 / N) sum_n l_n, so dL/dz = (softmax(z) - onehot(y)) / N.

    With weights, l_n is scaled by w[y_n], so row n of the gradient is too, and
    "mean" divides by sum_n w[y_n] instead of N. Smoothing and soft targets make
    l_n = -sum_k c_nk log p[n, k] with coefficients c (N, K). Steps 2 and 3 give
    d log p[n, k] / dz[n, j] = delta_kj - p[n, j], so

        dl_n/dz[n, j] = -sum_k c_nk (delta_kj - p[n, j]) = p[n, j] sum_k c_nk - c_nj,

    which for c_n = onehot(y_n) is step 4 again.
    """

    expects = "logits"

    def __init__(self, weight=None, ignore_index=None, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        self.weight = _check_weight(weight, "CrossEntropy")
        self.ignore_index = _check_ignore_index(ignore_index, "CrossEntropy")
        self.label_smoothing = _check_fraction(label_smoothing, "label_smoothing",
                                               "CrossEntropy", 0.0, 1.0)

    def forward(self, logits, targets):
        """Return the cross-entropy of logits (N, K) against targets (N,) or (N, K)."""
        if self._takes_plain_path(logits, targets):
            loss = self._forward_plain_rows(logits, targets)
            if loss is not None:
                return loss

        logits = _as_class_outputs(logits, "logits")
        targets = np.asarray(targets)
        _check_batch_size(logits, targets, "logits")
        n_samples, n_classes = logits.shape
        weight = self._class_weight(n_classes, logits.dtype)

        probs, log_probs = F.softmax_and_log_softmax(logits, axis=1)

        if _is_soft(targets):
            if self.ignore_index is not None:
                raise ValueError(
                    f"ignore_index={self.ignore_index} applies only to class-index targets, but "
                    f"the targets are class probabilities of shape {targets.shape}; build "
                    "CrossEntropy without ignore_index, or give ignored rows all-zero targets"
                )
            soft = _as_soft_targets(targets, logits.shape, logits.dtype)
            coefficients = self._smooth(soft, n_classes)
            if weight is not None:
                coefficients = coefficients * weight
            return self._forward_coefficients(log_probs, probs, coefficients,
                                              np.ones(n_samples, dtype=bool), n_samples)

        if weight is None and self.ignore_index is None and self.label_smoothing == 0:
            targets = check_class_targets(targets, n_classes)
            return self._forward_plain(log_probs, probs, targets)

        targets, kept, sample_weight = _class_index_terms(targets, n_classes, weight,
                                                          self.ignore_index)
        denominator = np.sum(sample_weight)
        if self.label_smoothing == 0:
            return self._forward_indices(log_probs, probs, targets, kept, sample_weight,
                                         denominator)

        coefficients = self._smooth(F.one_hot(targets, n_classes, dtype=logits.dtype), n_classes)
        if weight is not None:
            coefficients = coefficients * weight
        coefficients[~kept] = 0
        return self._forward_coefficients(log_probs, probs, coefficients, kept, denominator)

    def _class_weight(self, n_classes, dtype):
        if self.weight is None:
            return None
        if len(self.weight) != n_classes:
            raise ValueError(
                f"CrossEntropy weight has {len(self.weight)} entries but the logits have "
                f"{n_classes} classes; pass one weight per class"
            )
        return self.weight.astype(dtype)

    def _smooth(self, targets, n_classes):
        """Mix targets (N, K) with the uniform distribution: (1 - eps) t + eps / K."""
        eps = self.label_smoothing
        if eps == 0:
            return targets
        return (1 - eps) * targets + eps / n_classes

    def _takes_plain_path(self, logits, targets):
        """Return whether this is a training batch: float logits (N, K) and valid indices (N,).

        That is the case of every training step, so it is recognized with a few cheap
        checks. Anything else, including targets outside [0, K), takes the general
        path, which validates fully and raises the usual errors.
        """
        if self.weight is not None or self.ignore_index is not None or self.label_smoothing:
            return False
        if type(logits) is not np.ndarray or type(targets) is not np.ndarray:
            return False
        if logits.ndim != 2 or targets.ndim != 1 or logits.dtype.char not in "fd":
            return False
        n_samples, n_classes = logits.shape
        if n_samples == 0 or n_classes == 0 or len(targets) != n_samples:
            return False
        return targets.dtype.kind in "iu" and targets.min() >= 0 and targets.max() < n_classes

    def _forward_plain_rows(self, logits, targets):
        """Compute the loss of a training batch with as few numpy calls as possible.

        The values are those of ``softmax_and_log_softmax`` followed by
        ``_forward_plain``, bit for bit, but only the log-probabilities of the
        targets are formed, not the whole (N, K) matrix. Returns None when a row
        has no finite maximum, whose NaN handling the general path does.
        """
        rows = self._row_indices(len(logits))
        argmax = logits.argmax(axis=1)
        row_max = logits[rows, argmax]
        if not math.isfinite(np.add.reduce(row_max, dtype=np.float64)):
            return None

        # As in functional._log_sum_exp_parts: shifted = z - m, and rest is the sum of
        # exp(shifted) over every entry but the argmax, whose exp(0) = 1 log1p adds back.
        shifted = logits - row_max[:, None]
        exps = np.exp(shifted)
        exps[rows, argmax] = 0
        rest = np.add.reduce(exps, axis=1)

        # log p[n, y_n] = shifted[n, y_n] - log1p(rest_n), and p = exp(shifted) / (1 + rest).
        target_log_probs = shifted[rows, targets] - np.log1p(rest)
        exps[rows, argmax] = 1
        rest += 1
        probs = np.divide(exps, rest[:, None], out=exps)

        self._cache = ("plain", probs, targets, np.expm1(target_log_probs))
        if self.reduction == "none":
            return -target_log_probs
        # The float64 sum of -log p equals minus the sum of log p exactly, as _reduce forms it.
        total = -float(np.add.reduce(target_log_probs, dtype=np.float64))
        return total if self.reduction == "sum" else total / len(targets)

    def _row_indices(self, n_samples):
        """Return np.arange(n_samples), kept between calls for the usual batch sizes."""
        rows = getattr(self, "_rows", None)
        if rows is None or len(rows) < n_samples:
            rows = self._rows = np.arange(n_samples)
        return rows[:n_samples]

    def _forward_plain(self, log_probs, probs, targets):
        """Compute the unweighted loss -log p[n, y_n] for class indices, the path training takes.

        It gives the same values as the general path with every weight 1, with fewer steps.
        """
        target_log_probs = log_probs[np.arange(len(targets)), targets]

        # expm1(log p_y) = p_y - 1, without the cancellation of subtracting 1 from p_y near 1.
        self._cache = ("plain", probs, targets, np.expm1(target_log_probs))
        return _reduce(-target_log_probs, self.reduction, len(targets))

    def _forward_indices(self, log_probs, probs, targets, kept, sample_weight, denominator):
        """Compute the loss for class indices without smoothing, the path training takes."""
        rows = np.arange(len(targets))
        target_log_probs = log_probs[rows, targets]

        losses = _target_losses(sample_weight, target_log_probs)

        # expm1(log p_y) = p_y - 1, without the cancellation of subtracting 1 from p_y near 1.
        self._cache = ("indices", probs, targets, kept, sample_weight, np.expm1(target_log_probs),
                       denominator)
        return _reduce(losses, self.reduction, denominator)

    def _forward_coefficients(self, log_probs, probs, coefficients, kept, denominator):
        """Compute the loss -sum_k c_nk log p_nk for a coefficient matrix c (N, K)."""
        losses = -_weighted_sum(coefficients, log_probs, axis=1).astype(log_probs.dtype, copy=False)
        self._cache = ("coefficients", probs, coefficients, kept, denominator)
        return _reduce(losses, self.reduction, denominator)

    def backward(self, grad_output=None):
        """Return dL/d(logits), shape (N, K), from the softmax cached by forward."""
        cache = self._cached()
        if cache[0] == "plain":
            return self._backward_plain(cache, grad_output)
        if cache[0] == "indices":
            return self._backward_indices(cache, grad_output)
        return self._backward_coefficients(cache, grad_output)

    def _backward_plain(self, cache, grad_output):
        _, probs, targets, target_grad = cache
        n_samples = len(targets)
        scale = _upstream_scale(grad_output, self.reduction, n_samples, n_samples, probs.dtype)

        # dl_n/dz = p_n - onehot(y_n): copy p and put p_y - 1 at each target, then scale
        # by the upstream gradient (1 / N for "mean").
        grad = probs.copy()
        grad[np.arange(n_samples), targets] = target_grad
        grad *= scale
        return grad

    def _backward_indices(self, cache, grad_output):
        _, probs, targets, kept, sample_weight, target_grad, denominator = cache
        n_samples = len(targets)
        scale = _upstream_scale(grad_output, self.reduction, denominator, n_samples, probs.dtype)

        # dl_n/dz = p_n - onehot(y_n): copy p and put p_y - 1 at each target.
        grad = probs.copy()
        grad[np.arange(n_samples), targets] = target_grad

        # Row n gets the factor w[y_n], and ignored rows get 0 even where p is NaN.
        if self.weight is not None:
            grad *= sample_weight.astype(probs.dtype)[:, None]
        if not kept.all():
            grad[~kept] = 0

        # dL/dz = dl_n/dz * upstream, e.g. / N or / sum w[y_n] for "mean".
        grad *= scale
        return grad

    def _backward_coefficients(self, cache, grad_output):
        _, probs, coefficients, kept, denominator = cache
        n_samples = len(probs)
        scale = _upstream_scale(grad_output, self.reduction, denominator, n_samples, probs.dtype)

        # dl_n/dz_j = p_nj * sum_k c_nk - c_nj
        grad = probs * np.sum(coefficients, axis=1, keepdims=True) - coefficients
        if not kept.all():
            grad[~kept] = 0

        grad *= scale
        return grad

    def __repr__(self):
        return (f"CrossEntropy(weight={None if self.weight is None else self.weight.tolist()}, "
                f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, "
                f"label_smoothing={self.label_smoothing})")


class NLLLoss(Loss):
    """Negative log-likelihood of log-probabilities (N, K) against class indices (N,).

    loss_n = -w[y_n] logp[n, y_n], where logp is typically the output of the
    ``LogSoftmax`` layer, and "mean" divides by the summed w[y_n] of the kept
    samples. ``LogSoftmax`` followed by ``NLLLoss`` equals ``CrossEntropy`` with the
    same weight and ignore_index in value and gradient. Samples whose target is
    ``ignore_index`` add nothing, and if all are ignored the "mean" loss is NaN with
    a zero gradient, as in PyTorch.

    Gradient: dl_n/d logp[n, k] = -w[y_n] if k = y_n, else 0.
    """

    expects = "log_probabilities"

    def __init__(self, weight=None, ignore_index=None, reduction="mean"):
        super().__init__(reduction)
        self.weight = _check_weight(weight, "NLLLoss")
        self.ignore_index = _check_ignore_index(ignore_index, "NLLLoss")

    def forward(self, log_probs, targets):
        """Return the negative log-likelihood of log_probs (N, K) at targets (N,)."""
        log_probs = _as_class_outputs(log_probs, "log_probs")
        _check_batch_size(log_probs, targets, "log_probs")
        n_samples, n_classes = log_probs.shape
        weight = None
        if self.weight is not None:
            if len(self.weight) != n_classes:
                raise ValueError(
                    f"NLLLoss weight has {len(self.weight)} entries but log_probs has "
                    f"{n_classes} classes; pass one weight per class"
                )
            weight = self.weight

        targets, kept, sample_weight = _class_index_terms(targets, n_classes, weight,
                                                          self.ignore_index)
        target_log_probs = log_probs[np.arange(n_samples), targets]
        losses = _target_losses(sample_weight, target_log_probs)

        denominator = np.sum(sample_weight)
        self._cache = (log_probs.shape, log_probs.dtype, targets, sample_weight, denominator)
        return _reduce(losses, self.reduction, denominator)

    def backward(self, grad_output=None):
        """Return dL/d(log_probs), shape (N, K): -w[y_n] * upstream at each target, 0 elsewhere."""
        shape, dtype, targets, sample_weight, denominator = self._cached()
        scale = _upstream_scale(grad_output, self.reduction, denominator, shape[0], dtype)

        grad = np.zeros(shape, dtype=dtype)
        grad[np.arange(shape[0]), targets] = -sample_weight
        grad *= scale
        return grad


class ProbabilityNLL(Loss):
    """Negative log-likelihood of class probabilities (N, K): log, then NLL.

    These are the last two steps of ``NaiveCrossEntropy``, usable on their own
    after a ``Softmax`` layer: ``Softmax`` then ``ProbabilityNLL`` equals
    ``NaiveCrossEntropy`` up to the rounding of the shifted softmax.

    - log: log p, or log(clip(p, clip, 1 - clip)) when ``clip`` is set. Backward:
      dL/dp = g / p, and 0 wherever the clip was active.
    - NLL: loss_n = -logp[n, y_n]. Backward: dL/d logp[n, k] = -1 if k = y_n, else 0.

    Without ``clip`` a probability of 0 gives an inf loss, and, as in the naive
    chain rule, 0 / 0 = NaN in the gradient for every class with probability 0.
    With ``clip`` (e.g. 1e-7) the loss of each sample is capped at -log(clip),
    about 16.12 for 1e-7, and the gradient is 0 where p < clip or p > 1 - clip.
    """

    expects = "probabilities"

    def __init__(self, clip=None, reduction="mean"):
        super().__init__(reduction)
        if clip is not None:
            clip = _check_fraction(clip, "clip", type(self).__name__, 0.0, 0.5, open_interval=True)
        self.clip = clip

    def forward(self, probs, targets):
        """Return the reduced -log p[n, y_n] for probabilities (N, K) and class indices (N,)."""
        probs = _as_class_outputs(probs, "probs")
        _check_batch_size(probs, targets, "probs")
        n_samples, n_classes = probs.shape
        targets = check_class_targets(targets, n_classes)

        # Step: log, of the clipped probabilities when clip is set.
        if self.clip is None:
            used, inside = probs, None
        else:
            used = np.clip(probs, self.clip, 1 - self.clip)
            inside = (probs >= self.clip) & (probs <= 1 - self.clip)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_probs = np.log(used)

        # Step: NLL.
        losses = -log_probs[np.arange(n_samples), targets]

        self._cache = (used, inside, targets)
        return _reduce(losses, self.reduction, n_samples)

    def backward(self, grad_output=None):
        """Return dL/d(probs), shape (N, K), through the NLL step and then the log step."""
        used, inside, targets = self._cached()
        n_samples = len(targets)
        scale = _upstream_scale(grad_output, self.reduction, n_samples, n_samples, used.dtype)

        # NLL backward: dL/d logp = -onehot(y) * upstream.
        grad_log = np.zeros_like(used)
        grad_log[np.arange(n_samples), targets] = -1
        grad_log *= scale

        # log backward: dL/dp = dL/d logp / p, and clip backward passes it only inside the clip.
        with np.errstate(divide="ignore", invalid="ignore"):
            grad = grad_log / used
        if inside is not None:
            grad = np.where(inside, grad, 0).astype(used.dtype, copy=False)
        return grad

    def __repr__(self):
        return f"{type(self).__name__}(clip={self.clip}, reduction={self.reduction!r})"


class NaiveCrossEntropy(Loss):
    """Cross-entropy by the textbook formula: softmax, then log, then NLL, unguarded.

    Its purpose is to show what the stable ``CrossEntropy`` avoids, so use it for
    comparisons, not for training. The softmax is exp(z) / sum(exp(z)) without the
    max shift, so it overflows exactly as that formula does: exp(z) is inf for
    logits above about 88.72 in float32 and 709.78 in float64, and the loss and
    gradient become NaN. A probability that underflows to 0 gives an inf loss at
    its target and NaN gradients (0 / 0 in the log step) elsewhere. NumPy's
    warnings are silenced, which changes no result.

    Steps, each with its own backward:

    1. softmax: p = exp(z) / sum_k exp(z_k). Backward is the Jacobian-vector
       product dL/dz = p * (g - sum_k g_k p_k), with g = dL/dp.
    2. log and 3. NLL: done by ``self.probability_nll``, a ``ProbabilityNLL`` with
       the same clip and reduction, which can also follow a ``Softmax`` layer.

    ``clip`` (e.g. 1e-7) clips p to [clip, 1 - clip] before the log, which caps
    each sample's loss at -log(clip), about 16.12 for 1e-7, where the true loss of
    a confidently wrong prediction can be far larger. The gradient is 0 where the
    clip is active.
    """

    expects = "logits"

    def __init__(self, clip=None, reduction="mean"):
        super().__init__(reduction)
        self.probability_nll = ProbabilityNLL(clip=clip, reduction=reduction)
        self.clip = self.probability_nll.clip

    def forward(self, logits, targets):
        """Return the cross-entropy of logits (N, K) against class indices (N,), naively."""
        logits = _as_class_outputs(logits, "logits")
        _check_batch_size(logits, targets, "logits")

        # Step 1: softmax without the max shift.
        with np.errstate(all="ignore"):
            exps = np.exp(logits)
            probs = exps / np.sum(exps, axis=1, keepdims=True)
        self._cache = probs

        # Steps 2 and 3: log and NLL.
        with np.errstate(all="ignore"):
            return self.probability_nll.forward(probs, targets)

    def backward(self, grad_output=None):
        """Return dL/d(logits), shape (N, K), through NLL, log and softmax in turn."""
        probs = self._cached()
        with np.errstate(all="ignore"):
            grad_probs = self.probability_nll.backward(grad_output)

            # Step 1 backward: dL/dz = p * (g - sum_k g_k p_k).
            weighted = np.sum(grad_probs * probs, axis=1, keepdims=True)
            return probs * (grad_probs - weighted)

    def __repr__(self):
        return f"NaiveCrossEntropy(clip={self.clip}, reduction={self.reduction!r})"


def _as_matching_targets(targets, outputs, owner):
    """Return float targets with exactly the outputs' shape and dtype, without broadcasting."""
    targets = np.asarray(targets)
    if targets.dtype == bool or not np.issubdtype(targets.dtype, np.number) \
            or np.issubdtype(targets.dtype, np.complexfloating):
        raise TypeError(f"{owner} targets must be real numbers, got dtype {targets.dtype}")
    if targets.shape != outputs.shape:
        hint = (f"; reshape them, e.g. targets.reshape{outputs.shape}"
                if targets.size == outputs.size else "")
        raise ValueError(
            f"{owner} outputs have shape {outputs.shape} but targets have shape "
            f"{targets.shape}; {owner} does not broadcast, so the shapes must be equal{hint}"
        )
    return targets.astype(outputs.dtype, copy=False)


def _per_sample_mean(values):
    """Return the mean over every axis but the first, shape (N,)."""
    return values.reshape(len(values), -1).mean(axis=1)


class MSE(Loss):
    """Mean squared error between outputs and targets of the same shape.

    "mean" averages (outputs - targets)**2 over every element, as PyTorch's
    MSELoss does. scikit-learn's MLPRegressor minimizes half of this value, so its
    loss_ reads half as large. "sum" adds every element, and "none" returns each
    sample's mean over its own elements, shape (N,).

    For classification, integer targets (N,) with outputs (N, K), K >= 2, become
    one-hot rows. Otherwise the shapes must match exactly: outputs (3, 1) with
    targets (3,) raise ValueError instead of broadcasting to (3, 3).

    Gradient: d/d(outputs) of mean((o - t)**2) is 2 * (o - t) / (number of elements).
    """

    expects = "any"

    def forward(self, outputs, targets):
        """Return the squared error of outputs against targets, reduced."""
        outputs = _as_outputs(outputs)
        targets = np.asarray(targets)
        _check_batch_size(outputs, targets, "outputs")

        if outputs.ndim == 2 and outputs.shape[1] >= 2 and targets.ndim == 1 \
                and np.issubdtype(targets.dtype, np.integer):
            targets = F.one_hot(targets, outputs.shape[1], dtype=outputs.dtype)
        else:
            targets = _as_matching_targets(targets, outputs, "MSE")

        # Outputs of a diverging run may square past the float maximum. The result is
        # inf, which the training loop reports, so numpy's warning would only repeat it.
        with np.errstate(over="ignore"):
            diff = outputs - targets
            squared = diff * diff
        self._cache = diff
        if self.reduction == "none":
            return _per_sample_mean(squared)
        return _reduce(squared.ravel(), self.reduction, squared.size)

    def backward(self, grad_output=None):
        """Return dL/d(outputs) = 2 * (outputs - targets) * upstream, shaped like outputs."""
        diff = self._cached()
        n_samples = len(diff)
        per_sample = diff.size // n_samples

        # For "none" each sample's loss is a mean over its own elements.
        denominator = diff.size if self.reduction == "mean" else per_sample
        scale = _upstream_scale(grad_output, self.reduction, denominator, n_samples, diff.dtype,
                                diff.ndim)
        if self.reduction == "none":
            scale = scale / diff.dtype.type(per_sample)

        return 2 * diff * scale


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy from logits x against targets t in [0, 1] of the same shape.

    loss = max(x, 0) - x t + log1p(exp(-|x|)), which equals
    -t log sigmoid(x) - (1 - t) log(1 - sigmoid(x)) but cannot overflow, because
    exp(-|x|) <= 1, and does not round sigmoid(x) to 0 or 1 first. "mean" averages over every element, "sum"
    adds them and "none" returns each sample's mean over its own elements, (N,).
    Non-finite logits are not checked: they give NaN or inf in the loss, which the
    training loop reports.

    Gradient: d loss / dx = sigmoid(x) - t, computed as
    (1 - t) sigmoid(x) - t sigmoid(-x) so that for t = 1 and large x the small
    result -sigmoid(-x) keeps full precision.
    """

    expects = "logits"

    def forward(self, logits, targets):
        """Return the binary cross-entropy of logits against targets, reduced."""
        logits = _as_outputs(logits, "logits")
        _check_batch_size(logits, targets, "logits")
        targets = _as_matching_targets(targets, logits, "BinaryCrossEntropy")
        bad = ~np.isfinite(targets) | (targets < 0) | (targets > 1)
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"BinaryCrossEntropy targets must lie in [0, 1], but targets{list(index)} = "
                f"{float(targets[index])}; pass 0/1 labels or probabilities"
            )

        with np.errstate(invalid="ignore"):
            losses = np.maximum(logits, 0) - logits * targets + np.log1p(np.exp(-np.abs(logits)))
        self._cache = (logits, targets)
        if self.reduction == "none":
            return _per_sample_mean(losses)
        return _reduce(losses.ravel(), self.reduction, losses.size)

    def backward(self, grad_output=None):
        """Return dL/d(logits) = (sigmoid(x) - t) * upstream, shaped like the logits."""
        logits, targets = self._cached()
        n_samples = len(logits)
        per_sample = logits.size // n_samples

        denominator = logits.size if self.reduction == "mean" else per_sample
        scale = _upstream_scale(grad_output, self.reduction, denominator, n_samples, logits.dtype,
                                logits.ndim)
        if self.reduction == "none":
            scale = scale / logits.dtype.type(per_sample)

        grad = (1 - targets) * F.sigmoid(logits) - targets * F.sigmoid(-logits)
        return (grad * scale).astype(logits.dtype, copy=False)


# Configs name losses through this registry, shared with plugins.
for _name, _loss_class in {
    "cross_entropy": CrossEntropy,
    "naive_cross_entropy": NaiveCrossEntropy,
    "nll": NLLLoss,
    "mse": MSE,
    "binary_cross_entropy": BinaryCrossEntropy,
}.items():
    LOSSES.register(_name)(_loss_class)


def make_loss(name, **options):
    """Build the loss registered in ``LOSSES`` under ``name`` with keyword ``options``.

    Raises ValueError for an unknown name, listing the valid ones, and for an
    option that the loss's constructor does not take, listing the ones it does.
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid names are {', '.join(LOSSES)}")
    loss_class = LOSSES[name]

    accepted = [parameter for parameter in inspect.signature(loss_class.__init__).parameters
                if parameter != "self"]
    unknown = [option for option in options if option not in accepted]
    if unknown:
        raise ValueError(
            f"loss {name!r} has no option {unknown[0]!r}; its options are {', '.join(accepted)}"
        )
    return loss_class(**options)
