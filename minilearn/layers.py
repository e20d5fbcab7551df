"""Layers with hand-derived backward passes.

Every layer follows one contract:

- ``forward(x)`` returns the output and caches what the backward pass needs;
- ``backward(grad_output)`` takes dL/d(output), returns dL/d(input) and stores
  dL/d(parameter) in ``grads`` under the parameter's name in ``params``;
- ``train()`` and ``eval()`` switch the mode in ``training``, and the class
  attribute ``eval_behavior`` declares how evaluation mode differs from training
  mode, so that ``minilearn.testing.check_layer`` can check it.

Shapes: N is the batch size, D the number of input features and H the number of
output features. Layers keep the dtype of their parameters and inputs: a float32
input gives float32 outputs and gradients.
"""

import numpy as np

from minilearn import functional as F
from minilearn.registry import LAYERS
from minilearn.validation import check_dtype


class Layer:
    """Base class of all layers: named parameters, their gradients and the train/eval mode."""

    # How forward in evaluation mode relates to training mode:
    # - "same": the two modes give the same output;
    # - "identity": evaluation mode returns the input unchanged (Dropout);
    # - "running_statistics": training mode normalizes with the batch's statistics and
    #   updates running estimates, which evaluation mode uses sample by sample (BatchNorm1d).
    eval_behavior = "same"

    def __init__(self):
        self.params = {}
        self.grads = {}
        # State that is saved with the model but not trained, e.g. running statistics.
        self.buffers = {}
        self.training = True
        # When False, backward skips dL/d(input) and returns None. The model sets
        # this on its first layer, whose input is the data and needs no gradient.
        self.needs_input_grad = True

    def forward(self, x):
        raise NotImplementedError

    def backward(self, grad_output):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def train(self, mode=True):
        """Set training mode (``mode=True``) or evaluation mode (``mode=False``)."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Set evaluation mode."""
        return self.train(False)

    def __repr__(self):
        return f"{type(self).__name__}()"


class _ConstantBuffer:
    """An array filled with one value, kept between batches and grown when a batch needs more rows."""

    def __init__(self, value):
        self.value = value
        self.array = None

    def like(self, shape, dtype):
        """Return a view of the kept array with ``shape`` and ``dtype``, or a scalar for shape ()."""
        if not shape:
            return np.dtype(dtype).type(self.value)
        array = self.array
        if (array is None or array.dtype != dtype or array.shape[1:] != tuple(shape[1:])
                or len(array) < shape[0]):
            array = self.array = np.full(shape, self.value, dtype=dtype)
        return array[:shape[0]]


@LAYERS.register("linear")
class Linear(Layer):
    """Affine map ``x @ weight + bias``.

    Parameters ``weight`` (D, H) and ``bias`` (H,). Initialization, with bias zero:

    - ``init="glorot"``: uniform on [-a, a] with a = sqrt(6 / (D + H)), which keeps
      the variance of activations and gradients steady for tanh, sigmoid and identity;
    - ``init="he"``: normal with standard deviation sqrt(2 / D), which makes up for
      ReLU zeroing half of its inputs.

    ``rng`` is a ``numpy.random.Generator``. Without one a fresh unseeded generator is
    used, so pass one for reproducible weights.
    """

    INITS = ("glorot", "he")

    def __init__(self, in_features, out_features, *, rng=None, dtype=np.float64,
                 init="glorot", bias=True):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Linear {name} must be a positive integer, got {value!r}")
        if init not in self.INITS:
            raise ValueError(f"Linear init must be one of {', '.join(self.INITS)}, got {init!r}")
        dtype = check_dtype(dtype)
        if rng is None:
            rng = np.random.default_rng()

        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.init = init
        self.params["weight"] = self._initial_weight(rng, dtype)
        self.grads["weight"] = np.zeros_like(self.params["weight"])
        if bias:
            self.params["bias"] = np.zeros(self.out_features, dtype=dtype)
            self.grads["bias"] = np.zeros_like(self.params["bias"])
        self._x = None
        self._ones = _ConstantBuffer(1)

    def _initial_weight(self, rng, dtype):
        shape = (self.in_features, self.out_features)
        if self.init == "he":
            weight = rng.normal(0.0, np.sqrt(2.0 / self.in_features), size=shape)
        else:
            limit = np.sqrt(6.0 / (self.in_features + self.out_features))
            weight = rng.uniform(-limit, limit, size=shape)
        return weight.astype(dtype)

    def forward(self, x):
        """Map x (N, D) to x @ weight + bias, shape (N, H)."""
        self._x = x
        out = x @ self.params["weight"]
        if "bias" in self.params:
            out += self.params["bias"]
        return out

    def backward(self, grad_output):
        """Backward pass of out = x @ W + b, with g = dL/d(out) of shape (N, H).

        dL/dW = x.T @ g        (D, H)
        dL/db = sum_n g[n]     (H,)
        dL/dx = g @ W.T        (N, D), skipped when ``needs_input_grad`` is False
        """
        np.matmul(self._x.T, grad_output, out=self.grads["weight"])
        if "bias" in self.params:
            # ones (N,) @ g is the column sum, and BLAS does it faster than np.sum here.
            np.matmul(self._ones.like((len(grad_output),), grad_output.dtype), grad_output,
                      out=self.grads["bias"])

        if not self.needs_input_grad:
            return None
        return grad_output @ self.params["weight"].T

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features}, dtype={self.params['weight'].dtype})"


