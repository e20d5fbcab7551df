"""minilearn: softmax regression and MLP classifiers on numpy, with hand-derived backward passes.

The building blocks come first and import nothing from training: ``layers``,
``losses`` and ``optim``. ``model`` and ``training`` use them, and ``data``,
``config``, ``runner`` and ``cli`` sit on top.
"""

from minilearn.layers import Identity, Layer, Linear, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from minilearn.losses import (
    MSE,
    BinaryCrossEntropy,
    CrossEntropy,
    Loss,
    NaiveCrossEntropy,
    NLLLoss,
)
from minilearn.model import Sequential
from minilearn.optim import SGD, Optimizer
from minilearn.training import History, evaluate, fit

__version__ = "0.1.0"

__all__ = [
    "BinaryCrossEntropy", "CrossEntropy", "History", "Identity", "Layer", "Linear",
    "LogSoftmax", "Loss", "MSE", "NLLLoss", "NaiveCrossEntropy", "Optimizer", "ReLU",
    "SGD", "Sequential", "Sigmoid", "Softmax", "Tanh", "evaluate", "fit",
]
