import numpy as np
import pytest

from minilearn.data import (
    DATASETS,
    Standardizer,
    dataset_names,
    dataset_options,
    load_dataset,
    prepare_splits,
    split_dataset,
)


@pytest.mark.parametrize(
    "name, shape, n_classes",
    [
        ("iris", (150, 4), 3),
        ("wine", (178, 13), 3),
        ("breast_cancer", (569, 30), 2),
        ("digits", (1797, 64), 10),
        ("moons", (500, 2), 2),
        ("circles", (500, 2), 2),
        ("blobs", (500, 2), 3),
        ("classification", (1000, 20), 3),
    ],
)
def test_dataset_shapes_and_classes(name, shape, n_classes):
    dataset = load_dataset(name)

    assert dataset.name == name
    assert dataset.X.shape == shape
    assert dataset.X.dtype == np.float64
    assert dataset.y.shape == (shape[0],)
    assert dataset.y.dtype == np.int64
    assert dataset.n_classes == n_classes
    assert len(dataset.class_names) == n_classes
    assert all(isinstance(class_name, str) for class_name in dataset.class_names)
    assert set(np.unique(dataset.y)) == set(range(n_classes))


def test_bundled_class_names():
    assert load_dataset("iris").class_names == ["setosa", "versicolor", "virginica"]
    assert load_dataset("digits").class_names == [str(k) for k in range(10)]


def test_dataset_names_and_options():
    assert dataset_names() == ["iris", "wine", "breast_cancer", "digits", "moons",
                               "circles", "blobs", "classification"]
    assert dataset_options("moons") == {"n_samples": 500, "noise": 0.2}
    assert dataset_options("iris") == {}
    assert set(dataset_options("circles")) == {"n_samples", "noise", "factor"}
    assert set(dataset_options("blobs")) == {"n_samples", "centers", "n_features", "cluster_std"}
    assert set(dataset_options("classification")) == {
        "n_samples", "n_features", "n_informative", "n_redundant", "n_classes",
        "n_clusters_per_class", "class_sep", "flip_y",
    }


def test_dataset_options_returns_copy():
    options = dataset_options("moons")
    options["n_samples"] = 3

    assert DATASETS["moons"].options["n_samples"] == 500


def test_generator_options_applied():
    moons = load_dataset("moons", n_samples=100, noise=0.0)
    blobs = load_dataset("blobs", n_samples=60, centers=4, n_features=5, cluster_std=0.5)
    classification = load_dataset("classification", n_samples=200, n_features=6,
                                  n_informative=3, n_redundant=1, n_classes=4,
                                  n_clusters_per_class=1)

    assert moons.X.shape == (100, 2)
    assert blobs.X.shape == (60, 5)
    assert blobs.n_classes == 4
    assert classification.X.shape == (200, 6)
    assert classification.n_classes == 4


def test_generator_accepts_numpy_integers():
    dataset = load_dataset("moons", n_samples=np.int64(50), noise=np.float32(0.1))

    assert dataset.X.shape == (50, 2)


def test_generator_seed_is_deterministic():
    first = load_dataset("moons", seed=3)
    again = load_dataset("moons", seed=3)
    other = load_dataset("moons", seed=4)

    np.testing.assert_array_equal(first.X, again.X)
    np.testing.assert_array_equal(first.y, again.y)
    assert not np.array_equal(first.X, other.X)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'.*iris, wine.*classification"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        dataset_options("mnist")


def test_unknown_option_lists_valid_options():
    with pytest.raises(ValueError, match=r"unknown option\(s\) nosie.*'moons'.*n_samples, noise"):
        load_dataset("moons", nosie=0.1)


