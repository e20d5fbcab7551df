"""scikit-learn estimators around minilearn's models: ``SoftmaxRegression`` and ``MLPClassifier``.

They follow scikit-learn's estimator API, so they work in ``Pipeline``,
``GridSearchCV`` and ``cross_val_score``, and they train through
``minilearn.fit`` on a ``minilearn.Sequential``. This module imports scikit-learn
at the top, so ``import minilearn`` does not import it: import
``minilearn.estimators`` where you need the estimators.

What matches scikit-learn's ``MLPClassifier``:

- Any labels that scikit-learn's classifiers take (integers, strings, ...).
  ``classes_`` contains them sorted, ``predict_proba`` has one column per class in
  that order, and ``predict(X)`` is ``classes_[argmax(predict_proba(X))]``.
- Without ``early_stopping``, training stops once the training loss has not
  fallen by more than ``tol`` for ``n_iter_no_change`` epochs in a row. With it,
  a stratified ``validation_fraction`` of the training data is held out,
  training stops once the validation accuracy has not risen by more than
  ``tol`` for ``n_iter_no_change`` epochs in a row, and the parameters of the
  best epoch are restored. scikit-learn stops one epoch later, after
  ``n_iter_no_change + 1`` such epochs.
- ``loss_curve_``, ``validation_scores_``, ``best_loss_``,
  ``best_validation_score_``, ``n_iter_``, ``t_``, ``coefs_`` and
  ``intercepts_``, ``warm_start`` and ``partial_fit`` behave as there. A fit that
  runs all ``max_iter`` epochs warns with ``ConvergenceWarning``.

What differs:

- Regularization is ``weight_decay``, minilearn's L2 coefficient lambda that adds
  lambda * theta to the gradient of the mean loss, biases included. It is not
  scikit-learn's ``alpha``, which is divided by the batch size: alpha =
  lambda * batch size.
- ``loss_curve_`` contains the mean cross-entropy alone, without the penalty.
- ``random_state`` is None, an integer seed or a ``numpy.random.Generator``.
  A legacy ``numpy.random.RandomState`` is rejected.
- ``class_weight`` ("balanced" or a dict) weighs the cross-entropy as
  ``minilearn.CrossEntropy`` does, as PyTorch does: the mean divides by the
  summed weights of the batch's samples. ``partial_fit`` passes one-hot targets,
  for which the mean divides by the batch size instead, and it rejects
  "balanced" because it never sees all the data, as scikit-learn's
  ``SGDClassifier`` does.

Both pass every check of scikit-learn's ``parametrize_with_checks`` (run in the
test suite against scikit-learn 1.9.1), so ``EXPECTED_FAILED_CHECKS`` is empty.
``check_array_api_input`` skips itself unless SCIPY_ARRAY_API is set, and the
estimators take numpy arrays only.
"""

import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted

from minilearn import functional as F
from minilearn import layers
from minilearn.early_stopping import EarlyStopping
from minilearn.losses import CrossEntropy
from minilearn.model import Sequential
from minilearn.optim import SGD, Adam, AdamW
from minilearn.training import fit as train

# scikit-learn's names for the activations, with minilearn's "sigmoid" as an alias.
ACTIVATION_LAYERS = {
    "identity": layers.Identity,
    "logistic": layers.Sigmoid,
    "sigmoid": layers.Sigmoid,
    "tanh": layers.Tanh,
    "relu": layers.ReLU,
}

SOLVERS = ("sgd", "adam", "adamw")

# The largest batch that batch_size="auto" picks, as in scikit-learn's MLP.
AUTO_BATCH_SIZE = 200

# Names of scikit-learn estimator checks that these estimators fail, mapped to the
# reason. tests/test_estimators.py hands it to parametrize_with_checks, which marks
# the listed checks as expected failures.
EXPECTED_FAILED_CHECKS = {}