@LAYERS.register("identity")
class Identity(Layer):
    """out = x, so dL/dx = dL/d(out)."""

    def forward(self, x):
        return x

    def backward(self, grad_output):
        return grad_output


@LAYERS.register("relu")
class ReLU(Layer):
    """out = max(x, 0) elementwise. dL/dx = dL/d(out) where x > 0, else 0."""

    def __init__(self):
        super().__init__()
        # In numpy 2.4, maximum(x, 0) took about four times as long with the scalar 0 as
        # with an array of zeros, for a float32 batch of shape (128, 256).
        self._zeros = _ConstantBuffer(0)

    def forward(self, x):
        # backward multiplies by this mask, which costs less than comparing again.
        self._mask = x > 0
        return np.maximum(x, self._zeros.like(x.shape, x.dtype))

    def backward(self, grad_output):
        return grad_output * self._mask


@LAYERS.register("tanh")
class Tanh(Layer):
    """out = tanh(x). dL/dx = dL/d(out) * (1 - out**2)."""

    def forward(self, x):
        self._out = np.tanh(x)
        return self._out

    def backward(self, grad_output):
        return grad_output * (1 - self._out * self._out)


@LAYERS.register("sigmoid")
class Sigmoid(Layer):
    """out = 1 / (1 + exp(-x)). dL/dx = dL/d(out) * out * (1 - out)."""

    def forward(self, x):
        # exp(-|x|) never overflows; pick the algebraically equal form for each sign.
        e = np.exp(-np.abs(x))
        self._out = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
        return self._out

    def backward(self, grad_output):
        return grad_output * self._out * (1 - self._out)


@LAYERS.register("softmax")
class Softmax(Layer):
    """Probabilities p = softmax(x) along the last axis, shape (N, K).

    Backward is the Jacobian-vector product. With dp_i/dx_j = p_i * (delta_ij - p_j),
    dL/dx_j = sum_i g_i * p_i * (delta_ij - p_j) = p_j * (g_j - sum_i g_i * p_i).
    """

    def forward(self, x):
        self._out = F.softmax(x, axis=-1)
        return self._out

    def backward(self, grad_output):
        p = self._out
        weighted = np.sum(grad_output * p, axis=-1, keepdims=True)
        return p * (grad_output - weighted)


@LAYERS.register("log_softmax")
class LogSoftmax(Layer):
    """Log-probabilities y = x - logsumexp(x) along the last axis, shape (N, K).

    With dy_i/dx_j = delta_ij - softmax(x)_j, the backward pass is
    dL/dx_j = g_j - softmax(x)_j * sum_i g_i.
    """

    def forward(self, x):
        self._out = F.log_softmax(x, axis=-1)
        return self._out

    def backward(self, grad_output):
        probs = np.exp(self._out)
        return grad_output - probs * np.sum(grad_output, axis=-1, keepdims=True)


# Layers added through the registry, each checked by minilearn.testing.check_layer.


