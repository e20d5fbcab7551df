"""The scikit-learn estimators: the estimator checks, pipelines, searches and MLP-like attributes."""

import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import sklearn
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from minilearn.estimators import EXPECTED_FAILED_CHECKS, MLPClassifier, SoftmaxRegression

README = Path(__file__).resolve().parent.parent / "README.md"

SKLEARN_VERSION = tuple(int(part) for part in re.findall(r"\d+", sklearn.__version__)[:2])

# Small settings keep the whole check suite to about a second.
CHECKED_ESTIMATORS = [
    SoftmaxRegression(max_iter=30, learning_rate_init=0.05),
    MLPClassifier(hidden_layer_sizes=(16,), max_iter=30, learning_rate_init=0.01),
]


def quiet(function, *args, **kwargs):
    """Call ``function`` with ConvergenceWarning silenced, as short test fits raise it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return function(*args, **kwargs)


def iris(string_labels=False):
    data = load_iris()
    X = StandardScaler().fit_transform(data.data)
    y = data.target_names[data.target] if string_labels else data.target
    return X, y


if SKLEARN_VERSION >= (1, 6):
    @parametrize_with_checks(CHECKED_ESTIMATORS,
                             expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS)
    def test_sklearn_estimator_checks(estimator, check):
        quiet(check, estimator)


def test_pipeline_with_standard_scaler():
    X, y = iris()
    pipeline = Pipeline([("scale", StandardScaler()),
                         ("clf", SoftmaxRegression(learning_rate_init=0.05, random_state=0))])

    quiet(pipeline.fit, load_iris().data, y)

    assert pipeline.score(load_iris().data, y) > 0.9
    assert pipeline.predict_proba(load_iris().data).shape == (150, 3)


def test_grid_search_picks_parameters():
    X, y = iris(string_labels=True)
    search = GridSearchCV(MLPClassifier((8,), max_iter=60, random_state=0),
                          {"learning_rate_init": [1e-4, 0.05]}, cv=3)

    quiet(search.fit, X, y)

    assert search.best_params_ == {"learning_rate_init": 0.05}
    assert search.best_score_ > 0.85
    assert list(search.best_estimator_.classes_) == ["setosa", "versicolor", "virginica"]


def test_cross_val_score():
    X, y = iris()

    scores = quiet(cross_val_score, SoftmaxRegression(learning_rate_init=0.05, random_state=0),
                   X, y, cv=5)

    assert scores.shape == (5,)
    assert scores.mean() > 0.85


def test_readme_estimator_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    example = next(block for block in blocks if "minilearn.estimators" in block)
    namespace = {}

    quiet(exec, compile(example, "README estimator example", "exec"), namespace)

    assert namespace["scores"].mean() > 0.85


@pytest.mark.parametrize("estimator", [SoftmaxRegression(random_state=0, learning_rate_init=0.05),
                                       MLPClassifier((8,), random_state=0,
                                                     learning_rate_init=0.01)])
def test_string_labels_and_probability_order(estimator):
    X, y = iris()
    labels = np.array(["zeta", "alpha", "mu"])[y]

    quiet(estimator.fit, X, labels)

    assert list(estimator.classes_) == ["alpha", "mu", "zeta"]
    probabilities = estimator.predict_proba(X)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(estimator.classes_[np.argmax(probabilities, axis=1)],
                                  estimator.predict(X))
    # The column of "zeta" is the probability of the samples labelled zeta.
    zeta = list(estimator.classes_).index("zeta")
    assert probabilities[labels == "zeta", zeta].mean() > 0.8
    assert estimator.score(X, labels) > 0.9


def test_predict_log_proba_is_stable():
    X, y = iris()
    estimator = quiet(SoftmaxRegression(random_state=0).fit, X, y)
    estimator.coefs_[0][...] *= 1e4

    log_probabilities = estimator.predict_log_proba(X)

    assert np.isfinite(log_probabilities).all()
    with np.errstate(divide="ignore"):
        assert np.isinf(np.log(estimator.predict_proba(X))).any()
    np.testing.assert_allclose(np.exp(log_probabilities), estimator.predict_proba(X), atol=1e-12)


def test_constructor_stores_arguments_unchanged():
    sizes = [8, 4]
    estimator = MLPClassifier(hidden_layer_sizes=sizes, activation="tanh", solver="sgd")

    assert estimator.hidden_layer_sizes is sizes
    assert estimator.get_params()["activation"] == "tanh"
    assert estimator.set_params(max_iter=7) is estimator
    assert clone(estimator).get_params() == estimator.get_params()


def test_fit_returns_self_and_sets_attributes():
    X, y = iris()
    estimator = MLPClassifier((8, 4), max_iter=5, random_state=0)

    assert quiet(estimator.fit, X, y) is estimator
    assert estimator.n_features_in_ == 4
    assert estimator.n_iter_ == 5
    assert len(estimator.loss_curve_) == 5
    assert estimator.loss_ == estimator.loss_curve_[-1]
    assert estimator.best_loss_ == min(estimator.loss_curve_)
    assert estimator.validation_scores_ is None
    assert estimator.best_validation_score_ is None
    assert estimator.t_ == 5 * 150
    assert [coef.shape for coef in estimator.coefs_] == [(4, 8), (8, 4), (4, 3)]
    assert [bias.shape for bias in estimator.intercepts_] == [(8,), (4,), (3,)]


def test_softmax_regression_coef_shapes():
    X, y = iris()

    estimator = quiet(SoftmaxRegression(max_iter=3, random_state=0).fit, X, y)

    assert estimator.coef_.shape == (3, 4)
    assert estimator.intercept_.shape == (3,)


def test_max_iter_reached_warns():
    X, y = iris()

    with pytest.warns(ConvergenceWarning, match="ran all max_iter = 3 epochs"):
        SoftmaxRegression(max_iter=3, random_state=0).fit(X, y)


def test_tol_stops_on_training_loss():
    # No epoch beats the first by more than tol = 10, so training stops after
    # n_iter_no_change epochs without improvement.
    X, y = iris()

    estimator = SoftmaxRegression(tol=10.0, n_iter_no_change=3, random_state=0).fit(X, y)

    assert estimator.n_iter_ == 4
    assert estimator.history_.stopped_epoch == 4


def test_early_stopping_like_scikit_learn():
    X, y = iris()
    estimator = MLPClassifier((8,), early_stopping=True, validation_fraction=0.2,
                              n_iter_no_change=3, tol=0.0, max_iter=200,
                              learning_rate_init=0.05, random_state=0)

    quiet(estimator.fit, X, y)

    assert len(estimator.validation_scores_) == estimator.n_iter_ < 200
    assert estimator.best_validation_score_ == max(estimator.validation_scores_)
    assert estimator.best_loss_ is None
    assert estimator.t_ == estimator.n_iter_ * 120
    best_epoch = estimator.history_.best_epoch
    assert estimator.validation_scores_[best_epoch - 1] == estimator.best_validation_score_


def test_partial_fit_needs_classes_first():
    X, y = iris()

    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        MLPClassifier((4,)).partial_fit(X, y)


def test_partial_fit_on_batches_with_missing_classes():
    X, y = iris()
    estimator = MLPClassifier((8,), solver="adam", learning_rate_init=0.02, random_state=0)
    order = np.argsort(y, kind="stable")

    for _ in range(30):
        for rows in np.array_split(order, 3):
            estimator.partial_fit(X[rows], y[rows], classes=[0, 1, 2])

    assert list(estimator.classes_) == [0, 1, 2]
    assert estimator.n_iter_ == 1
    assert len(estimator.loss_curve_) == 90
    assert estimator.t_ == 30 * 150
    assert estimator._optimizer.state["0.weight"]["step"] == 90
    assert estimator.score(X, y) > 0.7


def test_partial_fit_rejects_unknown_labels_and_classes():
    X, y = iris()
    estimator = MLPClassifier((4,), random_state=0).partial_fit(X, y, classes=[0, 1, 2])

    with pytest.raises(ValueError, match="y contains the label 7"):
        estimator.partial_fit(X[:2], np.array([0, 7]))
    with pytest.raises(ValueError, match="differs from the classes of the first call"):
        estimator.partial_fit(X, y, classes=[0, 1])


def test_partial_fit_rejects_balanced_and_early_stopping():
    X, y = iris()

    with pytest.raises(ValueError, match="class_weight='balanced' needs the class counts"):
        MLPClassifier((4,), class_weight="balanced").partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        MLPClassifier((4,), early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])


def test_warm_start_continues_training():
    X, y = iris()
    estimator = SoftmaxRegression(max_iter=5, warm_start=True, random_state=0)

    quiet(estimator.fit, X, y)
    weights = estimator.coef_.copy()
    quiet(estimator.fit, X, y)

    assert len(estimator.loss_curve_) == 10
    assert estimator.loss_curve_[5] < estimator.loss_curve_[0]
    assert not np.array_equal(estimator.coef_, weights)


def test_cold_start_restarts_training():
    X, y = iris()
    estimator = SoftmaxRegression(max_iter=5, random_state=0)

    first = list(quiet(estimator.fit, X, y).loss_curve_)
    second = list(quiet(estimator.fit, X, y).loss_curve_)

    assert first == second


def test_warm_start_needs_same_classes():
    X, y = iris()
    estimator = quiet(SoftmaxRegression(max_iter=2, warm_start=True, random_state=0).fit, X, y)

    with pytest.raises(ValueError, match="warm_start needs y with the same classes"):
        estimator.fit(X[y < 2], y[y < 2])


def test_class_weight_shifts_predictions():
    X, y = iris()
    options = {"learning_rate_init": 0.05, "random_state": 0}
    plain = quiet(SoftmaxRegression(**options).fit, X, y)
    weighted = quiet(SoftmaxRegression(class_weight={0: 1.0, 1: 100.0, 2: 0.01},
                                       **options).fit, X, y)

    # Versicolor (1) and virginica (2) overlap, so the weights move that boundary.
    assert np.mean(weighted.predict(X) == 1) > np.mean(plain.predict(X) == 1)
    assert np.mean(weighted.predict(X[y == 1]) == 1) == 1.0


def test_balanced_class_weight_fits():
    X, y = iris()
    keep = np.r_[0:50, 50:60, 100:150]

    estimator = quiet(SoftmaxRegression(class_weight="balanced", learning_rate_init=0.05,
                                        random_state=0).fit, X[keep], y[keep])

    recall_minority = np.mean(estimator.predict(X[50:100]) == 1)
    assert recall_minority > 0.6


def test_decision_function_binary_sign_matches_predict():
    X, y = iris()
    binary = y < 2

    estimator = quiet(SoftmaxRegression(random_state=0).fit, X[binary], y[binary])

    decision = estimator.decision_function(X[binary])
    assert decision.shape == (100,)
    np.testing.assert_array_equal(estimator.classes_[(decision > 0).astype(int)],
                                  estimator.predict(X[binary]))


def test_random_state_seeds_and_generators():
    X, y = iris()

    first = quiet(MLPClassifier((4,), max_iter=3, random_state=5).fit, X, y).loss_curve_
    second = quiet(MLPClassifier((4,), max_iter=3, random_state=5).fit, X, y).loss_curve_
    generator = quiet(MLPClassifier((4,), max_iter=3,
                                    random_state=np.random.default_rng(5)).fit, X, y)

    assert first == second
    assert len(generator.loss_curve_) == 3
    with pytest.raises(TypeError, match="random_state must be None, an integer seed or a "
                                        "numpy.random.Generator, got RandomState"):
        MLPClassifier((4,), random_state=np.random.RandomState(0)).fit(X, y)


def test_pickle_round_trip():
    X, y = iris(string_labels=True)
    estimator = quiet(MLPClassifier((8,), max_iter=5, random_state=0).fit, X, y)

    restored = pickle.loads(pickle.dumps(estimator))

    np.testing.assert_array_equal(restored.predict(X), estimator.predict(X))
    np.testing.assert_array_equal(restored.predict_proba(X), estimator.predict_proba(X))


def test_pickle_sgd_then_partial_fit():
    # The SGD optimizer kept for partial_fit keeps BLAS bindings, which pickle must skip.
    X, y = iris(string_labels=True)
    estimator = quiet(MLPClassifier((8,), solver="sgd", max_iter=5, random_state=0).fit, X, y)
    estimator.partial_fit(X, y)

    restored = pickle.loads(pickle.dumps(estimator))
    estimator.partial_fit(X, y)
    restored.partial_fit(X, y)

    np.testing.assert_array_equal(restored.predict_proba(X), estimator.predict_proba(X))


@pytest.mark.parametrize("params, error, match", [
    ({"solver": "lbfgs"}, ValueError, "solver must be one of 'sgd', 'adam', 'adamw'"),
    ({"learning_rate_init": 0}, ValueError, "learning_rate_init must be > 0.0, got 0"),
    ({"momentum": 1.5}, ValueError, "momentum must be >= 0.0 and < 1.0"),
    ({"beta_2": 1.0}, ValueError, "beta_2 must be >= 0.0 and < 1.0"),
    ({"weight_decay": -1.0}, ValueError, "weight_decay must be >= 0.0"),
    ({"max_iter": 0}, ValueError, "max_iter must be >= 1"),
    ({"batch_size": "all"}, TypeError, "batch_size must be an integer"),
    ({"validation_fraction": 1.0}, ValueError, "validation_fraction must be > 0.0 and < 1.0"),
    ({"max_grad_norm": -1.0}, ValueError, "max_grad_norm must be > 0.0"),
    ({"class_weight": [1.0, 2.0]}, TypeError, "class_weight must be None, 'balanced' or a dict"),
    ({"class_weight": {0: -1.0}}, ValueError, r"class_weight\[0\] = -1.0 must be"),
    ({"class_weight": {9: 1.0}}, ValueError, "class_weight has the label 9"),
    ({"hidden_layer_sizes": (8, 0)}, ValueError, "hidden_layer_sizes must hold positive"),
    ({"hidden_layer_sizes": "8"}, ValueError, "hidden_layer_sizes must hold positive"),
    ({"activation": "softplus"}, ValueError, "activation must be one of"),
    ({"early_stopping": "yes"}, TypeError, "early_stopping must be True or False"),
    ({"random_state": -1}, ValueError, "random_state must be a non-negative integer seed"),
])
def test_bad_parameters_raise_at_fit(params, error, match):
    X, y = iris()
    estimator = MLPClassifier(**{"hidden_layer_sizes": (4,), "max_iter": 2, **params})

    with pytest.raises(error, match=match):
        estimator.fit(X, y)


def test_single_class_raises():
    X, _ = iris()

    with pytest.raises(ValueError, match="y contains only one class"):
        SoftmaxRegression().fit(X, np.zeros(150))
