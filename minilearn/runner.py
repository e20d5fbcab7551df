"""One run from a resolved config: data, model, loss and optimizer built, trained and written out."""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minilearn import layers
from minilearn.config import ConfigError, build_from_config, make_loss_from_config, to_toml
from minilearn.config_checks import constructor_options
from minilearn.layer_tables import OUTPUT_WIDTH_OPTION, WIDTH_OPTIONS, layer_arguments
from minilearn.losses import CrossEntropy, NLLLoss
from minilearn.model import Sequential
from minilearn.plugins import load_plugins
from minilearn.rundir import RunDirectory, command_line, open_run_directory
from minilearn.training import evaluate, fit

logger = logging.getLogger(__name__)

ACTIVATION_LAYERS = {
    "relu": layers.ReLU,
    "tanh": layers.Tanh,
    "sigmoid": layers.Sigmoid,
    "identity": layers.Identity,
}

OUTPUT_LAYERS = {"logits": None, "softmax": layers.Softmax, "log_softmax": layers.LogSoftmax}


@dataclass
class RunResult:
    """Outcome of a run: its directory, status, message, test metrics and history."""

    path: Path
    status: str
    message: str
    test: dict | None
    history: object
    reference: dict | None = None


def seed_streams(seed):
    """Derive independent generators for the initial weights and the shuffle from one seed.

    The split uses ``seed`` itself (scikit-learn takes an integer), and the two
    generators come from ``numpy.random.SeedSequence(seed).spawn(2)``.
    """
    init_sequence, shuffle_sequence = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(init_sequence), np.random.default_rng(shuffle_sequence)


def build_model(model_config, n_features, n_classes, rng):
    """Build the Sequential model that a resolved ``[model]`` table describes.

    Each hidden size adds a Linear layer and the activation. The last Linear layer
    maps to ``n_classes`` logits, optionally followed by a softmax. With
    ``init = "auto"``, layers that feed a ReLU use He initialization and the rest Glorot.
    A non-empty ``model.layers`` list replaces ``hidden`` and ``activation``, and
    ``build_layers`` builds it.
    """
    dtype = np.dtype(model_config["dtype"])
    if model_config.get("layers"):
        model_layers = build_layers(model_config["layers"], n_features, n_classes, rng,
                                    dtype=dtype, init=model_config["init"])
        return Sequential(model_layers + _output_layers(model_config))

    activation = model_config["activation"]
    hidden_init = model_config["init"]
    if hidden_init == "auto":
        hidden_init = "he" if activation == "relu" else "glorot"
    output_init = "glorot" if model_config["init"] == "auto" else model_config["init"]

    model_layers = []
    width = n_features
    for size in model_config["hidden"]:
        model_layers.append(layers.Linear(width, size, rng=rng, dtype=dtype, init=hidden_init))
        model_layers.append(ACTIVATION_LAYERS[activation]())
        width = size
    model_layers.append(layers.Linear(width, n_classes, rng=rng, dtype=dtype, init=output_init))
    return Sequential(model_layers + _output_layers(model_config))


def _output_layers(model_config):
    """Return the layers that follow the logits: the temperature, then the output's softmax."""
    output_layers = []
    if model_config["temperature"] != 1:
        output_layers.append(layers.Temperature(model_config["temperature"]))

    output_layer = OUTPUT_LAYERS[model_config["output"]]
    if output_layer is not None:
        output_layers.append(output_layer())
    return output_layers


# Layer types before which init = "auto" gives a Linear layer He initialization.
RELU_TYPES = ("relu", "leaky_relu")


def build_layers(tables, n_features, n_classes, rng, *, dtype, init="auto"):
    """Build the layers that resolved ``[[model.layers]]`` tables describe, first to last.

    Widths come from the data. ``in_features`` and ``num_features`` default to the
    output width of the previous layer (``n_features`` for the first layer), which
    is measured by running that layer in evaluation mode on a batch of zeros. The
    last layer that takes ``out_features`` gets ``n_classes`` when its table leaves
    it out, and must equal it when the table sets it. The final output width must
    be ``n_classes``, or ConfigError is raised. Layers whose constructor takes
    ``rng`` and ``dtype`` get ``rng`` and ``dtype``. A Linear layer without an
    ``init`` of its own gets ``init``, where "auto" means He before a relu or
    leaky_relu and Glorot elsewhere.
    """
    from minilearn.registry import LAYERS

    classes = [LAYERS.get(table["type"]) for table in tables]
    sized = [index for index, cls in enumerate(classes)
             if OUTPUT_WIDTH_OPTION in constructor_options(cls)]
    last_sized = sized[-1] if sized else None

    model_layers = []
    width = n_features
    for index, (table, cls) in enumerate(zip(tables, classes)):
        where = f"model.layers[{index}]"
        _check_input_width(table, width, where)
        out_features = None
        if index == last_sized:
            out_features = n_classes
            _check_class_count(table, n_classes, where)

        arguments = layer_arguments(cls, table, width=width, dtype=dtype, rng=rng,
                                    out_features=out_features,
                                    init=_linear_init(init, tables, index, cls))
        layer = _construct_layer(cls, arguments, where)
        width = _output_width(layer, width, dtype, where)
        model_layers.append(layer)

    if width != n_classes:
        raise ConfigError(
            f"model.layers ends with {width} features per sample but the data has {n_classes} "
            "classes; end the list with a linear layer and leave out its out_features, so "
            f"that it gets {n_classes}")
    return model_layers


