"""Classification datasets: loading, stratified splits and standardization.

Datasets come from scikit-learn, either bundled with it (no download) or made by
its generators. Every dataset is returned with features X of shape (N, D) as
float64 and labels y of shape (N,) as int64 with values 0..K-1.

scikit-learn is imported inside the functions that use it, so that
``import minilearn`` stays fast.
"""

import logging
import math
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np

from minilearn.validation import check_dtype, check_features

logger = logging.getLogger(__name__)

# scikit-learn passes seeds to numpy.random.RandomState, which takes 0 <= seed < 2**32.
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class DatasetSpec:
    """Description of one dataset: its scikit-learn function and option defaults.

    ``options`` maps each option name to its default value. The option names are
    the keyword arguments of the scikit-learn function. Bundled datasets take none.
    """

    function: str
    options: dict
    description: str


DATASETS = {
    "iris": DatasetSpec("load_iris", {}, "150 iris flowers, 4 features, 3 species"),
    "wine": DatasetSpec("load_wine", {}, "178 wines, 13 chemical features, 3 cultivars"),
    "breast_cancer": DatasetSpec(
        "load_breast_cancer", {}, "569 tumours, 30 features, malignant or benign"
    ),
    "digits": DatasetSpec("load_digits", {}, "1797 8x8 images of handwritten digits, 10 classes"),
    "moons": DatasetSpec(
        "make_moons",
        {"n_samples": 500, "noise": 0.2},
        "two interleaving half circles in 2-D, 2 classes",
    ),
    "circles": DatasetSpec(
        "make_circles",
        {"n_samples": 500, "noise": 0.1, "factor": 0.5},
        "a small circle inside a large one in 2-D, 2 classes",
    ),
    "blobs": DatasetSpec(
        "make_blobs",
        {"n_samples": 500, "centers": 3, "n_features": 2, "cluster_std": 1.0},
        "isotropic Gaussian clusters, one class per center",
    ),
    "classification": DatasetSpec(
        "make_classification",
        {
            "n_samples": 1000,
            "n_features": 20,
            "n_informative": 10,
            "n_redundant": 5,
            "n_classes": 3,
            "n_clusters_per_class": 2,
            "class_sep": 1.0,
            "flip_y": 0.01,
        },
        "Gaussian clusters on the vertices of a hypercube, with redundant features",
    ),
}

# Smallest valid value of each integer option. The upper bounds of the
# classification options depend on each other and are checked separately.
_INTEGER_MINIMUMS = {
    "n_samples": 2,
    "centers": 2,
    "n_features": 1,
    "n_informative": 1,
    "n_redundant": 0,
    "n_classes": 2,
    "n_clusters_per_class": 1,
}

# Valid range (low, high, high_inclusive) of each float option, low inclusive.
_FLOAT_RANGES = {
    "noise": (0.0, math.inf, False),
    "factor": (0.0, 1.0, False),
    "cluster_std": (0.0, math.inf, False),
    "class_sep": (0.0, math.inf, False),
    "flip_y": (0.0, 1.0, True),
}


@dataclass
class Dataset:
    """A labelled dataset.

    X: features, float64 of shape (N, D).
    y: labels, int64 of shape (N,) with values 0..K-1.
    class_names: the K class names, ``class_names[k]`` for label k.
    name: the dataset's name in ``DATASETS``.
    """

    X: np.ndarray
    y: np.ndarray
    class_names: list
    name: str

    @property
    def n_classes(self):
        return len(self.class_names)

    @property
    def n_features(self):
        return self.X.shape[1]


@dataclass
class Splits:
    """Training, validation and test parts of a dataset.

    Each part is a tuple (X, y) with X of shape (n, D) and y int64 of shape (n,),
    or None when its fraction was 0. ``standardizer`` is the ``Standardizer``
    fitted on the training part, or None when the features were not standardized.
    """

    train: tuple
    val: tuple | None
    test: tuple | None
    n_classes: int
    n_features: int
    class_names: list = field(default_factory=list)
    standardizer: "Standardizer | None" = None


def dataset_names():
    """Return the names of all datasets, in the order of ``DATASETS``."""
    return list(DATASETS)


def dataset_options(name):
    """Return a new dict of option name -> default value for dataset ``name``."""
    return dict(_find_spec(name).options)