def test_bundled_dataset_rejects_options():
    with pytest.raises(ValueError, match=r"n_samples.*'iris'.*takes no options"):
        load_dataset("iris", n_samples=10)


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("moons", {"n_samples": 1}, r"n_samples=1 .*at least 2"),
        ("moons", {"noise": -0.1}, r"noise=-0.1 .*\[0.0, inf\)"),
        ("moons", {"noise": float("nan")}, r"noise=nan"),
        ("circles", {"factor": 1.0}, r"factor=1.0 .*\[0.0, 1.0\)"),
        ("blobs", {"centers": 1}, r"centers=1 .*at least 2"),
        ("blobs", {"cluster_std": -1.0}, r"cluster_std=-1.0"),
        ("blobs", {"n_samples": 2, "centers": 3}, r"n_samples=2 is too small for 3 clusters"),
        ("classification", {"flip_y": 1.5}, r"flip_y=1.5 .*\[0.0, 1.0\]"),
        ("classification", {"n_features": 4}, r"n_informative=10 plus n_redundant=5 exceeds "
                                              r"n_features=4"),
        ("classification", {"n_informative": 2, "n_redundant": 0, "n_classes": 3},
         r"n_classes \* n_clusters_per_class = 6 exceeds 2\*\*n_informative = 4"),
    ],
)
def test_invalid_option_value(name, options, message):
    with pytest.raises(ValueError, match=message):
        load_dataset(name, **options)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"n_samples": 100.0}, r"n_samples=100.0 .*not an integer"),
        ({"n_samples": True}, r"n_samples=True .*not an integer"),
        ({"noise": "0.1"}, r"noise='0.1' .*not a number"),
    ],
)
def test_option_of_wrong_type(options, message):
    with pytest.raises(TypeError, match=message):
        load_dataset("moons", **options)


@pytest.mark.parametrize("seed", [None, 1.5, "0", np.random.default_rng(0)])
def test_seed_of_wrong_type(seed):
    with pytest.raises(TypeError, match="seed=.*not an integer"):
        load_dataset("moons", seed=seed)


def test_seed_out_of_range():
    with pytest.raises(ValueError, match=r"seed=-1 is out of range.*\[0, 4294967295\]"):
        load_dataset("moons", seed=-1)


def _labelled_rows(counts):
    """Return X whose first column is the row index, and y with counts[k] rows of class k."""
    y = np.repeat(np.arange(len(counts)), counts)
    X = np.column_stack([np.arange(len(y)), np.linspace(-1.0, 1.0, len(y))])
    return X, y


def test_split_sizes_are_fractions_of_whole():
    X, y = _labelled_rows([40, 40, 40])

    splits = split_dataset(X, y, val_fraction=0.15, test_fraction=0.25, seed=0)

    assert len(splits.test[1]) == 30
    assert len(splits.val[1]) == 18
    assert len(splits.train[1]) == 72
    assert splits.n_classes == 3
    assert splits.n_features == 2


def test_split_is_stratified():
    X, y = _labelled_rows([100, 60, 20])
    proportions = np.bincount(y) / len(y)

    splits = split_dataset(X, y, val_fraction=0.2, test_fraction=0.2, seed=1)

    for part in (splits.train, splits.val, splits.test):
        counts = np.bincount(part[1], minlength=3)
        expected = proportions * len(part[1])
        assert np.all(np.abs(counts - expected) <= 1), (counts, expected)


def test_split_is_disjoint_and_complete():
    X, y = _labelled_rows([30, 50, 20])

    splits = split_dataset(X, y, val_fraction=0.2, test_fraction=0.1, seed=0)
    rows = [part[0][:, 0].astype(int) for part in (splits.train, splits.val, splits.test)]
    all_rows = np.concatenate(rows)

    assert len(all_rows) == len(y)
    assert len(np.unique(all_rows)) == len(y)
    for part, part_rows in zip((splits.train, splits.val, splits.test), rows):
        np.testing.assert_array_equal(part[1], y[part_rows])


def test_split_deterministic_for_seed():
    X, y = _labelled_rows([30, 30, 30])

    first = split_dataset(X, y, val_fraction=0.2, test_fraction=0.2, seed=5)
    again = split_dataset(X, y, val_fraction=0.2, test_fraction=0.2, seed=5)
    other = split_dataset(X, y, val_fraction=0.2, test_fraction=0.2, seed=6)

    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(first, name)[0], getattr(again, name)[0])
    assert not np.array_equal(first.test[0], other.test[0])
    assert not np.array_equal(first.val[0], other.val[0])