def _check_input_width(table, width, where):
    for key in WIDTH_OPTIONS:
        if key in table and table[key] != width:
            raise ConfigError(f"{where}.{key} = {table[key]} but the previous layer outputs "
                              f"{width} features; set it to {width} or leave it out")


def _check_class_count(table, n_classes, where):
    given = table.get(OUTPUT_WIDTH_OPTION)
    if given is not None and given != n_classes:
        raise ConfigError(
            f"{where}.{OUTPUT_WIDTH_OPTION} = {given} but the data has {n_classes} classes; "
            f"the last {table['type']} layer emits one logit per class, so set it to "
            f"{n_classes} or leave it out")


def _linear_init(init, tables, index, cls):
    """Return the init of a Linear layer without its own, or None for other layers."""
    if not issubclass(cls, layers.Linear):
        return None
    if init != "auto":
        return init
    following = tables[index + 1]["type"] if index + 1 < len(tables) else None
    return "he" if following in RELU_TYPES else "glorot"


def _construct_layer(cls, arguments, where):
    try:
        return cls(**arguments)
    except (TypeError, ValueError) as error:
        message = " ".join(str(error).split())
        raise ConfigError(f"{where} (layer {cls.__name__}) is invalid: {message}") from None


def _output_width(layer, width, dtype, where):
    """Run ``layer`` in evaluation mode on zeros (2, width) and return its output width."""
    was_training = layer.training
    layer.eval()
    try:
        out = layer.forward(np.zeros((2, width), dtype=dtype))
    except Exception as error:  # noqa: BLE001 - any failure means the widths do not fit
        message = " ".join(str(error).split())
        raise ConfigError(f"{where} ({type(layer).__name__}) cannot take inputs of {width} "
                          f"features: {type(error).__name__}: {message}") from None
    finally:
        layer.train(was_training)

    if np.ndim(out) != 2 or len(out) != 2:
        raise ConfigError(f"{where} ({type(layer).__name__}) turned inputs of shape (2, {width}) "
                          f"into shape {np.shape(out)}; a layer in model.layers must map (N, D) "
                          "to (N, H)")
    return out.shape[1]


def build_optimizer(optimizer_config):
    """Build the optimizer that a resolved ``[optimizer]`` table describes."""
    return build_from_config(optimizer_config, "optimizer")


def build_schedule(schedule_config):
    """Build the lr schedule that a resolved ``[schedule]`` table describes, or None for constant."""
    if schedule_config is None or schedule_config["name"] == "constant":
        return None
    return build_from_config(schedule_config, "schedule")


def build_early_stopping(early_stopping_config):
    """Build the early stopping that a resolved ``[early_stopping]`` table describes, or None when off."""
    if early_stopping_config is None or not early_stopping_config["enabled"]:
        return None
    from minilearn.early_stopping import EarlyStopping

    options = {key: value for key, value in early_stopping_config.items() if key != "enabled"}
    return EarlyStopping(**options)


def load_splits(config):
    """Load, split, standardize and cast the data of a resolved config."""
    from minilearn.data import prepare_splits

    data_config = config["data"]
    return prepare_splits(
        data_config["name"], data_config["options"],
        val_fraction=data_config["val_fraction"], test_fraction=data_config["test_fraction"],
        standardize=data_config["standardize"], seed=config["seed"],
        dtype=config["model"]["dtype"])