def _check_finite_number(value, name, owner, *, minimum=None, maximum=None, strict_minimum=False):
    """Return ``value`` as a float after checking that it is a finite real number in range."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{owner} {name} must be a number, got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{owner} {name} must be finite, got {value!r}")

    too_small = minimum is not None and (value <= minimum if strict_minimum else value < minimum)
    too_large = maximum is not None and value > maximum
    if too_small or too_large:
        low = "-inf" if minimum is None else minimum
        high = "inf" if maximum is None else maximum
        bracket = "(" if strict_minimum else "["
        raise ValueError(f"{owner} {name} must lie in {bracket}{low}, {high}], got {value!r}")
    return value


def _check_generator(rng, owner):
    """Return ``rng``, or a fresh unseeded generator for None; anything else raises TypeError."""
    if rng is None:
        return np.random.default_rng()
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{owner} rng must be a numpy.random.Generator, e.g. "
                        f"numpy.random.default_rng(0), got {type(rng).__name__}")
    return rng


@LAYERS.register("leaky_relu")
class LeakyReLU(Layer):
    """out = x where x > 0, else negative_slope * x, elementwise.

    dL/dx = dL/d(out) where x > 0, else negative_slope * dL/d(out). At x = 0 the
    derivative is undefined, and backward uses negative_slope there, as ReLU uses 0.
    """

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = _check_finite_number(negative_slope, "negative_slope", "LeakyReLU")
        self._positive = None

    def forward(self, x):
        """Map x (N, D) to the same shape and dtype."""
        self._positive = x > 0
        return np.where(self._positive, x, x * self.negative_slope)

    def backward(self, grad_output):
        """Return dL/dx (N, D): the upstream gradient, times negative_slope where x <= 0."""
        if not self.needs_input_grad:
            return None
        return np.where(self._positive, grad_output, grad_output * self.negative_slope)

    def __repr__(self):
        return f"LeakyReLU(negative_slope={self.negative_slope})"


@LAYERS.register("elu")
class ELU(Layer):
    """out = x where x > 0, else alpha * (exp(x) - 1), elementwise.

    dL/dx = dL/d(out) where x > 0, else dL/d(out) * alpha * exp(x). With alpha = 1 the
    derivative is continuous at 0, and for other alpha backward uses alpha there.
    """

    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = _check_finite_number(alpha, "alpha", "ELU", minimum=0.0, strict_minimum=True)
        self._positive = None
        self._negative_slope = None

    def forward(self, x):
        """Map x (N, D) to the same shape and dtype."""
        self._positive = x > 0

        # min(x, 0) keeps exp from overflowing on the positive entries, which take x itself.
        # expm1 keeps alpha * (exp(x) - 1) precise near 0, and the derivative alpha * exp(x)
        # is computed on its own, because out + alpha would cancel for very negative x.
        negative = np.minimum(x, 0)
        self._negative_slope = self.alpha * np.exp(negative)
        return np.where(self._positive, x, self.alpha * np.expm1(negative))

    def backward(self, grad_output):
        """Return dL/dx (N, D): the upstream gradient, times alpha * exp(x) where x <= 0."""
        if not self.needs_input_grad:
            return None
        return np.where(self._positive, grad_output, grad_output * self._negative_slope)

    def __repr__(self):
        return f"ELU(alpha={self.alpha})"


@LAYERS.register("softplus")
class Softplus(Layer):
    """out = log(1 + exp(beta * x)) / beta, elementwise, a smooth ReLU.

    It is computed as (max(bx, 0) + log1p(exp(-|bx|))) / beta with bx = beta * x,
    which is the same value but cannot overflow, because exp(-|bx|) <= 1. So it
    needs no threshold above which it switches to the identity, as the
    ``threshold`` argument of PyTorch's Softplus (2.x) does.

    dL/dx = dL/d(out) * sigmoid(beta * x), because d/dx log(1 + exp(bx)) / beta
    = exp(bx) / (1 + exp(bx)).
    """

    def __init__(self, beta=1.0):
        super().__init__()
        self.beta = _check_finite_number(beta, "beta", "Softplus", minimum=0.0,
                                         strict_minimum=True)
        self._sigmoid = None

    def forward(self, x):
        """Map x (N, D) to the same shape and dtype."""
        scaled = x * self.beta
        e = np.exp(-np.abs(scaled))

        # sigmoid(bx) from the same e, in the form that keeps precision for each sign.
        self._sigmoid = np.where(scaled >= 0, 1 / (1 + e), e / (1 + e))
        return (np.maximum(scaled, 0) + np.log1p(e)) / self.beta

    def backward(self, grad_output):
        """Return dL/dx = dL/d(out) * sigmoid(beta * x), shape (N, D)."""
        if not self.needs_input_grad:
            return None
        return grad_output * self._sigmoid

    def __repr__(self):
        return f"Softplus(beta={self.beta})"


@LAYERS.register("dropout")
class Dropout(Layer):
    """Inverted dropout: in training mode each entry is zeroed with probability ``p``.

    Training mode draws a mask m with m = 1 / (1 - p) for kept entries and 0 for
    dropped ones, so out = x * m keeps the expected value E[out] = x and evaluation
    mode needs no rescaling. Evaluation mode returns the input unchanged. Backward
    uses the mask of the last forward, dL/dx = dL/d(out) * m, or passes the gradient
    through unchanged after a forward in evaluation mode. ``p = 1`` drops everything.

    The mask comes from the layer's own ``rng``, a ``numpy.random.Generator``, and
    never from numpy's global random state. Without one, a fresh unseeded generator
    is used, so pass one for reproducible masks. The draws do not depend on the dtype,
    so a float32 and a float64 layer with equally seeded generators drop the same entries.
    """

    eval_behavior = "identity"

    def __init__(self, p=0.5, *, rng=None):
        super().__init__()
        self.p = _check_finite_number(p, "p", "Dropout", minimum=0.0, maximum=1.0)
        self.rng = _check_generator(rng, "Dropout")
        self._mask = None

    def forward(self, x):
        """Map x (N, D) to x * mask in training mode and to x itself in evaluation mode."""
        if not self.training or self.p == 0:
            self._mask = None
            return x

        keep = self.rng.random(x.shape) >= self.p
        scale = 0.0 if self.p == 1 else 1.0 / (1.0 - self.p)
        self._mask = keep.astype(x.dtype) * scale
        return x * self._mask

    def backward(self, grad_output):
        """Return dL/dx (N, D): the upstream gradient times the mask of the last forward."""
        if not self.needs_input_grad:
            return None
        if self._mask is None:
            return grad_output
        return grad_output * self._mask

    def __repr__(self):
        return f"Dropout(p={self.p})"


@LAYERS.register("batch_norm1d")
class BatchNorm1d(Layer):
    """Batch normalization of each feature of x (N, D), with a learned scale and shift.

    Parameters ``gamma`` (D,), initially 1, and ``beta`` (D,), initially 0. Running
    estimates ``running_mean`` (D,) and ``running_var`` (D,) live in ``buffers``.

    Training mode normalizes each feature by the batch's mean and biased variance
    and then updates the running estimates. The update follows the convention of
    PyTorch's BatchNorm1d (2.x), where ``momentum`` is the weight of the new batch:

        running = (1 - momentum) * running + momentum * batch_statistic

    with the unbiased batch variance (times N / (N - 1)) for ``running_var``. With
    ``momentum=None`` the running estimates are the plain average over all batches
    seen so far. Evaluation mode normalizes with the running estimates instead, so
    each sample's output depends on that sample alone. Training mode needs at least
    2 samples per batch, because the variance of one sample is 0.

    ``Sequential.save`` stores the buffers beside the parameters, so a loaded model
    evaluates with the running estimates it was saved with.

    Forward, for one feature, with samples x_n, n = 1..N:

        mu   = (1/N) sum_n x_n
        v    = (1/N) sum_n (x_n - mu)^2
        s    = 1 / sqrt(v + eps)
        xh_n = (x_n - mu) * s
        y_n  = gamma * xh_n + beta

    Backward, with g_n = dL/dy_n. The parameters enter only the last line:

        dL/dbeta  = sum_n g_n
        dL/dgamma = sum_n g_n * xh_n
        h_n       = dL/dxh_n = g_n * gamma

    Each x_n reaches L along three paths: through its own xh_n, through mu and
    through v (and so s), so dL/dx_n = h_n * s + dL/dv * dv/dx_n + dL/dmu * dmu/dx_n.

    1. ds/dv = -(1/2) (v + eps)^(-3/2) = -s^3 / 2, so
       dL/dv = sum_m h_m * (x_m - mu) * (-s^3 / 2).
    2. mu enters xh_m directly, with dxh_m/dmu = -s, and through v, with
       dv/dmu = -(2/N) sum_m (x_m - mu) = 0, so dL/dmu = -s * sum_m h_m.
    3. dv/dx_n = 2 (x_n - mu) / N and dmu/dx_n = 1 / N.
    4. Put together, with x_m - mu = xh_m / s:
       dL/dx_n = h_n s - (s / N) xh_n sum_m h_m xh_m - (s / N) sum_m h_m
               = (s / N) * (N h_n - sum_m h_m - xh_n * sum_m h_m xh_m).

    Evaluation mode uses the running estimates, which do not depend on x, so there
    dL/dx_n = h_n / sqrt(running_var + eps).
    """

    eval_behavior = "running_statistics"

    def __init__(self, num_features, eps=1e-5, momentum=0.1, *, dtype=np.float64):
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) \
                or num_features < 1:
            raise ValueError(f"BatchNorm1d num_features must be a positive integer, "
                             f"got {num_features!r}")
        self.eps = _check_finite_number(eps, "eps", "BatchNorm1d", minimum=0.0,
                                        strict_minimum=True)
        if momentum is not None:
            momentum = _check_finite_number(momentum, "momentum", "BatchNorm1d",
                                            minimum=0.0, maximum=1.0)
        self.momentum = momentum
        dtype = check_dtype(dtype)

        self.num_features = int(num_features)
        self.params["gamma"] = np.ones(self.num_features, dtype=dtype)
        self.params["beta"] = np.zeros(self.num_features, dtype=dtype)
        self.grads["gamma"] = np.zeros_like(self.params["gamma"])
        self.grads["beta"] = np.zeros_like(self.params["beta"])
        self.buffers = {
            "running_mean": np.zeros(self.num_features, dtype=dtype),
            "running_var": np.ones(self.num_features, dtype=dtype),
            # A 0-d array, so that it is saved with the model like the running estimates.
            "batches_tracked": np.zeros((), dtype=np.int64),
        }
        self._cache = None

    def forward(self, x):
        """Normalize x (N, D) per feature and return gamma * x_hat + beta, shape (N, D)."""
        self._check_input(x)
        if self.training:
            x_hat, inv_std = self._normalize_by_batch(x)
        else:
            inv_std = 1 / np.sqrt(self.buffers["running_var"] + self.eps)
            x_hat = (x - self.buffers["running_mean"]) * inv_std

        self._cache = (x_hat, inv_std, self.training)
        return x_hat * self.params["gamma"] + self.params["beta"]

    def _check_input(self, x):
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm1d expects input of shape (N, {self.num_features}), "
                             f"got shape {x.shape}")
        if self.training and x.shape[0] < 2:
            raise ValueError(f"BatchNorm1d in training mode needs at least 2 samples per batch, "
                             f"got {x.shape[0]}; pick a batch_size that leaves no batch of one "
                             "sample, or call eval() first")

    def _normalize_by_batch(self, x):
        """Return (x_hat, 1 / sqrt(v + eps)) from the batch's statistics, updating the running ones."""
        n_samples = x.shape[0]
        mean = x.mean(axis=0)
        centered = x - mean
        variance = np.mean(centered * centered, axis=0)
        inv_std = 1 / np.sqrt(variance + self.eps)

        self._update_running(mean, variance * (n_samples / (n_samples - 1)))
        return centered * inv_std, inv_std

    def _update_running(self, mean, unbiased_variance):
        self.buffers["batches_tracked"] += 1
        batches = int(self.buffers["batches_tracked"])
        weight = 1.0 / batches if self.momentum is None else self.momentum

        # running += weight * (batch - running) is (1 - weight) * running + weight * batch.
        running_mean = self.buffers["running_mean"]
        running_var = self.buffers["running_var"]
        running_mean += weight * (mean - running_mean)
        running_var += weight * (unbiased_variance - running_var)

    def backward(self, grad_output):
        """Return dL/dx (N, D) and store dL/dgamma and dL/dbeta, as derived in the class docstring."""
        if self._cache is None:
            raise RuntimeError("BatchNorm1d.backward was called before forward; call forward first")
        x_hat, inv_std, used_batch_statistics = self._cache

        np.sum(grad_output, axis=0, out=self.grads["beta"])
        np.sum(grad_output * x_hat, axis=0, out=self.grads["gamma"])
        if not self.needs_input_grad:
            return None

        grad_x_hat = grad_output * self.params["gamma"]
        if not used_batch_statistics:
            return grad_x_hat * inv_std

        # dL/dx = (s / N) * (N h - sum_n h - x_hat * sum_n h * x_hat), with h = dL/dx_hat.
        n_samples = grad_output.shape[0]
        sum_h = np.sum(grad_x_hat, axis=0)
        sum_h_x_hat = np.sum(grad_x_hat * x_hat, axis=0)
        return (inv_std / n_samples) * (n_samples * grad_x_hat - sum_h - x_hat * sum_h_x_hat)

    def __repr__(self):
        return (f"BatchNorm1d({self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"dtype={self.params['gamma'].dtype})")


@LAYERS.register("temperature")
class Temperature(Layer):
    """Logits divided by a fixed temperature T: out = x / T, so dL/dx = dL/d(out) / T.

    T below 1 makes the logits larger and the softmax sharper. T is a constant, not
    a parameter, and the output keeps the input's dtype.
    """

    def __init__(self, temperature=1.0):
        super().__init__()
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating)) \
                or not temperature > 0:
            raise ValueError(f"Temperature temperature must be a number > 0, got {temperature!r}")
        self.temperature = float(temperature)

    @classmethod
    def example(cls, rng, dtype):
        return cls(0.5)

    def forward(self, x):
        return x / x.dtype.type(self.temperature)

    def backward(self, grad_output):
        return grad_output / grad_output.dtype.type(self.temperature)

    def __repr__(self):
        return f"Temperature({self.temperature})"