def test_split_zero_fraction_gives_none():
    X, y = _labelled_rows([10, 10])

    no_val = split_dataset(X, y, val_fraction=0.0, test_fraction=0.2, seed=0)
    no_held_out = split_dataset(X, y, val_fraction=0, test_fraction=0, seed=0)

    assert no_val.val is None
    assert len(no_val.test[1]) == 4
    assert len(no_val.train[1]) == 16
    assert no_held_out.val is None
    assert no_held_out.test is None
    np.testing.assert_array_equal(no_held_out.train[0], X)


@pytest.mark.parametrize(
    "val_fraction, test_fraction, message",
    [
        (-0.1, 0.2, r"val_fraction=-0.1 is invalid.*\[0, 1\)"),
        (0.2, 1.0, r"test_fraction=1.0 is invalid.*\[0, 1\)"),
        (0.2, float("nan"), r"test_fraction=nan is invalid"),
        (0.5, 0.5, r"val_fraction=0.5 and test_fraction=0.5 sum to 1.*below 1"),
        (0.6, 0.6, r"sum to 1.2"),
        (0.48, 0.48, r"leave 2 training sample\(s\) of 60 for 3 classes.*lower the fractions"),
    ],
)
def test_split_rejects_bad_fractions(val_fraction, test_fraction, message):
    X, y = _labelled_rows([20, 20, 20])

    with pytest.raises(ValueError, match=message):
        split_dataset(X, y, val_fraction=val_fraction, test_fraction=test_fraction, seed=0)


def test_split_rejects_fraction_of_wrong_type():
    X, y = _labelled_rows([20, 20])

    with pytest.raises(TypeError, match="val_fraction='0.2' is not a number"):
        split_dataset(X, y, val_fraction="0.2", test_fraction=0.2, seed=0)


def test_split_rejects_part_smaller_than_class_count():
    X, y = _labelled_rows([20, 20, 20])

    with pytest.raises(ValueError, match=r"test part of 1 sample\(s\) of 60.*at least 0.05"):
        split_dataset(X, y, val_fraction=0.2, test_fraction=0.01, seed=0)


def test_split_rejects_single_sample_class():
    X, y = _labelled_rows([1, 20, 20])

    with pytest.raises(ValueError, match=r"class\(es\) 0 have a single sample.*at least 2"):
        split_dataset(X, y, val_fraction=0.2, test_fraction=0.2, seed=0)


def test_split_without_held_out_allows_single_sample_class():
    X, y = _labelled_rows([1, 20, 20])

    splits = split_dataset(X, y, val_fraction=0, test_fraction=0, seed=0)

    assert len(splits.train[1]) == 41


def test_split_explains_class_too_small_for_second_split():
    X, y = _labelled_rows([2, 10, 10])

    with pytest.raises(ValueError) as raised:
        split_dataset(X, y, val_fraction=0.2, test_fraction=0.2, seed=0)
    message = str(raised.value)

    assert "stratified validation part of 5 samples" in message
    assert "class sizes {0: 1, 1: 8, 2: 8}" in message
    assert "class(es) 0 have a single sample there" in message


def test_split_rejects_bad_labels():
    X, y = _labelled_rows([10, 10])

    with pytest.raises(ValueError, match=r"y must have shape \(20,\)"):
        split_dataset(X, y[:-1], val_fraction=0.2, test_fraction=0.2, seed=0)
    with pytest.raises(TypeError, match="integer class indices, got dtype float64"):
        split_dataset(X, y.astype(float), val_fraction=0.2, test_fraction=0.2, seed=0)
    with pytest.raises(ValueError, match="negative label -1"):
        split_dataset(X, y - 1, val_fraction=0.2, test_fraction=0.2, seed=0)


