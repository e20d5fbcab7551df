"""In-place y = alpha * x + beta * y in one pass, through the OpenBLAS that numpy runs on.

numpy has no fused multiply-add for arrays, so it computes y = alpha * x + beta * y
in two or three passes over memory, one of them into a scratch array. OpenBLAS,
which numpy's wheels bundle, does it in one pass: ``cblas_?axpby`` in general and
``cblas_?axpy`` for beta = 1. An optimizer step is mostly such updates over every
weight matrix, and they are the largest cost of a training step beyond the matrix
products.

``Axpby`` calls those routines in numpy's own copy of OpenBLAS. It looks for that
copy next to the numpy package, where the wheels put it, so it loads no second
BLAS and starts no second thread pool. Elsewhere, for instance when numpy is built
against MKL or Accelerate, or when the environment variable
``MINILEARN_BLAS_UPDATES`` is ``0`` (or ``false``, ``no``, ``off``), ``Axpby``
computes the same update with numpy ufuncs.

The two paths agree to rounding. For beta other than 1, OpenBLAS 0.3.31's Haswell
kernels give numpy's result bit for bit, which ``tests/test_blas.py`` checks where
those kernels run. Its axpy, used for beta = 1, and its SkylakeX kernels give
results that differ from numpy's in the last bit of some entries.
"""

import ctypes
import functools
import logging
import os
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

DISABLE_VARIABLE = "MINILEARN_BLAS_UPDATES"
# Values of the variable that turn the BLAS path off or leave it on, compared in
# lower case. Unset or empty leaves it on, and any other value is warned about.
OFF_VALUES = ("0", "false", "no", "off")
ON_VALUES = ("", "1", "true", "yes", "on")

# Longer vectors take the numpy path, because a 32-bit BLAS interface cannot address them.
_MAX_INT32 = 2**31 - 1


def _candidate_libraries():
    """Return the OpenBLAS files that numpy's wheels bundle beside the package."""
    # NOTE: only the Linux wheel's numpy.libs folder has been tried. The .dylibs
    # folder (macOS) and numpy.libs on Windows are untested guesses at where those
    # wheels put the library, and a miss falls back to numpy.
    package = Path(np.__file__).resolve().parent
    folders = (package.parent / "numpy.libs", package / ".dylibs")
    return sorted(path for folder in folders if folder.is_dir()
                  for path in folder.iterdir() if "openblas" in path.name.lower())


def _bind(library, prefix, suffix):
    """Return {dtype: (axpby, axpy)} from ``library`` with the given symbol affixes, or None."""
    get_config = getattr(library, f"{prefix}openblas_get_config{suffix}", None)
    if get_config is None:
        return None
    get_config.restype = ctypes.c_char_p
    get_config.argtypes = []
    config = get_config() or b""
    # An ILP64 build ("USE64BITINT") takes 64-bit integer arguments.
    integer = ctypes.c_int64 if b"USE64BITINT" in config else ctypes.c_int32

    functions = {}
    for letter, dtype, scalar in (("s", np.float32, ctypes.c_float),
                                  ("d", np.float64, ctypes.c_double)):
        axpby = getattr(library, f"{prefix}cblas_{letter}axpby{suffix}", None)
        axpy = getattr(library, f"{prefix}cblas_{letter}axpy{suffix}", None)
        if axpby is None or axpy is None:
            return None
        # cblas_?axpby(n, alpha, x, incx, beta, y, incy) and cblas_?axpy(n, alpha, x, incx, y, incy)
        axpby.argtypes = [integer, scalar, ctypes.c_void_p, integer, scalar, ctypes.c_void_p,
                          integer]
        axpy.argtypes = [integer, scalar, ctypes.c_void_p, integer, ctypes.c_void_p, integer]
        axpby.restype = axpy.restype = None
        functions[np.dtype(dtype)] = (axpby, axpy)
    return functions


def _agrees_with_numpy(functions):
    """Run each routine on a small vector and compare it with the numpy result.

    Every term is positive, so no sum cancels, and a kernel that rounds once
    instead of twice stays within a few ulp of numpy.
    """
    for dtype, (axpby, axpy) in functions.items():
        x = np.linspace(1.0, 2.0, 37).astype(dtype)
        y = np.linspace(3.0, 4.0, 37).astype(dtype)
        expected = x * dtype.type(0.25) + y * dtype.type(0.75)
        axpby(len(y), 0.25, x.ctypes.data, 1, 0.75, y.ctypes.data, 1)
        if not np.allclose(y, expected, rtol=4 * np.finfo(dtype).eps, atol=0):
            return False

        expected = y + x * dtype.type(0.5)
        axpy(len(y), 0.5, x.ctypes.data, 1, y.ctypes.data, 1)
        if not np.allclose(y, expected, rtol=4 * np.finfo(dtype).eps, atol=0):
            return False
    return True