def load_dataset(name, *, seed=0, **options):
    """Load dataset ``name`` as a ``Dataset``.

    Generated datasets use ``seed`` as scikit-learn's ``random_state`` and take the
    options listed by ``dataset_options(name)``; options left out keep their
    defaults. Bundled datasets ignore ``seed`` and take no options.

    Raises ValueError for an unknown name or option, or an option value out of
    range, and TypeError for an option or seed of the wrong type.
    """
    spec = _find_spec(name)
    seed = check_seed(seed)
    values = _resolve_options(name, spec, options)

    if spec.options:
        X, y = _generate(spec, values, seed)
        class_names = [str(k) for k in range(_generated_class_count(values))]
    else:
        X, y, class_names = _load_bundled(spec)

    X = np.ascontiguousarray(X, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.int64)
    _check_all_classes_present(name, y, len(class_names))
    logger.debug("loaded dataset %s: X %s, %d classes", name, X.shape, len(class_names))
    return Dataset(X=X, y=y, class_names=class_names, name=name)


def check_seed(seed, name="seed"):
    """Return ``seed`` as an int, or raise unless it is an integer in [0, 2**32 - 1]."""
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise TypeError(
            f"{name}={seed!r} is not an integer; pass a whole number such as {name}=0"
        )
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(
            f"{name}={seed} is out of range; scikit-learn takes seeds in [0, {MAX_SEED}]"
        )
    return int(seed)


def _find_spec(name):
    if name not in DATASETS:
        raise ValueError(
            f"unknown dataset {name!r}; valid names are: {', '.join(DATASETS)}"
        )
    return DATASETS[name]


def _resolve_options(name, spec, options):
    """Return the spec's defaults updated with ``options``, after checking each value."""
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        if spec.options:
            valid = f"valid options are: {', '.join(spec.options)}"
        else:
            valid = "it is bundled with scikit-learn and takes no options"
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for dataset {name!r}; {valid}")

    values = dict(spec.options)
    for option, value in options.items():
        values[option] = _check_option(name, option, value)

    if spec.function == "make_classification":
        _check_classification_options(values)
    return values


def _check_option(dataset, option, value):
    """Return ``value`` as int or float after checking its type and range."""
    where = f"{option}={value!r} for dataset {dataset!r}"

    if option in _INTEGER_MINIMUMS:
        if isinstance(value, bool) or not isinstance(value, Integral):
            raise TypeError(f"{where} is not an integer; use a whole number such as 500")
        minimum = _INTEGER_MINIMUMS[option]
        if value < minimum:
            raise ValueError(f"{where} is invalid; {option} must be at least {minimum}")
        return int(value)

    low, high, high_inclusive = _FLOAT_RANGES[option]
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{where} is not a number; use a float such as 0.2")
    value = float(value)
    above = value > high if high_inclusive else value >= high
    if not math.isfinite(value) or value < low or above:
        closing = "]" if high_inclusive else ")"
        raise ValueError(f"{where} is invalid; {option} must be in [{low}, {high}{closing}")
    return value


def _check_classification_options(values):
    """Check the options of make_classification that constrain each other."""
    informative = values["n_informative"]
    redundant = values["n_redundant"]
    features = values["n_features"]
    if informative + redundant > features:
        raise ValueError(
            f"n_informative={informative} plus n_redundant={redundant} exceeds "
            f"n_features={features} for dataset 'classification'; raise n_features "
            f"or lower the other two"
        )

    clusters = values["n_classes"] * values["n_clusters_per_class"]
    if clusters > 2**informative:
        raise ValueError(
            f"n_classes * n_clusters_per_class = {clusters} exceeds 2**n_informative = "
            f"{2**informative} for dataset 'classification', because each cluster takes "
            f"one vertex of an n_informative-dimensional hypercube; raise n_informative"
        )


def _generated_class_count(values):
    """Return the number of classes that a generator makes: moons and circles make 2."""
    return values.get("centers", values.get("n_classes", 2))


def _generate(spec, values, seed):
    import sklearn.datasets

    clusters = _generated_class_count(values) * values.get("n_clusters_per_class", 1)
    if values["n_samples"] < clusters:
        raise ValueError(
            f"n_samples={values['n_samples']} is too small for {clusters} clusters; "
            f"set n_samples to at least {clusters} so that every cluster gets a sample"
        )

    generator = getattr(sklearn.datasets, spec.function)
    return generator(**values, random_state=seed)


def _load_bundled(spec):
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, spec.function)()
    class_names = [str(name) for name in bunch.target_names]
    return bunch.data, bunch.target, class_names


