"""The check kit: the contract of every layer and loss, run on one instance and reported check by check.

``check_layer(layer, input_shape)`` and ``check_loss(loss, input_shape)`` return a
``CheckReport`` that lists each check by name with pass or fail, the measured
error where there is one and what went wrong. ``check_registered`` runs them on
classes registered in ``LAYERS`` and ``LOSSES``, which is what the test suite and
``minilearn check`` do, so a newly registered class is checked with no new test code.

Gradient checks compare the backward pass with float64 central differences of the
objective L = sum(w * layer(x)) for fixed random weights w of the output's shape,
whose gradient with respect to the output is w. Their error is

    max |analytic - numeric| / max(max |analytic|, max |numeric|)

over all entries, 0 when both are zero, and a check passes when it is at most the
tolerance (``GRADIENT_TOLERANCE``, 1e-6 by default). Scaling by the largest entry
keeps rounding noise in entries near 0 from failing a correct backward pass, while a
flipped sign (error 1) or a missing 1/N (error at least 1 - 1/N) fails by far. The
central differences use the step ``FINITE_DIFFERENCE_STEP`` = 1e-6, whose
truncation and rounding errors stay near 1e-9 for inputs of order 1.

``report`` defines the results and their table, ``common`` the tolerances and
helpers that both kinds of check use, ``layer_checks`` and ``loss_checks`` the
two contracts, and ``registered`` the checks of registered classes. This package
re-exports their public names.
"""

from minilearn.testing.common import FINITE_DIFFERENCE_STEP, GRADIENT_TOLERANCE, gradient_error
from minilearn.testing.layer_checks import (
    DEFAULT_LAYER_INPUT_SHAPE,
    EVAL_BEHAVIORS,
    EXAMPLE_OUT_FEATURES,
    KINK_MARGIN,
    check_layer,
    example_layer,
    sample_input,
)
from minilearn.testing.loss_checks import (
    DEFAULT_LOSS_INPUT_SHAPE,
    REDUCTIONS,
    check_loss,
    choose_targets,
    example_loss,
    sample_outputs,
)
from minilearn.testing.registered import (
    check_registered,
    check_registered_layer,
    check_registered_loss,
)
from minilearn.testing.report import Check, CheckReport, format_reports

__all__ = [
    "DEFAULT_LAYER_INPUT_SHAPE", "DEFAULT_LOSS_INPUT_SHAPE", "EVAL_BEHAVIORS",
    "EXAMPLE_OUT_FEATURES", "FINITE_DIFFERENCE_STEP", "GRADIENT_TOLERANCE", "KINK_MARGIN",
    "REDUCTIONS", "Check", "CheckReport", "check_layer", "check_loss", "check_registered",
    "check_registered_layer", "check_registered_loss", "choose_targets", "example_layer",
    "example_loss", "format_reports", "gradient_error", "sample_input", "sample_outputs",
]