def run(config, *, out=None, overwrite=False, runs_parent="runs", run_name=None,
        config_path=None, progress=True):
    """Train the run that ``config`` describes and write its run directory.

    The directory gets the resolved config and a manifest first, then the metrics
    after every epoch, and the test metrics, plot and model at the end. Whatever
    happens, the manifest records the final status. An exception inside training
    leaves status ``failed`` and is raised again.
    """
    path = open_run_directory(out, parent=runs_parent, name=run_name or config["name"] or "run",
                              overwrite=overwrite)
    directory = RunDirectory(path)
    directory.write_config(to_toml(config))
    directory.start_manifest(seed=config["seed"], command=command_line(), config_path=config_path)
    logger.info("run directory: %s", path)

    try:
        result = _train_and_write(config, directory, progress)
    except BaseException as error:
        directory.finish_manifest("failed", message=f"{type(error).__name__}: {error}")
        raise
    return result


def _train_and_write(config, directory, progress):
    # resolve_config has imported the plugins already, unless the config came from elsewhere.
    load_plugins(config.get("plugins", []))
    splits = load_splits(config)
    init_rng, shuffle_rng = seed_streams(config["seed"])
    model = build_model(config["model"], splits.n_features, splits.n_classes, init_rng)
    loss = make_loss_from_config(config["loss"], labels=splits.train[1],
                                 n_classes=splits.n_classes)
    optimizer = build_optimizer(config["optimizer"])
    schedule = build_schedule(config.get("schedule"))
    early_stopping = build_early_stopping(config.get("early_stopping"))
    records = []

    record_cross_entropy = config["training"]["record_cross_entropy"]

    def save_epoch(record, trained):
        if record_cross_entropy and splits.val is not None:
            record["val_cross_entropy"] = output_cross_entropy(trained, *splits.val)
        records.append(record)
        directory.write_metrics(records)

    X_train, y_train = splits.train
    history = fit(model, loss, optimizer, X_train, y_train,
                  epochs=config["training"]["epochs"],
                  batch_size=config["training"]["batch_size"],
                  seed=shuffle_rng, validation=splits.val, progress=progress,
                  on_nonfinite=config["training"]["on_nonfinite"],
                  on_epoch_end=save_epoch, schedule=schedule, early_stopping=early_stopping)

    test = None
    if splits.test is not None:
        test_loss, test_accuracy = evaluate(model, loss, *splits.test)
        test = {"loss": test_loss, "accuracy": test_accuracy}
        if record_cross_entropy:
            test["cross_entropy"] = output_cross_entropy(model, *splits.test)
    reference = _fit_reference(config, splits)
    directory.write_metrics(records, test=test,
                            extra={"status": history.status,
                                   "first_nonfinite": history.first_nonfinite,
                                   "best_epoch": history.best_epoch,
                                   "stopped_epoch": history.stopped_epoch,
                                   "reference": reference})
    directory.write_model(model)
    if records:
        directory.write_plot(records, title=f"{config['name']} (seed {config['seed']})",
                             reference=_reference_lines(reference))
    else:
        logger.warning("no epoch completed, so no loss curve was drawn")
    directory.finish_manifest(history.status, message=history.message,
                              first_nonfinite=history.first_nonfinite)
    return RunResult(directory.path, history.status, history.message, test, history, reference)


def _fit_reference(config, splits):
    """Fit scikit-learn's counterpart when ``[reference] sklearn = true``; returns its record or None."""
    if not config.get("reference", {}).get("sklearn"):
        return None
    from minilearn.reference import fit_sklearn_reference

    return {"sklearn": fit_sklearn_reference(config, splits)}


def _reference_lines(reference):
    """Return {label: test accuracy} of the references, for the plot's dashed lines."""
    if not reference:
        return None
    lines = {}
    for record in reference.values():
        accuracy = (record.get("test") or {}).get("accuracy")
        if accuracy is not None:
            lines[f"scikit-learn {record['model']}"] = accuracy
    return lines or None


def output_cross_entropy(model, X, y):
    """Return the mean cross-entropy (nats) of the model's class distribution on X (N, D), y (N,).

    It compares runs trained on different losses on one scale. Logit outputs go
    through the stable log-softmax, and log-probability outputs are used as they
    are. A model that ends in Softmax is scored on the logits that feed its softmax,
    so a probability that rounds to 0 still gives a finite value. Non-finite outputs
    give NaN.
    """
    kind = model.output_kind
    scored_layers = model.layers[:-1] if kind == "probabilities" else model.layers
    was_training = model.training
    model.eval()
    try:
        outputs = X
        with np.errstate(over="ignore", invalid="ignore"):
            for layer in scored_layers:
                outputs = layer.forward(outputs)
    finally:
        model.train(was_training)

    loss = NLLLoss() if kind == "log_probabilities" else CrossEntropy()
    with np.errstate(over="ignore", invalid="ignore"):
        return loss.forward(outputs, y)