def test_standardizer_uses_fit_statistics():
    rng = np.random.default_rng(0)
    train = rng.normal(5.0, 3.0, size=(200, 3))
    other = rng.normal(8.0, 3.0, size=(50, 3))

    standardizer = Standardizer().fit(train)
    train_z = standardizer.transform(train)
    other_z = standardizer.transform(other)

    np.testing.assert_allclose(train_z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(train_z.std(axis=0), 1.0, atol=1e-12)
    np.testing.assert_allclose(standardizer.mean_, train.mean(axis=0))
    np.testing.assert_allclose(standardizer.scale_, train.std(axis=0))
    np.testing.assert_allclose(other_z, (other - train.mean(axis=0)) / train.std(axis=0))
    assert np.all(other_z.mean(axis=0) > 0.5)


def test_standardizer_constant_feature():
    X = np.column_stack([np.full(10, 0.1), np.arange(10.0)])

    Z = Standardizer().fit_transform(X)

    assert np.all(np.isfinite(Z))
    np.testing.assert_array_equal(Z[:, 0], 0.0)


def test_standardizer_keeps_float32():
    X = np.arange(12, dtype=np.float32).reshape(6, 2)

    Z = Standardizer().fit_transform(X)

    assert Z.dtype == np.float32
    assert Standardizer().fit_transform(X.astype(int)).dtype == np.float64


def test_standardizer_errors():
    with pytest.raises(RuntimeError, match="not fitted; call fit"):
        Standardizer().transform(np.ones((2, 2)))

    standardizer = Standardizer().fit(np.ones((3, 2)))

    with pytest.raises(ValueError, match="X has 3 features but the Standardizer was fitted on 2"):
        standardizer.transform(np.ones((3, 3)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        Standardizer().fit(np.array([[1.0], [np.nan]]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, "float32"])
def test_prepare_splits_dtype(dtype):
    splits = prepare_splits("iris", None, val_fraction=0.2, test_fraction=0.2,
                            standardize=True, seed=0, dtype=dtype)

    for part in (splits.train, splits.val, splits.test):
        assert part[0].dtype == np.dtype(dtype)
        assert part[1].dtype == np.int64
    assert splits.n_classes == 3
    assert splits.n_features == 4
    assert splits.class_names == ["setosa", "versicolor", "virginica"]


def test_prepare_splits_standardizes_with_train_statistics():
    dataset = load_dataset("wine")
    raw = split_dataset(dataset.X, dataset.y, val_fraction=0.2, test_fraction=0.2, seed=3)

    splits = prepare_splits("wine", {}, val_fraction=0.2, test_fraction=0.2,
                            standardize=True, seed=3, dtype=np.float64)
    train_mean = raw.train[0].mean(axis=0)
    train_std = raw.train[0].std(axis=0)

    np.testing.assert_allclose(splits.standardizer.mean_, train_mean)
    np.testing.assert_allclose(splits.train[0].mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(splits.train[0].std(axis=0), 1.0, atol=1e-10)
    np.testing.assert_allclose(splits.val[0], (raw.val[0] - train_mean) / train_std)
    np.testing.assert_allclose(splits.test[0], (raw.test[0] - train_mean) / train_std)
    assert np.abs(splits.test[0].mean(axis=0)).max() > 1e-3


def test_prepare_splits_without_standardizing():
    dataset = load_dataset("moons", n_samples=100, seed=2)

    splits = prepare_splits("moons", {"n_samples": 100}, val_fraction=0.0, test_fraction=0.3,
                            standardize=False, seed=2, dtype="float64")

    assert splits.standardizer is None
    assert splits.val is None
    assert len(splits.train[1]) == 70
    rows = {tuple(row) for row in dataset.X}
    assert all(tuple(row) in rows for row in splits.test[0])


def test_prepare_splits_rejects_bad_dtype():
    with pytest.raises(TypeError, match="float16 is not supported"):
        prepare_splits("iris", None, val_fraction=0.2, test_fraction=0.2,
                       standardize=True, seed=0, dtype=np.float16)
