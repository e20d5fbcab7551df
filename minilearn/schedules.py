"""Learning-rate schedules that set the optimizer's ``lr`` once per epoch.

``fit`` calls ``start(optimizer, epochs)`` before the first epoch and
``step(record)`` after each completed epoch, where ``record`` is that epoch's
metrics. So the lr of epoch e (numbered from 1) is the schedule's value at index
e - 1, and the ``lr`` in each record is the one used for every update of that
epoch. As in PyTorch, the schedule steps after the last epoch too, so the
optimizer ends with the lr a next epoch would get, and a later ``fit`` with the
same schedule starts it again from there. The closed forms and argument names follow PyTorch's
``torch.optim.lr_scheduler`` classes stepped once per epoch (documented in its
2.x releases). Configs name the schedules through ``SCHEDULES``: ``constant``,
``step``, ``exponential``, ``cosine`` and ``reduce_on_plateau``.
"""

import logging
import math
import numbers

from minilearn.registry import Registry

logger = logging.getLogger(__name__)

SCHEDULES = Registry("schedule")

# The metrics a schedule or early stopping can watch, and whether lower is better.
MONITORS = {"val_loss": "min", "val_accuracy": "max", "train_loss": "min",
            "train_accuracy": "max"}


# Checks of constructor arguments, shared with early stopping.

def check_real(owner, name, value, *, minimum, strict, fix, maximum=None):
    """Return ``value`` as a float after checking it is a finite number in range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner} {name} must be a number, got {value!r}; {fix}")
    value = float(value)
    too_small = value <= minimum if strict else value < minimum
    too_large = maximum is not None and value >= maximum
    if not math.isfinite(value) or too_small or too_large:
        rule = f"> {minimum}" if strict else f">= {minimum}"
        if maximum is not None:
            rule += f" and < {maximum}"
        raise ValueError(f"{owner} {name} must be {rule}, got {value!r}; {fix}")
    return value


def check_count(owner, name, value, *, minimum, fix):
    """Return ``value`` as an int after checking it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner} {name} must be an integer, got {value!r}; {fix}")
    if value < minimum:
        raise ValueError(f"{owner} {name} must be an integer >= {minimum}, got {value!r}; {fix}")
    return int(value)


def check_monitor(owner, monitor):
    """Return ``monitor`` after checking it names a metric of the epoch records."""
    if monitor not in MONITORS:
        raise ValueError(f"{owner} monitor must be one of {', '.join(MONITORS)}, got "
                         f"{monitor!r}; use 'val_loss' to watch the validation loss")
    return monitor


def check_monitor_available(owner, monitor, has_validation):
    """Reject a validation metric when training has no validation data."""
    if monitor.startswith("val_") and not has_validation:
        raise ValueError(f"{owner} monitors {monitor!r}, but fit got no validation data; pass "
                         f"validation=(X_val, y_val) or set monitor='train_loss'")


def monitored_value(record, monitor):
    """Return the record's value of ``monitor`` as a float, or None when it is missing or not finite."""
    value = record.get(monitor)
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class Schedule:
    """Base class: a learning rate for each epoch, written into ``optimizer.lr``.

    Subclasses with a closed form implement ``lr_at(index)`` for the epoch index
    from 0. ``base_lr`` is the optimizer's lr when ``start`` is called.
    """

    # The metric that ``step`` reads, or None for schedules that read none.
    monitor = None

    def __init__(self):
        self.optimizer = None
        self.base_lr = None
        self.epochs = None
        self.last_epoch = 0

    def start(self, optimizer, epochs, *, has_validation=True):
        """Attach to ``optimizer`` and set the lr of the first epoch (index 0)."""
        if self.monitor is not None:
            check_monitor_available(type(self).__name__, self.monitor, has_validation)
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
        self.epochs = int(epochs)
        self.last_epoch = 0
        optimizer.lr = self.lr_at(0)

    def step(self, record=None):
        """Move to the next epoch after one completed; ``record`` is that epoch's metrics."""
        if self.optimizer is None:
            raise RuntimeError(f"{type(self).__name__}.step was called before start; call "
                               "start(optimizer, epochs) first, as fit does")
        self.last_epoch += 1
        self.optimizer.lr = self.lr_at(self.last_epoch)

    def lr_at(self, index):
        raise NotImplementedError

    def __repr__(self):
        options = ", ".join(f"{key}={value!r}" for key, value in self.options().items())
        return f"{type(self).__name__}({options})"

    def options(self):
        """Return the constructor options, for repr and logs."""
        return {}


