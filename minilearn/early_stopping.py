"""Early stopping: end training when a monitored metric stops improving, and keep the best parameters.

``fit`` calls ``start(has_validation)`` before the first epoch, ``update(record,
model)`` after each completed epoch and ``restore(model)`` when training ends.
"""

import logging

import numpy as np

from minilearn.schedules import (
    MONITORS,
    check_count,
    check_monitor,
    check_monitor_available,
    check_real,
    monitored_value,
)

logger = logging.getLogger(__name__)


class EarlyStopping:
    """Stop once ``monitor`` has not improved for ``patience`` epochs in a row.

    An epoch improves when its value of ``monitor`` beats the best so far by more
    than ``min_delta``: value < best - min_delta for a loss, value > best +
    min_delta for an accuracy. The first epoch with a finite value always
    improves. A NaN, infinite or missing value never improves, wherever it falls,
    and counts as an epoch without improvement. The best value moves only on an
    improvement, so a run of small gains that each stay within ``min_delta``
    still ends training.

    Each improvement resets the count of epochs without improvement to 0, and any
    other epoch adds one. Training stops after the epoch whose count reaches
    ``patience``, so patience 2 allows one epoch without improvement and stops
    at the second, as Keras's ``EarlyStopping`` does.

    With ``restore_best`` the parameters of the best epoch are copied at each
    improvement and put back when training ends, however it ends (early stop,
    last epoch, divergence or interrupt). ``best_epoch`` numbers epochs from 1,
    as the epoch records do, and ``stopped_epoch`` is the epoch after which it
    stopped training, or None when it did not.
    """

    def __init__(self, patience=10, min_delta=0.0, monitor="val_loss", restore_best=True):
        owner = "EarlyStopping"
        self.patience = check_count(owner, "patience", patience, minimum=1,
                                    fix="use the number of epochs without improvement to "
                                        "allow, e.g. 10")
        self.min_delta = check_real(owner, "min_delta", min_delta, minimum=0.0, strict=False,
                                    fix="use 0 to count any decrease, or a small value such as 1e-4")
        self.monitor = check_monitor(owner, monitor)
        if not isinstance(restore_best, bool):
            raise TypeError(f"{owner} restore_best must be true or false, got {restore_best!r}")
        self.restore_best = restore_best
        self.mode = MONITORS[self.monitor]
        self.start()

    def start(self, has_validation=True):
        """Forget every earlier epoch; ``fit`` calls this before training."""
        check_monitor_available("EarlyStopping", self.monitor, has_validation)
        self.best = None
        self.best_epoch = None
        self.wait = 0
        self.stopped_epoch = None
        self._best_state = None

    def is_improvement(self, value):
        """Return True when ``value`` (a float, or None when not finite) beats the best by > min_delta."""
        if value is None:
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, record, model=None):
        """Take one epoch's record; returns True when training should stop after this epoch.

        ``model`` is the trained ``Sequential``, whose parameters are copied at an
        improvement when ``restore_best`` is on.
        """
        value = monitored_value(record, self.monitor)
        if self.is_improvement(value):
            self.best = value
            self.best_epoch = record["epoch"]
            self.wait = 0
            if self.restore_best and model is not None:
                self._snapshot(model)
            return False

        self.wait += 1
        if self.wait < self.patience:
            return False
        self.stopped_epoch = record["epoch"]
        return True

    def _snapshot(self, model):
        """Copy the parameters into buffers kept from the previous snapshot, if any."""
        params = model.named_parameters()
        if self._best_state is None or self._best_state.keys() != params.keys():
            self._best_state = model.state_dict()
            return
        for name, value in params.items():
            np.copyto(self._best_state[name], value)

    def restore(self, model):
        """Put the best epoch's parameters back into ``model``; returns True when it did."""
        if not self.restore_best:
            return False
        if self._best_state is None:
            logger.warning("early stopping: no epoch had a finite %s, so the last parameters "
                           "are kept", self.monitor)
            return False
        model.load_state_dict(self._best_state, source="best parameters of early stopping")
        return True

    def describe_stop(self):
        """Return a sentence on why training stopped, for the History's message."""
        restored = (f"; restored the parameters of epoch {self.best_epoch}"
                    if self.restore_best and self.best_epoch is not None else "")
        return (f"early stopping after epoch {self.stopped_epoch}: {self.monitor} did not "
                f"improve by more than {self.min_delta:g} for {self.patience} epoch(s){restored}")

    def __repr__(self):
        return (f"EarlyStopping(patience={self.patience}, min_delta={self.min_delta}, "
                f"monitor={self.monitor!r}, restore_best={self.restore_best})")
