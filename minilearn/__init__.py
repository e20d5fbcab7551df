"""minilearn: softmax regression and MLP classifiers on numpy, with hand-derived backward passes.

The building blocks come first and import nothing from training: ``layers``,
``losses`` and ``optim``. ``model`` and ``training`` use them, and ``data``,
``config``, ``runner`` and ``cli`` sit on top.
"""

from minilearn.layers import (
    ELU,
    BatchNorm1d,
    Dropout,
    Identity,
    Layer,
    LeakyReLU,
    Linear,
    LogSoftmax,
    ReLU,
    Sigmoid,
    Softmax,
    Softplus,
    Tanh,
    Temperature,
)
from minilearn.losses import (
    MSE,
    BinaryCrossEntropy,
    CrossEntropy,
    Loss,
    NaiveCrossEntropy,
    NLLLoss,
)
from minilearn.model import Sequential
from minilearn.optim import SGD, Adam, AdamW, Optimizer
from minilearn.training import History, evaluate, fit

__version__ = "0.1.0"

__all__ = [
    "Adam", "AdamW", "BatchNorm1d", "BinaryCrossEntropy", "CrossEntropy", "Dropout", "ELU",
    "History", "Identity", "Layer", "LeakyReLU", "Linear", "LogSoftmax", "Loss", "MSE",
    "NLLLoss", "NaiveCrossEntropy", "Optimizer", "ReLU", "SGD", "Sequential", "Sigmoid",
    "Softmax", "Softplus", "Tanh", "Temperature", "evaluate", "fit",
]
