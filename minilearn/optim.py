"""Optimizers that update named parameter arrays in place from their gradients."""

import numbers

import numpy as np

from minilearn.registry import OPTIMIZERS


def _check_number(name, value, *, minimum, strict, fix):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    too_small = value <= minimum if strict else value < minimum
    if too_small or value != value:
        rule = f"> {minimum}" if strict else f">= {minimum}"
        raise ValueError(f"{name} must be {rule}, got {value!r}; {fix}")
    return float(value)


class Optimizer:
    """Base class. ``step(params, grads)`` updates every array of ``params`` in place.

    ``params`` and ``grads`` map the same names (e.g. ``"0.weight"``) to arrays of the
    same shape and dtype. Per-parameter state, such as a momentum buffer, is kept under
    that name, so one optimizer serves one model.
    """

    def __init__(self, lr):
        self.lr = _check_number("lr", lr, minimum=0.0, strict=True,
                                fix="use a positive learning rate such as 0.1")
        self.state = {}

    def step(self, params, grads):
        raise NotImplementedError

    def reset(self):
        """Forget all per-parameter state, as if no step had been taken."""
        self.state.clear()


@OPTIMIZERS.register("sgd")
class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 decay.

    The update rule is PyTorch's ``torch.optim.SGD`` (documented in its 2.x releases)
    with dampening 0, so runs can be compared with it. For each parameter p with
    gradient g, momentum mu and learning rate lr:

        g = g + weight_decay * p                 (L2 penalty added to the gradient)
        b = g on the first step, else mu * b + g (momentum buffer)
        d = g + mu * b   if nesterov else b
        p = p - lr * d

    The Nesterov form is PyTorch's, which tracks the parameters themselves. In
    Sutskever's formulation the parameters above are the look-ahead points.
    """

    def __init__(self, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(lr)
        self.momentum = _check_number("momentum", momentum, minimum=0.0, strict=False,
                                      fix="use 0 for plain SGD or a value such as 0.9")
        self.weight_decay = _check_number("weight_decay", weight_decay, minimum=0.0,
                                          strict=False, fix="use 0 to turn it off")
        if not isinstance(nesterov, bool):
            raise TypeError(f"nesterov must be true or false, got {nesterov!r}")
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0; set momentum (e.g. 0.9) "
                             "or turn nesterov off")
        self.nesterov = nesterov
        self._scratch = {}

    def step(self, params, grads):
        """Apply one update to every parameter in place."""
        for name, param in params.items():
            direction = self._direction(name, param, grads[name])
            scratch = self._scratch.get(name)
            if scratch is None:
                scratch = self._scratch[name] = param.copy()
            # p -= lr * d, through a preallocated buffer so the step allocates nothing.
            np.multiply(direction, self.lr, out=scratch)
            param -= scratch

    def _direction(self, name, param, grad):
        if self.weight_decay:
            grad = grad + self.weight_decay * param
        if not self.momentum:
            return grad

        buffer = self.state.get(name)
        if buffer is None:
            buffer = self.state[name] = grad.copy()
        else:
            buffer *= self.momentum
            buffer += grad

        if self.nesterov:
            return grad + self.momentum * buffer
        return buffer

    def reset(self):
        super().reset()
        self._scratch.clear()
