"""scikit-learn's counterpart of a run, fitted on the same split for comparison.

A config without hidden layers is softmax regression, whose counterpart is
``sklearn.linear_model.LogisticRegression``. A config with hidden layers gets
``sklearn.neural_network.MLPClassifier`` with the same sizes and activation. Both
train on the run's training split, after the same standardization, and are
scored on its test split with accuracy and log-loss (mean, in nats, as
minilearn's cross-entropy).

Where the two libraries state the same model differently, the conversions are
made in ``logistic_regression_params`` and ``mlp_params`` and explained there.
Some things are not matched. Each library draws its own initial weights. The
scikit-learn model keeps a constant lr and trains every epoch, with no schedule
and no early stopping. Its classifiers minimize log-loss whatever ``loss.name``
is. (scikit-learn's squared error, used by its regressors, is halved, so it
would read half of minilearn's ``mse`` anyway.) LogisticRegression is fitted to
convergence by lbfgs rather than by minilearn's optimizer. scikit-learn is
imported inside the functions, so importing this module stays cheap.
"""

import logging
import math
import warnings

import numpy as np

logger = logging.getLogger(__name__)

# minilearn's activations by scikit-learn's names for them.
SKLEARN_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "logistic",
                       "identity": "identity"}

# Iterations of LogisticRegression's lbfgs solver; its default of 100 stops short
# on the bundled datasets when the penalty is weak.
LOGISTIC_MAX_ITER = 1000


def fit_sklearn_reference(config, splits):
    """Fit scikit-learn's counterpart of the run on ``splits``; returns a JSON-ready record.

    The record has ``model`` (the class name), ``params`` (the arguments that
    differ from scikit-learn's defaults or were converted), ``n_iter``,
    ``converged`` and ``test`` ({"accuracy", "log_loss"}, or None without a test
    split). It leaves out wall times, so metrics.json stays the same for the same
    config and seed.
    """
    estimator, params = build_reference_estimator(config, splits)
    X_train, y_train = splits.train
    fit_options = _sample_weight_option(estimator, config, y_train, splits.n_classes)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimator.fit(X_train, y_train, **fit_options)
    converged = not any(_is_convergence_warning(item.category) for item in caught)
    for item in caught:
        logger.info("scikit-learn %s: %s", type(estimator).__name__, item.message)

    record = {
        "model": type(estimator).__name__,
        "params": _jsonable_params(params),
        "n_iter": _iterations(estimator),
        "converged": converged,
        "test": None,
    }
    if splits.test is not None:
        record["test"] = score_reference(estimator, *splits.test, n_classes=splits.n_classes)
    logger.info("scikit-learn %s reference: test accuracy %s", record["model"],
                None if record["test"] is None else f"{record['test']['accuracy']:.4f}")
    return record


def build_reference_estimator(config, splits):
    """Return (unfitted estimator, its converted params) for a resolved config."""
    if config["model"]["hidden"]:
        from sklearn.neural_network import MLPClassifier

        params = mlp_params(config, n_train=len(splits.train[1]))
        return MLPClassifier(**params), params

    from sklearn.linear_model import LogisticRegression

    params = logistic_regression_params(config, splits.train[1], splits.n_classes)
    return LogisticRegression(**params), params


def logistic_regression_params(config, labels, n_classes):
    """Convert minilearn's L2 weight decay into LogisticRegression's ``C``.

    minilearn minimizes the mean cross-entropy plus (lambda / 2) * ||theta||^2,
    because a weight decay lambda adds lambda * theta to the gradient.
    scikit-learn minimizes (1 / S) * sum_i s_i * loss_i + ||w||^2 / (2 * C * S),
    where s_i is the weight of sample i and S their sum (the sample count without
    class weights). So C is an inverse strength, scaled by 1/S:

        multinomial (K > 2): lambda / 2 = 1 / (2 * C * S), so C = 1 / (lambda * S).
        binary (K = 2): scikit-learn fits one weight vector w, where minilearn's
            softmax has two columns W0, W1 with w = W1 - W0. The penalty is
            smallest at W1 = -W0 = w / 2, where (lambda / 2) * ||W||^2 =
            (lambda / 4) * ||w||^2, so C = 2 / (lambda * S).

    lambda = 0 gives C = inf, no penalty. minilearn also decays the biases, which
    scikit-learn never penalizes. AdamW's decoupled decay has no exact
    counterpart, so its weight_decay is converted as if it were L2.
    """
    weight_decay = float(config["optimizer"].get("weight_decay", 0.0))
    class_weight = _class_weight_option(config, labels, n_classes)
    sample_weight_sum = _sample_weight_sum(class_weight, labels)

    if weight_decay == 0:
        C = math.inf
    elif n_classes == 2:
        C = 2.0 / (weight_decay * sample_weight_sum)
    else:
        C = 1.0 / (weight_decay * sample_weight_sum)

    params = {"C": C, "max_iter": LOGISTIC_MAX_ITER}
    if class_weight is not None:
        params["class_weight"] = class_weight
    return params