@functools.lru_cache(maxsize=None)
def _routines():
    """Return {dtype: (axpby, axpy)} from numpy's OpenBLAS, or an empty dict to use numpy."""
    setting = os.environ.get(DISABLE_VARIABLE, "").strip().lower()
    if setting in OFF_VALUES:
        return {}
    if setting not in ON_VALUES:
        logger.warning("%s=%r is not one of %s; using BLAS updates where available",
                       DISABLE_VARIABLE, os.environ[DISABLE_VARIABLE],
                       ", ".join(OFF_VALUES + ON_VALUES[1:]))
    libraries = _candidate_libraries()
    if len(libraries) != 1:
        return {}
    try:
        library = ctypes.CDLL(str(libraries[0]))
    except OSError as error:
        logger.debug("not using BLAS updates: cannot load %s: %s", libraries[0], error)
        return {}

    for prefix in ("scipy_", ""):
        for suffix in ("64_", ""):
            functions = _bind(library, prefix, suffix)
            if functions is not None and _agrees_with_numpy(functions):
                logger.debug("BLAS updates use %s from %s",
                             f"{prefix}cblas_?axpby{suffix} and {prefix}cblas_?axpy{suffix}",
                             libraries[0])
                return functions
    return {}


def blas_libraries():
    """Return threadpoolctl's reports on the loaded BLAS libraries, numpy's first.

    Each report is a dict with keys such as ``internal_api``, ``version``,
    ``architecture`` and ``filepath``. numpy's library comes from its own package
    folder, and another package, such as SciPy, may load a second one. The list is
    empty when threadpoolctl is not installed.
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    libraries = [info for info in threadpool_info() if info.get("user_api") == "blas"]
    return sorted(libraries, key=lambda info: "numpy" not in info.get("filepath", ""))


def blas_available():
    """Return whether ``Axpby`` runs in BLAS for contiguous float32 and float64 arrays."""
    return bool(_routines())


class Axpby:
    """The update y = alpha * x + beta * y in place, for two arrays fixed at construction.

    x and y are arrays of one shape and dtype. An optimizer keeps one ``Axpby`` per
    parameter and calls it every step, so the checks and the data addresses that
    BLAS needs are worked out once, here. Contiguous float32 and float64 arrays go
    to BLAS when it is available. Anything else takes the numpy path.
    """

    def __init__(self, x, y):
        self.x = x
        self.y = y
        self._axpby = self._axpy = None
        routines = _routines().get(y.dtype)
        if not (routines is not None and x.dtype == y.dtype and x.shape == y.shape
                and x.flags.c_contiguous and y.flags.c_contiguous and y.flags.writeable
                and 0 < y.size <= _MAX_INT32):
            return
        # BLAS reads and writes element by element, so partly overlapping views would
        # see entries it has already written. numpy buffers such operands.
        if x is not y and np.may_share_memory(x, y):
            return
        self._axpby, self._axpy = routines
        # The arrays are referenced above, so their memory stays where it is.
        self._x_address = x.ctypes.data
        self._y_address = y.ctypes.data

    def __getstate__(self):
        # The BLAS function and the data addresses cannot be pickled, and after a copy
        # the arrays live elsewhere, so a copy works them out again.
        return {"x": self.x, "y": self.y}

    def __setstate__(self, state):
        self.__init__(state["x"], state["y"])

    def __call__(self, alpha, beta, scratch=None):
        """Set y = alpha * x + beta * y and return y.

        ``alpha`` and ``beta`` are Python floats, rounded to the arrays' dtype. With
        beta = 1, BLAS's axpy computes y + alpha * x, which OpenBLAS 0.3.31 splits
        over its threads for long vectors, where axpby runs on one. The numpy path
        computes y *= beta, then y += alpha * x, the product going into ``scratch``
        (an array like y) when one is given. A zero alpha or beta also takes it,
        because BLAS skips the matching operand, so a NaN there would not propagate.
        """
        if self._axpby is not None and alpha and beta:
            if beta == 1:
                self._axpy(self.y.size, alpha, self._x_address, 1, self._y_address, 1)
            else:
                self._axpby(self.y.size, alpha, self._x_address, 1, beta, self._y_address, 1)
            return self.y

        x, y = self.x, self.y
        if beta != 1:
            y *= beta
        if alpha == 1:
            y += x
        elif scratch is not None:
            np.multiply(x, alpha, out=scratch)
            y += scratch
        else:
            y += x * alpha
        return y