class _MinilearnClassifier(ClassifierMixin, BaseEstimator):
    """The estimator API shared by ``SoftmaxRegression`` and ``MLPClassifier``.

    Subclasses store their constructor arguments unchanged and implement
    ``_hidden_sizes`` and ``_activation``. Arguments are checked in ``fit``, as
    scikit-learn requires, with ValueError or TypeError naming the argument.
    """

    def _hidden_sizes(self):
        return []

    def _activation(self):
        return "relu"

    # Training

    def fit(self, X, y):
        """Train on X (n_samples, n_features) and labels y (n_samples,); returns self.

        With ``warm_start`` and a fitted model, training goes on from the current
        parameters with a new optimizer. Otherwise the model starts afresh.
        """
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X, y, classes=None):
        """Train one epoch on X, y, keeping the optimizer's state between calls; returns self.

        ``classes`` lists every label of the whole dataset. It is required on the
        first call, and y of any call may hold only some of them.
        """
        if self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True, because a "
                             "single epoch has nothing to stop; set early_stopping=False")
        if isinstance(self.class_weight, str) and self.class_weight == "balanced":
            raise ValueError("class_weight='balanced' needs the class counts of all the data, "
                             "which partial_fit never sees; pass a dict such as the output of "
                             "sklearn.utils.class_weight.compute_class_weight instead")
        first_call = self._set_partial_fit_classes(classes)
        return self._fit(X, y, incremental=True, first_call=first_call)

    def _fit(self, X, y, *, incremental, first_call=None):
        self._check_params()
        if first_call is None:
            first_call = not (self.warm_start and hasattr(self, "model_"))
        X, y = _validate_data(self, X, y, reset=first_call)
        check_classification_targets(y)

        if not incremental:
            self._set_fit_classes(y, first_call)
        targets = self._encode(y)
        if first_call:
            self._initialize(X.shape[1])
        elif self._fitted_hidden != self._hidden_sizes():
            raise ValueError(f"hidden_layer_sizes = {self._hidden_sizes()} differs from the "
                             f"fitted model's {self._fitted_hidden}; set warm_start=False to "
                             "train a new model")

        if incremental:
            history, n_trained = self._train_one_epoch(X, targets)
        else:
            history, n_trained = self._train_epochs(X, targets)
        self._record_history(history, n_samples=n_trained, incremental=incremental)
        return self

    def _set_fit_classes(self, y, first_call):
        classes = unique_labels(y)
        if len(classes) < 2:
            raise ValueError(f"y contains only one class ({_plain(classes[0])!r}); a classifier needs "
                             "at least 2 classes")
        if not first_call and not np.array_equal(classes, self.classes_):
            raise ValueError(f"warm_start needs y with the same classes as the previous fit: "
                             f"had {self.classes_.tolist()}, y has {classes.tolist()}; set "
                             "warm_start=False to train a new model")
        self.classes_ = classes

    def _set_partial_fit_classes(self, classes):
        """Set ``classes_`` on the first call; returns True for the first call."""
        fitted = getattr(self, "classes_", None) is not None and hasattr(self, "model_")
        if not fitted and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit; pass "
                             "every label of the whole dataset, e.g. np.unique(y_all)")
        if classes is None:
            return False
        classes = unique_labels(classes)
        if fitted:
            if not np.array_equal(classes, self.classes_):
                raise ValueError(f"classes={classes.tolist()} differs from the classes of the "
                                 f"first call to partial_fit, {self.classes_.tolist()}")
            return False
        if len(classes) < 2:
            raise ValueError(f"classes contains only one class ({_plain(classes[0])!r}); a classifier "
                             "needs at least 2 classes")
        self.classes_ = classes
        return True

    def _encode(self, y):
        """Return the class index (n_samples,) of each label in y."""
        known = np.isin(y, self.classes_)
        if not known.all():
            unknown = _plain(y[np.flatnonzero(~known)[0]])
            raise ValueError(f"y contains the label {unknown!r}, which is not in classes_ "
                             f"{self.classes_.tolist()}; pass every label in classes on the "
                             "first call to partial_fit")
        return np.searchsorted(self.classes_, y).astype(np.int64)

    def _initialize(self, n_features):
        """Build a new model and reset the training record."""
        seeds = _seed_sequence(self.random_state).spawn(3)
        init_rng, shuffle_rng, split_rng = (np.random.default_rng(seed) for seed in seeds)
        self.model_ = _build_model(n_features, self._hidden_sizes(), len(self.classes_),
                                   self._activation(), init_rng)
        self._fitted_hidden = self._hidden_sizes()
        self._shuffle_rng = shuffle_rng
        self._split_rng = split_rng
        self._optimizer = None
        self.loss_curve_ = []
        self.validation_scores_ = [] if self.early_stopping else None
        self.t_ = 0

    def _train_epochs(self, X, targets):
        """Train up to ``max_iter`` epochs with a new optimizer.

        Returns the History and the number of samples trained on, which excludes
        the validation data held out for early stopping.
        """
        self._optimizer = self._build_optimizer()
        validation = None
        if self.early_stopping:
            X, targets, validation = self._hold_out_validation(X, targets)
        monitor = "val_accuracy" if self.early_stopping else "train_loss"
        stopper = EarlyStopping(patience=self.n_iter_no_change, min_delta=self.tol,
                                monitor=monitor, restore_best=bool(self.early_stopping))

        history = train(self.model_, self._build_loss(targets), self._optimizer, X, targets,
                        epochs=self.max_iter, batch_size=self._batch_size(len(X)),
                        seed=self._shuffle_rng, validation=validation,
                        progress=bool(self.verbose), early_stopping=stopper)
        self._warn_on_end(history)
        return history, len(X)

    def _train_one_epoch(self, X, targets):
        """Train one epoch, keeping the optimizer between calls; returns the History and len(X).

        The targets go to the loss as one-hot rows (n_samples, n_classes), because
        a part of the data may lack some classes, which class indices would reject.
        NOTE: with class weights, the mean over one-hot rows divides by the batch
        size, not by the summed weights as ``fit`` does, so the step sizes differ.
        """
        if self._optimizer is None:
            self._optimizer = self._build_optimizer()
        one_hot = F.one_hot(targets, len(self.classes_), dtype=np.float64)
        history = train(self.model_, self._build_loss(targets), self._optimizer, X, one_hot,
                        epochs=1, batch_size=self._batch_size(len(X)), seed=self._shuffle_rng,
                        progress=bool(self.verbose))
        self._warn_on_end(history)
        return history, len(X)

    def _hold_out_validation(self, X, targets):
        """Split off a stratified ``validation_fraction`` of X, targets for early stopping."""
        from sklearn.model_selection import train_test_split

        seed = int(self._split_rng.integers(2**31 - 1))
        try:
            X_train, X_val, y_train, y_val = train_test_split(
                X, targets, test_size=self.validation_fraction, stratify=targets,
                random_state=seed)
        except ValueError as error:
            raise ValueError(f"cannot hold out a stratified validation_fraction = "
                             f"{self.validation_fraction} for early stopping: {error}; raise "
                             "validation_fraction or set early_stopping=False") from None
        if len(X_val) < 2:
            raise ValueError(f"validation_fraction = {self.validation_fraction} holds out only "
                             f"{len(X_val)} sample(s); raise it or use more data")
        if len(np.unique(y_train)) < len(self.classes_):
            raise ValueError("after holding out the validation data, a class has no training "
                             "sample left; lower validation_fraction or set early_stopping=False")
        return X_train, y_train, (X_val, y_val)

    def _build_optimizer(self):
        common = {"lr": self.learning_rate_init, "weight_decay": self.weight_decay,
                  "max_grad_norm": self.max_grad_norm}
        if self.solver == "sgd":
            nesterov = bool(self.nesterovs_momentum) and self.momentum > 0
            return SGD(momentum=self.momentum, nesterov=nesterov, **common)
        optimizer_class = Adam if self.solver == "adam" else AdamW
        return optimizer_class(betas=(self.beta_1, self.beta_2), eps=self.epsilon, **common)

    def _build_loss(self, targets):
        return CrossEntropy(weight=self._class_weight_vector(targets))

    def _class_weight_vector(self, targets):
        """Return the class weights (n_classes,) in ``classes_`` order, or None."""
        if self.class_weight is None:
            return None
        if isinstance(self.class_weight, str):
            from sklearn.utils.class_weight import compute_class_weight

            return compute_class_weight("balanced", classes=np.arange(len(self.classes_)),
                                        y=targets)
        weights = np.ones(len(self.classes_))
        for label, weight in self.class_weight.items():
            index = np.flatnonzero(self.classes_ == label)
            if index.size == 0:
                raise ValueError(f"class_weight has the label {label!r}, which is not in "
                                 f"classes_ {self.classes_.tolist()}")
            weights[index[0]] = weight
        return weights

    def _batch_size(self, n_samples):
        if self.batch_size == "auto":
            return min(AUTO_BATCH_SIZE, n_samples)
        return int(self.batch_size)

    def _warn_on_end(self, history):
        if history.status == "diverged":
            warnings.warn(f"{history.message}; the parameters of the last finite step are kept",
                          ConvergenceWarning, stacklevel=5)
        elif history.status == "interrupted":
            warnings.warn("training interrupted by the user", UserWarning, stacklevel=4)

    def _record_history(self, history, *, n_samples, incremental):
        """Store the fitted attributes that scikit-learn's MLP has, from a fit's History.

        ``n_samples`` is the number of samples each epoch trained on.
        """
        self.history_ = history
        self.n_iter_ = len(history)
        self.t_ += n_samples * len(history)
        self.loss_curve_.extend(history["train_loss"])
        self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else None
        if self.validation_scores_ is not None:
            self.validation_scores_.extend(history["val_accuracy"])
            self.best_validation_score_ = max(self.validation_scores_, default=None)
            self.best_loss_ = None
        else:
            self.best_validation_score_ = None
            self.best_loss_ = min(self.loss_curve_, default=None)

        ran_out = (not incremental and history.status == "completed"
                   and history.stopped_epoch is None and self.n_iter_ == self.max_iter)
        if ran_out:
            warnings.warn(f"{type(self).__name__} ran all max_iter = {self.max_iter} epochs "
                          "and the loss was still improving by more than tol; raise max_iter "
                          "or learning_rate_init", ConvergenceWarning, stacklevel=5)

    # Prediction

    def decision_function(self, X):
        """Return the logits (n_samples, n_classes), or z1 - z0 (n_samples,) for two classes.

        For two classes z1 - z0 is the log-odds of ``classes_[1]``, so it is
        positive exactly where that class is the more probable one.
        """
        logits = self._logits(X)
        if len(self.classes_) == 2:
            return logits[:, 1] - logits[:, 0]
        return logits

    def predict_proba(self, X):
        """Return class probabilities (n_samples, n_classes), columns in ``classes_`` order."""
        return F.softmax(self._logits(X), axis=1)

    def predict_log_proba(self, X):
        """Return log-probabilities (n_samples, n_classes) from the logits by a stable log-softmax.

        Unlike log(predict_proba(X)), a probability that rounds to 0 still has a
        finite logarithm.
        """
        return F.log_softmax(self._logits(X), axis=1)

    def predict(self, X):
        """Return the most probable label (n_samples,), ``classes_[argmax(predict_proba(X))]``."""
        probabilities = self.predict_proba(X)
        return self.classes_[np.argmax(probabilities, axis=1)]

    def _logits(self, X):
        check_is_fitted(self, "model_")
        X = _validate_data(self, X, reset=False)
        return self.model_.predict_outputs(X)

    # Parameters of the fitted model, as scikit-learn names them

    @property
    def coefs_(self):
        """Weight matrices (n_in, n_out) of the Linear layers, first to last; live arrays."""
        check_is_fitted(self, "model_")
        return [layer.params["weight"] for layer in self.model_.layers
                if isinstance(layer, layers.Linear)]

    @property
    def intercepts_(self):
        """Bias vectors (n_out,) of the Linear layers, first to last; live arrays."""
        check_is_fitted(self, "model_")
        return [layer.params["bias"] for layer in self.model_.layers
                if isinstance(layer, layers.Linear)]

    # Checks of the constructor arguments

    def _check_params(self):
        """Check every constructor argument; raises ValueError or TypeError naming it."""
        _check_choice("solver", self.solver, SOLVERS)
        _check_real("learning_rate_init", self.learning_rate_init, low=0.0, strict=True,
                    fix="use a positive learning rate such as 0.001")
        _check_real("momentum", self.momentum, low=0.0, high=1.0,
                    fix="use 0 for plain SGD or a value such as 0.9")
        _check_real("beta_1", self.beta_1, low=0.0, high=1.0, fix="use e.g. 0.9")
        _check_real("beta_2", self.beta_2, low=0.0, high=1.0, fix="use e.g. 0.999")
        _check_real("epsilon", self.epsilon, low=0.0, strict=True, fix="use e.g. 1e-8")
        _check_real("weight_decay", self.weight_decay, low=0.0, fix="use 0 to turn it off")
        _check_real("tol", self.tol, low=0.0, fix="use e.g. 1e-4")
        _check_real("validation_fraction", self.validation_fraction, low=0.0, high=1.0,
                    strict=True, fix="use e.g. 0.1")
        if self.max_grad_norm is not None:
            _check_real("max_grad_norm", self.max_grad_norm, low=0.0, strict=True,
                        fix="use e.g. 1.0, or None to turn clipping off")
        _check_int("max_iter", self.max_iter, fix="use the number of epochs, e.g. 200")
        _check_int("n_iter_no_change", self.n_iter_no_change, fix="use e.g. 10")
        if self.batch_size != "auto":
            _check_int("batch_size", self.batch_size, fix="use 'auto' or e.g. 64")
        for name in ("early_stopping", "warm_start", "nesterovs_momentum"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        _check_class_weight(self.class_weight)
        _check_choice("activation", self._activation(), tuple(ACTIVATION_LAYERS))
        self._hidden_sizes()
        _check_random_state(self.random_state)


class SoftmaxRegression(_MinilearnClassifier):
    """Softmax (multinomial logistic) regression: one Linear layer and the cross-entropy.

    Parameters follow scikit-learn's MLPClassifier where it has them (see the
    module docstring for what differs):

    solver: "sgd", "adam" or "adamw" (minilearn's SGD, Adam and AdamW).
    learning_rate_init: the optimizer's lr.
    weight_decay: L2 coefficient lambda; the gradient gets lambda * theta.
    batch_size: samples per step, or "auto" for min(200, n_samples).
    max_iter: the maximum number of epochs of one fit.
    tol, n_iter_no_change: the stopping rule, on the training loss or, with
        ``early_stopping``, on the accuracy of a held-out ``validation_fraction``.
    momentum, nesterovs_momentum: SGD's momentum and Nesterov flag.
    beta_1, beta_2, epsilon: Adam's betas and eps.
    max_grad_norm: clip the global gradient norm to this; None turns it off.
    class_weight: None, "balanced" or a dict {label: weight}.
    random_state: None, an integer seed or a numpy.random.Generator.
    warm_start: fit goes on from the fitted parameters.
    verbose: show a progress bar or log each epoch.
    """

    def __init__(self, *, solver="adam", learning_rate_init=0.01, weight_decay=0.0,
                 batch_size="auto", max_iter=100, tol=1e-4, n_iter_no_change=10,
                 early_stopping=False, validation_fraction=0.1, momentum=0.9,
                 nesterovs_momentum=False, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 max_grad_norm=None, class_weight=None, random_state=None, warm_start=False,
                 verbose=False):
        self.solver = solver
        self.learning_rate_init = learning_rate_init
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.max_grad_norm = max_grad_norm
        self.class_weight = class_weight
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose

    @property
    def coef_(self):
        """Weights (n_classes, n_features), as LogisticRegression's multinomial ``coef_``."""
        return self.coefs_[0].T

    @property
    def intercept_(self):
        """Biases (n_classes,)."""
        return self.intercepts_[0]


class MLPClassifier(_MinilearnClassifier):
    """Multi-layer perceptron classifier: Linear layers with an activation between them.

    hidden_layer_sizes: the width of each hidden layer, e.g. (100,) or (64, 32).
    activation: "relu", "tanh", "logistic" (or "sigmoid") or "identity".
    Layers feeding a ReLU start with He initialization, the others with Glorot.
    The other parameters are those of ``SoftmaxRegression``, with the defaults of
    scikit-learn's MLPClassifier (see the module docstring for what differs).
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 learning_rate_init=0.001, weight_decay=0.0, batch_size="auto", max_iter=200,
                 tol=1e-4, n_iter_no_change=10, early_stopping=False, validation_fraction=0.1,
                 momentum=0.9, nesterovs_momentum=True, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, max_grad_norm=None, class_weight=None, random_state=None,
                 warm_start=False, verbose=False):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.learning_rate_init = learning_rate_init
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.max_grad_norm = max_grad_norm
        self.class_weight = class_weight
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = [sizes]
        try:
            sizes = list(sizes)
        except TypeError:
            raise TypeError(f"hidden_layer_sizes must be a sequence of positive integers, got "
                            f"{self.hidden_layer_sizes!r}; use e.g. (100,) or (64, 32)") from None
        for size in sizes:
            if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
                raise ValueError(f"hidden_layer_sizes must hold positive integers, got "
                                 f"{self.hidden_layer_sizes!r}; use e.g. (100,) or (64, 32)")
        return [int(size) for size in sizes]

    def _activation(self):
        return self.activation


# Helpers


def _plain(label):
    """Return a numpy scalar label as the Python value, so messages show 7 and not np.int64(7)."""
    return label.item() if isinstance(label, np.generic) else label


def _validate_data(estimator, X, y="no_validation", *, reset):
    """Check X (and y, when given) with scikit-learn's validation, X as float64.

    ``reset`` records ``n_features_in_`` instead of checking X against it. A y of
    None is an error, as scikit-learn's classifiers require labels.
    """
    try:
        from sklearn.utils.validation import validate_data
    except ImportError:  # scikit-learn before 1.6
        def validate_data(estimator, *args, **kwargs):
            return estimator._validate_data(*args, **kwargs)

    return validate_data(estimator, X, y, reset=reset, dtype=np.float64)


def _build_model(n_features, hidden_sizes, n_classes, activation, rng):
    """Return a Sequential of Linear layers with ``activation`` between them, ending in logits.

    Layers that feed a ReLU start with He initialization and the rest with Glorot,
    as the configs' init = "auto" does.
    """
    hidden_init = "he" if activation == "relu" else "glorot"
    model_layers = []
    width = n_features
    for size in hidden_sizes:
        model_layers.append(layers.Linear(width, size, rng=rng, init=hidden_init))
        model_layers.append(ACTIVATION_LAYERS[activation]())
        width = size
    model_layers.append(layers.Linear(width, n_classes, rng=rng, init="glorot"))
    return Sequential(model_layers)


def _seed_sequence(random_state):
    """Return a SeedSequence from None (fresh entropy), an integer seed or a Generator."""
    if random_state is None:
        return np.random.SeedSequence()
    if isinstance(random_state, np.random.Generator):
        return np.random.SeedSequence(int(random_state.integers(2**63)))
    return np.random.SeedSequence(int(random_state))


def _check_random_state(random_state):
    if random_state is None or isinstance(random_state, np.random.Generator):
        return
    if isinstance(random_state, bool) or not isinstance(random_state, numbers.Integral):
        raise TypeError(f"random_state must be None, an integer seed or a "
                        f"numpy.random.Generator, got {type(random_state).__name__}; pass e.g. "
                        "random_state=0 or np.random.default_rng(0)")
    if random_state < 0:
        raise ValueError(f"random_state must be a non-negative integer seed, got "
                         f"{random_state}; pass e.g. random_state=0")


def _check_choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def _check_real(name, value, *, low, fix, high=None, strict=False):
    """Check low <= value (< when strict) and value < high; raises naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}; {fix}")
    too_small = value <= low if strict else value < low
    too_large = high is not None and value >= high
    if too_small or too_large or value != value:
        rule = f"> {low}" if strict else f">= {low}"
        if high is not None:
            rule += f" and < {high}"
        raise ValueError(f"{name} must be {rule}, got {value!r}; {fix}")


def _check_int(name, value, *, fix):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}; {fix}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}; {fix}")


def _check_class_weight(class_weight):
    if class_weight is None or (isinstance(class_weight, str) and class_weight == "balanced"):
        return
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight must be None, 'balanced' or a dict {{label: weight}}, "
                        f"got {class_weight!r}")
    for label, weight in class_weight.items():
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) \
                or not np.isfinite(weight) or weight < 0:
            raise ValueError(f"class_weight[{label!r}] = {weight!r} must be a finite number "
                             ">= 0; use 0 to leave a class out")
