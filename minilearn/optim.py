"""Optimizers that update named parameter arrays in place from their gradients."""

import math
import numbers

import numpy as np

from minilearn.blas import Axpby, blas_available
from minilearn.registry import OPTIMIZERS


def _squared_norm(grad):
    """Return sum(grad**2) as a float, summed in float64 when float32 would overflow."""
    flat = grad.ravel()
    value = float(np.dot(flat, flat))
    if not math.isfinite(value) and flat.dtype != np.float64:
        flat = flat.astype(np.float64)
        value = float(np.dot(flat, flat))
    return value


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
    that name, so one optimizer serves one model. Subclasses implement the update
    rule in ``update``, and ``step`` clips the gradients before calling it.

    With ``max_grad_norm`` set, the gradients are clipped by their global norm,
    taken over all arrays together:

        norm = sqrt(sum over every array g of sum(g**2))
        g = g * max_grad_norm / norm   for every g, when norm > max_grad_norm

    This is ``torch.nn.utils.clip_grad_norm_`` with the 2-norm, except that PyTorch
    (checked in 2.13) divides by norm + 1e-6, so its clipped norm falls slightly
    short of the limit.
    The caller's gradient arrays are not modified: clipping hands scaled copies to
    ``update``. A non-finite norm leaves the gradients as they are, so the training
    loop can report them. ``last_grad_norm`` is the norm before clipping of the
    last step, or None when clipping is off.
    """

    def __init__(self, lr, max_grad_norm=None):
        self.lr = _check_number("lr", lr, minimum=0.0, strict=True,
                                fix="use a positive learning rate such as 0.1")
        if max_grad_norm is not None:
            max_grad_norm = _check_number(
                "max_grad_norm", max_grad_norm, minimum=0.0, strict=True,
                fix="use a positive norm such as 1.0, or leave it unset to turn clipping off")
        self.max_grad_norm = max_grad_norm
        self.last_grad_norm = None
        self.state = {}

    def step(self, params, grads):
        """Clip the gradients when ``max_grad_norm`` is set, then update every parameter in place."""
        if self.max_grad_norm is not None:
            grads = self.clip_gradients(grads)
        self.update(params, grads)

    def update(self, params, grads):
        """Apply the update rule to every parameter in place; subclasses implement it."""
        raise NotImplementedError

    def clip_gradients(self, grads):
        """Return the gradients scaled to a global norm of at most ``max_grad_norm``.

        One pass over the gradients computes the norm. Only when it exceeds the
        limit does a second pass make scaled copies.
        """
        norm = math.sqrt(sum(_squared_norm(grad) for grad in grads.values()))
        self.last_grad_norm = norm
        if not math.isfinite(norm) or norm <= self.max_grad_norm:
            return grads
        scale = self.max_grad_norm / norm
        return {name: grad * grad.dtype.type(scale) for name, grad in grads.items()}

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
    ``max_grad_norm`` clips the gradients before all of this (see ``Optimizer``).
    """

    def __init__(self, lr, momentum=0.0, nesterov=False, weight_decay=0.0, max_grad_norm=None):
        super().__init__(lr, max_grad_norm)
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
        self._plain_steps = {}

    def update(self, params, grads):
        """Apply one update to every parameter in place.

        The in-place updates of the momentum buffer and of the parameter are
        ``minilearn.blas.Axpby`` calls: one pass over memory each where numpy's
        OpenBLAS is available, instead of two numpy passes and a scratch array.
        Without Nesterov momentum and weight decay, each parameter keeps a
        ``_PlainStep`` with those calls prepared, used while the parameter, its
        gradient array and its buffer stay the same arrays.
        """
        plain = not self.nesterov and not self.weight_decay
        for name, param in params.items():
            grad = grads[name]
            step = self._plain_steps.get(name) if plain else None
            if step is not None and step.applies_to(param, grad, self.state.get(name)):
                step(self.lr, self.momentum)
                continue

            direction = self._direction(name, param, grad)
            # p = p - lr * d
            Axpby(direction, param)(-self.lr, 1.0, scratch=self._scratch_for(name, param))
            if plain:
                self._plain_steps[name] = _PlainStep(param, grad, self.state.get(name))

    def _scratch_for(self, name, param):
        """Return a preallocated array like ``param`` for the numpy path, or None when BLAS is used."""
        if blas_available():
            return None
        scratch = self._scratch.get(name)
        if scratch is None:
            scratch = self._scratch[name] = np.empty_like(param)
        return scratch

    def _direction(self, name, param, grad):
        if self.weight_decay:
            grad = grad + self.weight_decay * param
        if not self.momentum:
            return grad

        buffer = self.state.get(name)
        if buffer is None:
            buffer = self.state[name] = grad.copy()
        else:
            # b = mu * b + g
            Axpby(grad, buffer)(1.0, self.momentum)

        if self.nesterov:
            return grad + self.momentum * buffer
        return buffer

    def reset(self):
        super().reset()
        self._scratch.clear()
        self._plain_steps.clear()