def _check_all_classes_present(name, y, n_classes):
    """Raise if a class has no sample, which flip_y can cause in small generated sets."""
    counts = np.bincount(y, minlength=n_classes)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise ValueError(
            f"dataset {name!r} came out with no sample of class(es) "
            f"{', '.join(str(k) for k in empty)}; raise n_samples, lower flip_y or "
            f"try another seed"
        )


def split_dataset(X, y, *, val_fraction, test_fraction, seed):
    """Split X (N, D) and y (N,) into stratified training, validation and test parts.

    Both fractions are fractions of the whole dataset. The test part takes
    ceil(test_fraction * N) samples and is split off first. The validation part then
    takes ceil(val_fraction * N) samples from the rest, and the training part keeps
    what remains. Each split keeps the class proportions of y as closely as whole
    samples allow. A part whose fraction is 0 is None. ``seed`` (an int) fixes
    both splits, and the parts come out shuffled.

    y must contain class indices 0..K-1. ``Splits.n_classes`` is max(y) + 1, and
    ``Splits.class_names`` is empty because plain arrays carry no names.

    Raises ValueError when a fraction is outside [0, 1) or the fractions sum to 1
    or more. It also raises when a part would have fewer samples than there are
    classes, or a class has too few samples to appear on both sides of a split.
    """
    X = check_features(X)
    y = _check_labels(y, len(X))
    seed = check_seed(seed)
    _check_fraction("val_fraction", val_fraction)
    _check_fraction("test_fraction", test_fraction)

    n_samples = len(y)
    n_test = math.ceil(test_fraction * n_samples)
    n_val = math.ceil(val_fraction * n_samples)
    _check_split_sizes(y, n_test, n_val, val_fraction, test_fraction)

    indices = np.arange(n_samples)
    train_index, test_index = _stratified_split(indices, y, n_test, seed, "test")
    train_index, val_index = _stratified_split(train_index, y, n_val, seed, "validation")

    def part(index):
        return None if index is None else (X[index], y[index])

    return Splits(
        train=part(train_index),
        val=part(val_index),
        test=part(test_index),
        n_classes=int(y.max()) + 1,
        n_features=X.shape[1],
    )


def _check_labels(y, n_samples):
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n_samples:
        raise ValueError(
            f"y must have shape ({n_samples},) to match X, got shape {y.shape}; "
            f"pass one class index per row of X"
        )
    if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"y must contain integer class indices, got dtype {y.dtype}")
    if y.min() < 0:
        raise ValueError(
            f"y contains the negative label {int(y.min())}; class indices must be 0..K-1"
        )
    return y.astype(np.int64, copy=False)


def _check_fraction(name, value):
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name}={value!r} is not a number; use a float such as 0.2")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name}={value!r} is invalid; it must be in [0, 1), e.g. 0.2")


def _check_split_sizes(y, n_test, n_val, val_fraction, test_fraction):
    """Raise unless every part can hold at least one sample of each class."""
    n_samples = len(y)
    labels, counts = np.unique(y, return_counts=True)
    n_classes = len(labels)
    fractions = f"val_fraction={val_fraction} and test_fraction={test_fraction}"

    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"{fractions} sum to {val_fraction + test_fraction:g}, which leaves no "
            f"training data; lower them so that their sum is below 1"
        )

    n_train = n_samples - n_test - n_val
    if n_train < n_classes:
        raise ValueError(
            f"{fractions} leave {n_train} training sample(s) of {n_samples} for "
            f"{n_classes} classes, fewer than one per class; lower the fractions"
        )

    for part, size, option in (("test", n_test, "test_fraction"), ("validation", n_val, "val_fraction")):
        if 0 < size < n_classes:
            raise ValueError(
                f"{option} gives a {part} part of {size} sample(s) of {n_samples}, but a "
                f"stratified split needs at least one per class ({n_classes}); raise "
                f"{option} to at least {n_classes / n_samples:.3g} or set it to 0"
            )

    if n_test + n_val > 0 and counts.min() < 2:
        rare = labels[counts < 2]
        raise ValueError(
            f"class(es) {', '.join(str(k) for k in rare)} have a single sample, too few "
            f"to stratify because a stratified split needs at least 2 per class; add "
            f"samples, drop those classes or set val_fraction and test_fraction to 0"
        )


