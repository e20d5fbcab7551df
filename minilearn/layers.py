"""Layers with hand-derived backward passes.

Every layer follows one contract:

- ``forward(x)`` returns the output and caches what the backward pass needs;
- ``backward(grad_output)`` takes dL/d(output), returns dL/d(input) and stores
  dL/d(parameter) in ``grads`` under the parameter's name in ``params``;
- ``train()`` and ``eval()`` switch the mode in ``training``.

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

    def __init__(self):
        self.params = {}
        self.grads = {}
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
            np.sum(grad_output, axis=0, out=self.grads["bias"])

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

    def forward(self, x):
        self._out = np.maximum(x, 0)
        return self._out

    def backward(self, grad_output):
        return grad_output * (self._out > 0)


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