class _PlainStep:
    """One parameter's SGD step without Nesterov momentum or weight decay, prepared once.

    With a momentum buffer b it computes b = mu * b + g, then p = p - lr * b, and
    without one p = p - lr * g. It keeps the arrays it was built for, and
    ``applies_to`` returns whether a later step hands over the same ones.
    """

    def __init__(self, param, grad, buffer):
        self.param = param
        self.grad = grad
        self.buffer = buffer
        direction = grad if buffer is None else buffer
        self.accumulate = None if buffer is None else Axpby(grad, buffer)
        self.apply = Axpby(direction, param)
        self.scratch = None if blas_available() else np.empty_like(param)

    def applies_to(self, param, grad, buffer):
        """Return whether this step was built for exactly these arrays."""
        return self.param is param and self.grad is grad and self.buffer is buffer

    def __call__(self, lr, momentum):
        if self.accumulate is not None:
            # b = mu * b + g
            self.accumulate(1.0, momentum)
        # p = p - lr * d
        self.apply(-lr, 1.0, scratch=self.scratch)


def _check_betas(betas):
    """Return ``betas`` as a tuple of two floats in [0, 1)."""
    if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
        raise TypeError(f"betas must be a pair of numbers (beta1, beta2), got {betas!r}; "
                        "use e.g. [0.9, 0.999]")
    checked = []
    for index, beta in enumerate(betas):
        if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
            raise TypeError(f"betas[{index}] must be a number, got {beta!r}")
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"betas[{index}] must be in [0, 1), got {beta!r}; use e.g. "
                             "[0.9, 0.999]")
        checked.append(float(beta))
    return tuple(checked)


@OPTIMIZERS.register("adam")
class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015) with PyTorch's argument names, defaults and options.

    For each parameter p with gradient g, at its step t = 1, 2, ... and with
    m = v = v_max = 0 before the first step:

        g = g + weight_decay * p              (L2 penalty, when not decoupled)
        p = p - lr * weight_decay * p         (decoupled decay, AdamW, instead)
        m = beta1 * m + (1 - beta1) * g       (first moment)
        v = beta2 * v + (1 - beta2) * g**2    (second moment)
        v_max = max(v_max, v)                 (amsgrad only, then used as v below)
        p = p - lr * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps)

    This is ``torch.optim.Adam`` of PyTorch 2.x, including the ``amsgrad`` and
    ``decoupled_weight_decay`` options, and the tests compare the two where
    PyTorch is installed. With decoupled decay the
    shrinking of the weights does not pass through m and v, so it is not scaled
    down where gradients are large (Loshchilov and Hutter, 2019). ``max_grad_norm``
    clips the gradients before all of this (see ``Optimizer``).
    """

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, decoupled_weight_decay=False, max_grad_norm=None):
        super().__init__(lr, max_grad_norm)
        self.betas = _check_betas(betas)
        self.eps = _check_number("eps", eps, minimum=0.0, strict=False,
                                 fix="use a small positive value such as 1e-8")
        self.weight_decay = _check_number("weight_decay", weight_decay, minimum=0.0,
                                          strict=False, fix="use 0 to turn it off")
        for name, value in (("amsgrad", amsgrad), ("decoupled_weight_decay", decoupled_weight_decay)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be true or false, got {value!r}")
        self.amsgrad = amsgrad
        self.decoupled_weight_decay = decoupled_weight_decay

    def update(self, params, grads):
        """Apply one Adam update to every parameter in place."""
        beta1, beta2 = self.betas
        for name, param in params.items():
            grad = grads[name]
            state = self.state.get(name)
            if state is None:
                state = self.state[name] = self._new_state(param)
            state["step"] += 1
            step = state["step"]

            if self.weight_decay and self.decoupled_weight_decay:
                # p = p - lr * weight_decay * p
                param *= 1.0 - self.lr * self.weight_decay
            elif self.weight_decay:
                grad = grad + self.weight_decay * param

            m, v, scratch = state["m"], state["v"], state["scratch"]
            # m = beta1 * m + (1 - beta1) * g
            m *= beta1
            np.multiply(grad, 1.0 - beta1, out=scratch)
            m += scratch
            # v = beta2 * v + (1 - beta2) * g**2
            v *= beta2
            np.multiply(grad, grad, out=scratch)
            scratch *= 1.0 - beta2
            v += scratch
            if self.amsgrad:
                np.maximum(state["v_max"], v, out=state["v_max"])
                v = state["v_max"]

            # p = p - lr / (1 - beta1**t) * m / (sqrt(v / (1 - beta2**t)) + eps)
            np.sqrt(v, out=scratch)
            scratch /= math.sqrt(1.0 - beta2 ** step)
            scratch += self.eps
            np.divide(m, scratch, out=scratch)
            scratch *= self.lr / (1.0 - beta1 ** step)
            param -= scratch

    def _new_state(self, param):
        state = {"step": 0, "m": np.zeros_like(param), "v": np.zeros_like(param),
                 "scratch": np.empty_like(param)}
        if self.amsgrad:
            state["v_max"] = np.zeros_like(param)
        return state


@OPTIMIZERS.register("adamw")
class AdamW(Adam):
    """Adam with decoupled weight decay, as ``torch.optim.AdamW``, whose default decay is 0.01.

    It is ``Adam(..., decoupled_weight_decay=True)``: each step first shrinks the
    parameters by p = p - lr * weight_decay * p, apart from the moments.
    """

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, max_grad_norm=None):
        super().__init__(lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         decoupled_weight_decay=True, max_grad_norm=max_grad_norm)
