"""The tolerances and helpers that the layer and the loss checks share."""

import numpy as np

from minilearn.testing.report import Check

GRADIENT_TOLERANCE = 1e-6
FINITE_DIFFERENCE_STEP = 1e-6

# Tolerance of comparisons between two computations of one value in float64, e.g.
# a loss summed over samples against the "sum" reduction.
CLOSE_TOLERANCE = {"rtol": 1e-10, "atol": 1e-12}


def gradient_error(analytic, numeric):
    """Return max |a - n| / max(max |a|, max |n|), the kit's scaled gradient error.

    It is 0 when both arrays are all zeros and inf when an entry is not finite.
    """
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    if not (np.all(np.isfinite(analytic)) and np.all(np.isfinite(numeric))):
        return float("inf")
    scale = max(float(np.max(np.abs(analytic), initial=0.0)),
                float(np.max(np.abs(numeric), initial=0.0)))
    if scale == 0:
        return 0.0
    return float(np.max(np.abs(analytic - numeric)) / scale)


def display_name(cls):
    """Return the name ``cls`` itself is registered under, else its class name.

    A subclass inherits ``registered_name`` from its parent, so only the class's own
    attribute counts.
    """
    return vars(cls).get("registered_name", cls.__name__)


def run_check(name, function, *args):
    """Run one check function, turning an exception it raises into a failed Check."""
    try:
        passed, detail, *measured = function(*args)
    except Exception as error:  # noqa: BLE001 - a crashing layer fails the check it crashed in
        message = " ".join(str(error).split())
        return Check(name, False, detail=f"raised {type(error).__name__}: {message}")
    error, tolerance = (measured + [None, None])[:2]
    return Check(name, bool(passed), error, tolerance, detail)


def copy_or_none(value):
    return None if value is None else np.array(value, copy=True)


def arrays_equal(a, b):
    """Return True when both are None, or both are arrays with equal shapes and values."""
    if a is None or b is None:
        return a is None and b is None
    return np.shape(a) == np.shape(b) and np.array_equal(a, b)