@SCHEDULES.register("constant")
class ConstantLR(Schedule):
    """The optimizer's lr in every epoch, unchanged. It is the config's default schedule.

    Unlike PyTorch's ``ConstantLR``, it takes no factor, because it only stands
    for "no schedule".
    """

    def lr_at(self, index):
        return self.base_lr


@SCHEDULES.register("step")
class StepLR(Schedule):
    """Decay by ``gamma`` every ``step_size`` epochs: lr_e = lr_0 * gamma ** floor(e / step_size).

    e is the epoch index from 0, so with step_size 2 the first decayed epoch is
    the third one.
    """

    def __init__(self, step_size, gamma=0.1):
        super().__init__()
        self.step_size = check_count("StepLR", "step_size", step_size, minimum=1,
                                     fix="use the number of epochs between decays, e.g. 10")
        self.gamma = check_real("StepLR", "gamma", gamma, minimum=0.0, strict=True,
                                fix="use a decay factor such as 0.1 or 0.5")

    def lr_at(self, index):
        return self.base_lr * self.gamma ** (index // self.step_size)

    def options(self):
        return {"step_size": self.step_size, "gamma": self.gamma}


@SCHEDULES.register("exponential")
class ExponentialLR(Schedule):
    """Decay by ``gamma`` every epoch: lr_e = lr_0 * gamma ** e, e from 0."""

    def __init__(self, gamma):
        super().__init__()
        self.gamma = check_real("ExponentialLR", "gamma", gamma, minimum=0.0, strict=True,
                                fix="use a decay factor per epoch such as 0.95")

    def lr_at(self, index):
        return self.base_lr * self.gamma ** index

    def options(self):
        return {"gamma": self.gamma}


@SCHEDULES.register("cosine")
class CosineAnnealingLR(Schedule):
    """Cosine annealing from lr_0 to ``eta_min`` over ``T_max`` epochs.

    lr_e = eta_min + (lr_0 - eta_min) * (1 + cos(pi * e / T_max)) / 2, e from 0,
    which is the closed form of PyTorch's ``CosineAnnealingLR``. With ``T_max``
    None it is the number of epochs that ``fit`` runs.

    After T_max the formula continues unchanged, as PyTorch's does: the lr rises
    again along the same cosine and is back at lr_0 at e = 2 * T_max. For one
    decay over the whole run, leave ``T_max`` unset or make it at least the
    number of epochs minus one.
    """

    def __init__(self, T_max=None, eta_min=0.0):  # noqa: N803 - PyTorch's argument name
        super().__init__()
        if T_max is not None:
            T_max = check_count("CosineAnnealingLR", "T_max", T_max, minimum=1,
                                fix="use the number of epochs of one decay, or leave it unset "
                                    "for the number of epochs trained")
        self.T_max = T_max
        self.period = T_max
        self.eta_min = check_real("CosineAnnealingLR", "eta_min", eta_min, minimum=0.0,
                                  strict=False, fix="use 0 or a small lr such as 1e-5")

    def start(self, optimizer, epochs, *, has_validation=True):
        self.period = self.T_max if self.T_max is not None else int(epochs)
        if self.period < epochs - 1:
            logger.info("cosine schedule: T_max = %d is shorter than the %d epochs, so the lr "
                        "rises again after epoch %d", self.period, epochs, self.period + 1)
        super().start(optimizer, epochs, has_validation=has_validation)

    def lr_at(self, index):
        cosine = math.cos(math.pi * index / self.period)
        return self.eta_min + (self.base_lr - self.eta_min) * (1.0 + cosine) / 2.0

    def options(self):
        return {"T_max": self.T_max, "eta_min": self.eta_min}


@SCHEDULES.register("reduce_on_plateau")
class ReduceLROnPlateau(Schedule):
    """Multiply the lr by ``factor`` when a metric has stopped improving.

    It follows PyTorch's ``ReduceLROnPlateau``, and ``monitor`` replaces its
    ``mode``: a loss is minimized and an accuracy maximized. After each epoch:

    - improvement, for a loss: value < best * (1 - threshold) with
      ``threshold_mode="rel"``, value < best - threshold with ``"abs"``. For an
      accuracy: value > best * (1 + threshold), or value > best + threshold.
      A NaN, infinite or missing value never counts as an improvement.
    - an improvement sets best and resets the count of bad epochs, anything else
      adds one. During the ``cooldown`` epochs after a reduction the count stays 0.
    - when the count exceeds ``patience``, lr = max(lr * factor, min_lr), unless
      that changes lr by ``eps`` or less. So with patience 2 the lr drops after
      the third bad epoch in a row, and the next epoch uses it.
    """

    THRESHOLD_MODES = ("rel", "abs")

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
        super().__init__()
        owner = "ReduceLROnPlateau"
        self.monitor = check_monitor(owner, monitor)
        self.factor = check_real(owner, "factor", factor, minimum=0.0, strict=True, maximum=1.0,
                                 fix="use a factor below 1 such as 0.1 or 0.5")
        self.patience = check_count(owner, "patience", patience, minimum=0,
                                    fix="use the number of bad epochs to allow, e.g. 10")
        self.threshold = check_real(owner, "threshold", threshold, minimum=0.0, strict=False,
                                    fix="use 0 or a small value such as 1e-4")
        if threshold_mode not in self.THRESHOLD_MODES:
            raise ValueError(f"{owner} threshold_mode must be 'rel' or 'abs', got "
                             f"{threshold_mode!r}; use 'rel' for a fraction of the best value")
        self.threshold_mode = threshold_mode
        self.cooldown = check_count(owner, "cooldown", cooldown, minimum=0,
                                    fix="use 0 or the number of epochs to wait after a reduction")
        self.min_lr = check_real(owner, "min_lr", min_lr, minimum=0.0, strict=False,
                                 fix="use 0 or a floor such as 1e-6")
        self.eps = check_real(owner, "eps", eps, minimum=0.0, strict=False,
                              fix="use a small value such as 1e-8")
        self.mode = MONITORS[self.monitor]
        self._reset()

    def _reset(self):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.bad_epochs = 0
        self.cooldown_left = 0

    def start(self, optimizer, epochs, *, has_validation=True):
        super().start(optimizer, epochs, has_validation=has_validation)
        self._reset()

    def lr_at(self, index):
        # Only the first epoch has a fixed lr. The later ones depend on the metric.
        return self.base_lr

    def is_improvement(self, value):
        """Return True when ``value`` beats the best so far by more than the threshold."""
        if value is None:
            return False
        if self.mode == "min":
            bound = (self.best * (1.0 - self.threshold) if self.threshold_mode == "rel"
                     else self.best - self.threshold)
            return value < bound
        bound = (self.best * (1.0 + self.threshold) if self.threshold_mode == "rel"
                 else self.best + self.threshold)
        return value > bound

    def step(self, record=None):
        """Read ``record[monitor]`` and reduce the lr of the next epoch when it stalled."""
        if self.optimizer is None:
            raise RuntimeError("ReduceLROnPlateau.step was called before start; call "
                               "start(optimizer, epochs) first, as fit does")
        self.last_epoch += 1
        value = monitored_value(record or {}, self.monitor)

        if self.is_improvement(value):
            self.best = value
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1

        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_epochs = 0

        if self.bad_epochs > self.patience:
            self._reduce()
            self.cooldown_left = self.cooldown
            self.bad_epochs = 0

    def _reduce(self):
        old_lr = self.optimizer.lr
        new_lr = max(old_lr * self.factor, self.min_lr)
        if old_lr - new_lr > self.eps:
            self.optimizer.lr = new_lr
            logger.info("reduce_on_plateau: %s stalled, lr %.4g -> %.4g after epoch %d",
                        self.monitor, old_lr, new_lr, self.last_epoch)

    def options(self):
        return {"monitor": self.monitor, "factor": self.factor, "patience": self.patience,
                "threshold": self.threshold, "threshold_mode": self.threshold_mode,
                "cooldown": self.cooldown, "min_lr": self.min_lr, "eps": self.eps}


def make_schedule(name, **options):
    """Build the schedule registered in ``SCHEDULES`` under ``name`` with keyword ``options``."""
    return SCHEDULES.get(name)(**options)
