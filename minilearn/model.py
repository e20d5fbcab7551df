"""The Sequential model: a chain of layers with named parameters, prediction and storage."""

import numpy as np

from minilearn import functional as F
from minilearn.layers import Layer, LogSoftmax, Softmax


class Sequential:
    """Layers applied in order: ``forward`` runs them first to last, ``backward`` last to first.

    Parameters are named ``"<layer index>.<parameter name>"``, e.g. ``"0.weight"``.
    The first layer's input is the data, whose gradient nothing needs, so by default
    its ``needs_input_grad`` is turned off and ``backward`` returns None. That skips
    the largest matrix product of the backward pass. Pass ``input_grad=True`` to get
    dL/d(input) back, e.g. to check a gradient with respect to the data.
    """

    def __init__(self, layers, *, input_grad=False):
        layers = list(layers)
        if not layers:
            raise ValueError("Sequential needs at least one layer, got an empty list")
        for index, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {index} is {type(layer).__name__}, not a minilearn Layer")
        self.layers = layers
        self.layers[0].needs_input_grad = bool(input_grad)
        self.training = True

    def forward(self, x):
        """Map inputs (N, D) through every layer to the outputs (N, K)."""
        for layer in self.layers:
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, grad_output):
        """Propagate dL/d(outputs) (N, K) back; fills every layer's ``grads``."""
        grad = grad_output
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    def named_parameters(self):
        """Return a dict of every parameter array by qualified name; the arrays are live."""
        return {f"{i}.{name}": value
                for i, layer in enumerate(self.layers) for name, value in layer.params.items()}

    def named_gradients(self):
        """Return a dict of every parameter's gradient from the last backward pass."""
        return {f"{i}.{name}": value
                for i, layer in enumerate(self.layers) for name, value in layer.grads.items()}

    def named_buffers(self):
        """Return a dict of every layer buffer (saved, not trained state) by qualified name."""
        return {f"{i}.{name}": value
                for i, layer in enumerate(self.layers)
                for name, value in getattr(layer, "buffers", {}).items()}

    def train(self, mode=True):
        """Put every layer in training mode (or evaluation mode with ``mode=False``)."""
        self.training = bool(mode)
        for layer in self.layers:
            layer.train(mode)
        return self

    def eval(self):
        """Put every layer in evaluation mode."""
        return self.train(False)

    @property
    def dtype(self):
        """The dtype of the parameters, or None for a model without parameters."""
        for value in self.named_parameters().values():
            return value.dtype
        return None

    @property
    def output_kind(self):
        """What the last layer emits: "probabilities", "log_probabilities" or "logits"."""
        last = self.layers[-1]
        if isinstance(last, Softmax):
            return "probabilities"
        if isinstance(last, LogSoftmax):
            return "log_probabilities"
        return "logits"

    def predict_outputs(self, X, batch_size=4096):
        """Run the model in evaluation mode over X (N, D) in batches; returns (N, K).

        The previous train/eval mode is restored afterwards.
        """
        was_training = self.training
        self.eval()
        try:
            chunks = [self.forward(X[start:start + batch_size])
                      for start in range(0, len(X), batch_size)]
        finally:
            self.train(was_training)
        return np.concatenate(chunks, axis=0)

    def predict_proba(self, X, batch_size=4096):
        """Return class probabilities (N, K): the softmax of the logits.

        A model that ends in ``Softmax`` already outputs probabilities, and one that
        ends in ``LogSoftmax`` outputs their logarithms, so neither is softmaxed twice.
        """
        outputs = self.predict_outputs(X, batch_size)
        kind = self.output_kind
        if kind == "probabilities":
            return outputs
        if kind == "log_probabilities":
            return np.exp(outputs)
        return F.softmax(outputs, axis=-1)

    def predict(self, X, batch_size=4096):
        """Return the predicted class index (N,) of each sample."""
        return np.argmax(self.predict_outputs(X, batch_size), axis=-1)

    def state_dict(self):
        """Return a copy of every parameter and buffer by qualified name."""
        state = {**self.named_parameters(), **self.named_buffers()}
        return {name: value.copy() for name, value in state.items()}

    def load_state_dict(self, arrays, source="state dict"):
        """Copy ``arrays`` into the parameters and buffers after checking names, shapes and dtypes."""
        params = {**self.named_parameters(), **self.named_buffers()}
        missing = sorted(set(params) - set(arrays))
        unexpected = sorted(set(arrays) - set(params))
        if missing or unexpected:
            raise ValueError(
                f"{source} does not match the model: missing parameters {missing}, "
                f"unexpected parameters {unexpected}; load it into a model of the same architecture"
            )
        for name, value in params.items():
            stored = np.asarray(arrays[name])
            if stored.shape != value.shape or stored.dtype != value.dtype:
                raise ValueError(
                    f"{source}: parameter {name!r} has shape {stored.shape} and dtype "
                    f"{stored.dtype}, but the model expects shape {value.shape} and dtype "
                    f"{value.dtype}; load it into a model of the same architecture and dtype"
                )
        for name, value in params.items():
            value[...] = arrays[name]

    def save(self, path):
        """Write the parameters and buffers to an ``.npz`` file (no pickled objects), atomically."""
        from minilearn.io import save_arrays_npz

        save_arrays_npz(path, self.state_dict())

    def load(self, path):
        """Read parameters saved by ``save`` into this model; pickles are never loaded."""
        from minilearn.io import load_arrays_npz

        self.load_state_dict(load_arrays_npz(path), source=str(path))
        return self

    def __repr__(self):
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Sequential([\n  {inner}\n])"
