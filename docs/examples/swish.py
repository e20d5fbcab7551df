"""Swish, out = x * sigmoid(beta * x), with one learned beta per feature: a minilearn plugin."""

import numpy as np

from minilearn.functional import sigmoid
from minilearn.layers import Layer
from minilearn.registry import LAYERS


@LAYERS.register("swish")
class Swish(Layer):
    """out = x * s with s = sigmoid(beta * x), elementwise; beta (D,) starts at 1.

    With u = beta * x and ds/du = s * (1 - s), for upstream gradient g = dL/d(out):

        dL/dx    = g * (s + beta * x * s * (1 - s))          (N, D)
        dL/dbeta = sum over the batch of g * x**2 * s * (1 - s)   (D,)
    """

    def __init__(self, num_features, *, dtype=np.float64):
        super().__init__()
        self.params["beta"] = np.ones(num_features, dtype=dtype)
        self.grads["beta"] = np.zeros_like(self.params["beta"])

    def forward(self, x):
        """Map x (N, D) to x * sigmoid(beta * x), caching x and the sigmoid for backward."""
        self._x = x
        self._s = sigmoid(self.params["beta"] * x)
        return x * self._s

    def backward(self, grad_output):
        """Store dL/dbeta and return dL/dx, both as derived in the class docstring."""
        x, s, beta = self._x, self._s, self.params["beta"]
        slope = s * (1 - s)
        self.grads["beta"][...] = np.sum(grad_output * x * x * slope, axis=0)

        if not self.needs_input_grad:
            return None
        return grad_output * (s + beta * x * slope)
