"""The checks of registered classes: the layers in ``LAYERS`` and the losses in ``LOSSES``."""

import numpy as np

from minilearn.registry import LAYERS, LOSSES
from minilearn.testing.layer_checks import DEFAULT_LAYER_INPUT_SHAPE, check_layer, example_layer
from minilearn.testing.loss_checks import DEFAULT_LOSS_INPUT_SHAPE, check_loss, example_loss
from minilearn.testing.report import Check, CheckReport


def check_registered_layer(name, *, seed=0):
    """Build the layer registered as ``name`` with ``example_layer`` and check it."""
    cls = LAYERS.get(name)
    input_shape = tuple(getattr(cls, "example_input_shape", DEFAULT_LAYER_INPUT_SHAPE))

    def factory(rng, dtype):
        return example_layer(cls, rng, dtype, input_shape)

    try:
        layer = factory(np.random.default_rng(seed), np.float64)
    except Exception as error:  # noqa: BLE001 - reported as a failed check
        return _unbuildable("layer", name, error)
    return check_layer(layer, input_shape, factory=factory, seed=seed, name=name)


def check_registered_loss(name, *, seed=0):
    """Build the loss registered as ``name`` with ``example_loss`` and check it."""
    cls = LOSSES.get(name)
    input_shape = tuple(getattr(cls, "example_input_shape", DEFAULT_LOSS_INPUT_SHAPE))
    try:
        loss = example_loss(cls)
    except Exception as error:  # noqa: BLE001 - reported as a failed check
        return _unbuildable("loss", name, error)
    return check_loss(loss, input_shape, seed=seed, name=name)


def _unbuildable(kind, name, error):
    message = " ".join(str(error).split())
    return CheckReport(kind, name, [Check("build", False,
                                          detail=f"{type(error).__name__}: {message}")])


def check_registered(names=None, *, seed=0):
    """Check the registered layers and losses named in ``names`` (default: all of them).

    A name registered both as a layer and as a loss is checked as both. An unknown
    name raises ValueError listing the registered ones. Returns the reports, layers first.
    """
    _import_builtins()
    if names is None:
        names = LAYERS.names() + [name for name in LOSSES.names() if name not in LAYERS]
    unknown = [name for name in names if name not in LAYERS and name not in LOSSES]
    if unknown:
        raise ValueError(f"unknown layer or loss {unknown[0]!r}; registered layers: "
                         f"{', '.join(LAYERS.names())}; registered losses: "
                         f"{', '.join(LOSSES.names())}")

    reports = [check_registered_layer(name, seed=seed) for name in names if name in LAYERS]
    reports += [check_registered_loss(name, seed=seed) for name in names if name in LOSSES]
    return reports


def _import_builtins():
    """Import the modules whose classes register themselves on import."""
    import minilearn.layers  # noqa: F401
    import minilearn.losses  # noqa: F401