def mlp_params(config, n_train):
    """Convert a config with hidden layers into MLPClassifier's arguments.

    - alpha: scikit-learn adds (alpha / 2) * ||W||^2 / B to each batch's mean
      loss, B being the batch size, so its gradient is alpha * W / B. minilearn's
      weight decay lambda adds lambda * W, so alpha = lambda * B. scikit-learn
      leaves the biases out of the penalty, and its last, shorter batch gets a
      slightly stronger one.
    - solver: "sgd" for minilearn's SGD, with the same momentum and Nesterov
      flag. scikit-learn keeps lr inside its velocity, v = mu * v - lr * g, which
      matches PyTorch's form at a constant lr. "adam" otherwise, with the same
      betas and eps.
    - n_iter_no_change = epochs, so it never stops before max_iter = epochs, as
      minilearn trains every epoch.
    """
    optimizer = config["optimizer"]
    batch_size = min(int(config["training"]["batch_size"]), int(n_train))
    params = {
        "hidden_layer_sizes": tuple(config["model"]["hidden"]),
        "activation": SKLEARN_ACTIVATIONS[config["model"]["activation"]],
        "alpha": float(optimizer.get("weight_decay", 0.0)) * batch_size,
        "batch_size": batch_size,
        "learning_rate_init": float(optimizer["lr"]),
        "max_iter": int(config["training"]["epochs"]),
        "n_iter_no_change": int(config["training"]["epochs"]),
        "shuffle": True,
        "random_state": int(config["seed"]),
    }
    if optimizer["name"] == "sgd":
        params.update(solver="sgd", momentum=float(optimizer.get("momentum", 0.0)),
                      nesterovs_momentum=bool(optimizer.get("nesterov", False)))
    else:
        beta1, beta2 = optimizer.get("betas", (0.9, 0.999))
        params.update(solver="adam", beta_1=float(beta1), beta_2=float(beta2),
                      epsilon=float(optimizer.get("eps", 1e-8)))
    return params


def score_reference(estimator, X, y, *, n_classes):
    """Return {"accuracy", "log_loss"} of a fitted classifier on X (N, D), y (N,)."""
    from sklearn.metrics import accuracy_score, log_loss

    probabilities = estimator.predict_proba(X)
    return {
        "accuracy": float(accuracy_score(y, estimator.predict(X))),
        "log_loss": float(log_loss(y, probabilities, labels=np.arange(n_classes))),
    }


def _class_weight_option(config, labels, n_classes):
    """Return LogisticRegression's class_weight for loss.weight: "balanced", a dict or None."""
    weight = config["loss"].get("weight")
    if weight is None:
        return None
    if weight == "balanced":
        return "balanced"
    from minilearn.config import class_weights

    return dict(enumerate(class_weights(weight, labels, n_classes)))


def _sample_weight_sum(class_weight, labels):
    """Return S, the sum of the per-sample weights that scikit-learn normalizes by."""
    if class_weight is None:
        return float(len(labels))
    from sklearn.utils.class_weight import compute_class_weight

    classes = np.unique(labels)
    weights = compute_class_weight(class_weight, classes=classes, y=labels)
    return float(weights[np.searchsorted(classes, labels)].sum())


def _sample_weight_option(estimator, config, labels, n_classes):
    """Pass class weights to MLPClassifier as sample weights, where its fit takes them.

    MLPClassifier has no class_weight, and its fit takes sample_weight from
    scikit-learn 1.7 on. LogisticRegression gets class_weight instead.
    """
    import inspect

    weight = config["loss"].get("weight")
    if weight is None or not config["model"]["hidden"]:
        return {}
    if "sample_weight" not in inspect.signature(estimator.fit).parameters:
        logger.warning("this scikit-learn MLPClassifier takes no sample weights, so the "
                       "reference ignores loss.weight")
        return {}
    from minilearn.config import class_weights

    per_class = np.asarray(class_weights(weight, labels, n_classes))
    return {"sample_weight": per_class[labels]}


def _is_convergence_warning(category):
    from sklearn.exceptions import ConvergenceWarning

    return issubclass(category, ConvergenceWarning)


def _iterations(estimator):
    n_iter = np.max(getattr(estimator, "n_iter_", 0))
    return int(n_iter)


def _jsonable_params(params):
    """Return params with tuples as lists and an infinite C written as "inf"."""
    jsonable = {}
    for key, value in params.items():
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, float) and math.isinf(value):
            value = "inf"
        elif isinstance(value, dict):
            value = {str(label): weight for label, weight in value.items()}
        jsonable[key] = value
    return jsonable