def _stratified_split(indices, y, n_held_out, seed, part):
    """Split ``indices`` into (kept, held_out) with ``n_held_out`` stratified samples.

    Returns (indices, None) unchanged when ``n_held_out`` is 0.
    """
    if n_held_out == 0:
        return indices, None

    from sklearn.model_selection import train_test_split

    labels = y[indices]
    try:
        return train_test_split(
            indices, test_size=n_held_out, stratify=labels, random_state=seed
        )
    except ValueError as error:
        raise ValueError(_describe_failed_split(labels, n_held_out, part, error)) from error


def _describe_failed_split(labels, n_held_out, part, error):
    """Return an error message for a stratified split that scikit-learn rejected."""
    classes, counts = np.unique(labels, return_counts=True)
    sizes = ", ".join(f"{k}: {c}" for k, c in zip(classes, counts))
    source = "the whole dataset" if part == "test" else "the samples left after the test split"
    rare = classes[counts < 2]
    if rare.size:
        cause = (
            f"class(es) {', '.join(str(k) for k in rare)} have a single sample there, "
            f"and stratifying needs at least 2 per class"
        )
    else:
        cause = f"scikit-learn rejected it: {error}"
    return (
        f"cannot split a stratified {part} part of {n_held_out} samples off {source} "
        f"({len(labels)} samples, class sizes {{{sizes}}}) because {cause}; add samples "
        f"of the small classes or lower val_fraction and test_fraction"
    )


class Standardizer:
    """Per-feature standardization z = (x - mean_) / scale_.

    ``fit`` computes ``mean_`` and ``scale_`` (the population standard deviation),
    both float64 of shape (D,), from the data it is given. Fit it on the training
    part only, so that no statistic of the validation or test data leaks into
    training. A feature whose values are all equal gets ``scale_`` 1 instead of 0,
    so it maps to 0 instead of dividing by zero.
    """

    def __init__(self):
        self.mean_ = None
        self.scale_ = None

    def fit(self, X):
        """Compute ``mean_`` and ``scale_`` from X of shape (N, D) and return self."""
        X = check_features(X).astype(np.float64, copy=False)

        # The computed mean of equal values can be off by a rounding error, so a
        # constant feature takes its value as the mean and maps exactly to 0.
        constant = X.max(axis=0) == X.min(axis=0)
        self.mean_ = np.where(constant, X[0], X.mean(axis=0))
        self.scale_ = np.where(constant, 1.0, X.std(axis=0))
        return self

    def transform(self, X):
        """Return X (N, D) standardized, as float32 for float32 input, else float64."""
        if self.mean_ is None:
            raise RuntimeError("this Standardizer is not fitted; call fit(X_train) first")
        X = check_features(X)
        if X.shape[1] != self.mean_.shape[0]:
            raise ValueError(
                f"X has {X.shape[1]} features but the Standardizer was fitted on "
                f"{self.mean_.shape[0]}; pass data with the same features as in fit"
            )

        dtype = X.dtype if X.dtype == np.float32 else np.float64
        return ((X - self.mean_) / self.scale_).astype(dtype, copy=False)

    def fit_transform(self, X):
        """Fit on X (N, D) and return X standardized."""
        return self.fit(X).transform(X)


def prepare_splits(name, options, *, val_fraction, test_fraction, standardize, seed,
                   dtype):
    """Load dataset ``name``, split it and return the parts as ``Splits``.

    ``options`` (a dict or None) goes to ``load_dataset`` and ``seed`` fixes both
    the generated data and the split. With ``standardize`` True, a
    ``Standardizer`` is fitted on the training part only and applied to all parts.
    X of every part is cast to ``dtype`` (float32 or float64), and y stays int64.
    """
    dtype = check_dtype(dtype)
    dataset = load_dataset(name, seed=seed, **(options or {}))

    splits = split_dataset(
        dataset.X, dataset.y, val_fraction=val_fraction, test_fraction=test_fraction,
        seed=seed,
    )

    standardizer = None
    if standardize:
        standardizer = Standardizer().fit(splits.train[0])

    def finish(part):
        if part is None:
            return None
        X, y = part
        if standardizer is not None:
            X = standardizer.transform(X)
        return np.ascontiguousarray(X, dtype=dtype), y

    return Splits(
        train=finish(splits.train),
        val=finish(splits.val),
        test=finish(splits.test),
        n_classes=dataset.n_classes,
        n_features=dataset.n_features,
        class_names=list(dataset.class_names),
        standardizer=standardizer,
    )
