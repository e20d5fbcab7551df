"""Run configs: TOML files read, checked against a schema, filled with defaults and written back.

A config is a nested dict of tables. ``SCHEMA`` lists every key with its type,
default and rule. ``resolve_config`` turns what a user wrote into a complete
config. On a problem it raises ``ConfigError`` with one line that names the file,
the key and the value, what was expected and how to fix it. The loss section's options come from
the chosen loss class's signature, and the data section's options from the chosen
dataset, so the schema grows with them.
"""

import copy
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from minilearn.config_checks import (
    REQUIRED,
    ConfigError,
    check_type,
    constructor_options,
    did_you_mean,
    format_value,
    kind_of,
    to_toml_value,
)
from minilearn.layer_tables import resolve_layers, resolve_plugins


@dataclass(frozen=True)
class Key:
    """One config key: its expected type, default value and optional rule.

    ``kind`` is one of "int", "float", "bool", "str", "int_list" or "table".
    ``check(value)`` returns None when the value is allowed, or else a phrase
    saying what was expected.
    """

    kind: str
    default: object
    check: object = None
    help: str = ""


def _positive(value):
    return None if value > 0 else "a value > 0"


def _at_least_one(value):
    return None if value >= 1 else "an integer >= 1"


def _fraction(value):
    return None if 0 <= value < 1 else "a fraction in [0, 1)"


def _non_negative(value):
    return None if value >= 0 else "a value >= 0"


def _positive_sizes(value):
    return None if all(size >= 1 for size in value) else "a list of positive layer sizes"


def _one_of(*choices):
    def check(value):
        return None if value in choices else f"one of {', '.join(repr(c) for c in choices)}"
    return check


ACTIVATIONS = ("relu", "tanh", "sigmoid", "identity")
# The epoch metrics that early stopping and reduce_on_plateau can watch.
MONITORED_METRICS = ("val_loss", "val_accuracy", "train_loss", "train_accuracy")
# The loss.weight value that computes class weights from the training labels.
BALANCED = "balanced"
# The kind of output of each model.output value, in the terms of a loss's ``expects``.
OUTPUT_KINDS = {"logits": "logits", "softmax": "probabilities", "log_softmax": "log_probabilities"}
MODEL_OUTPUTS = tuple(OUTPUT_KINDS)

SCHEMA = {
    "name": Key("str", "", help="run name, used in the run directory's name; defaults to the file name"),
    "seed": Key("int", 0, help="seed of the split, the initial weights and the shuffle order"),
    "plugins": Key("str_list", [], help="Python files, relative to the config file's directory, "
                                        "or module names, imported before anything else so "
                                        "that the layers, losses and optimizers they register "
                                        "can be named"),
    "data": {
        "name": Key("str", "digits", help="dataset name"),
        "options": Key("table", {}, help="generator parameters, e.g. n_samples and noise"),
        "val_fraction": Key("float", 0.15, _fraction, "fraction of all samples held out for validation"),
        "test_fraction": Key("float", 0.25, _fraction, "fraction of all samples held out for the test"),
        "standardize": Key("bool", True, help="scale features by training-split mean and std"),
    },
    "model": {
        "hidden": Key("int_list", [], _positive_sizes, "hidden layer sizes; [] is softmax regression"),
        "layers": Key("table_list", [],
                      help="the layers in order, each a table with a registered type and its "
                           "options; an alternative to hidden and activation"),
        "activation": Key("str", "relu", _one_of(*ACTIVATIONS), "activation after each hidden layer"),
        "output": Key("str", "logits", _one_of(*MODEL_OUTPUTS), "last layer: raw logits or a softmax"),
        "init": Key("str", "auto", _one_of("auto", "glorot", "he"),
                    "weight init; auto is He before ReLU and Glorot elsewhere"),
        "dtype": Key("str", "float64", _one_of("float32", "float64"), "dtype of parameters and data"),
        "temperature": Key("float", 1.0, _positive,
                           "divide the logits by this before the output layer and the loss; "
                           "below 1 makes them larger"),
    },
    "loss": {
        "name": Key("str", "cross_entropy", help="loss name; its options sit beside it"),
    },
    "optimizer": {
        "name": Key("str", "sgd", help="optimizer name; its options sit beside it"),
        "lr": Key("float", 0.1, _positive, "learning rate"),
    },
    "training": {
        "epochs": Key("int", 30, _at_least_one, "number of passes over the training split"),
        "batch_size": Key("int", 64, _at_least_one, "samples per gradient step"),
        "on_nonfinite": Key("str", "stop", _one_of("stop", "continue"),
                            "what a non-finite loss or gradient does: stop the run or go on"),
        "record_cross_entropy": Key("bool", False,
                                    help="also record the cross-entropy of the outputs on the "
                                         "validation split each epoch and on the test split, "
                                         "whatever the training loss"),
    },
    "schedule": {
        "name": Key("str", "constant",
                    help="learning-rate schedule, set once per epoch: constant, step, "
                         "exponential, cosine or reduce_on_plateau; its options sit beside it"),
    },
    "early_stopping": {
        "enabled": Key("bool", False,
                       help="stop when the monitored metric stops improving"),
        "monitor": Key("str", "val_loss", _one_of(*MONITORED_METRICS),
                       "metric to watch: losses are minimized, accuracies maximized"),
        "patience": Key("int", 10, _at_least_one,
                        "epochs in a row without improvement that stop training"),
        "min_delta": Key("float", 0.0, _non_negative,
                         "amount by which the metric must beat its best to count as an "
                         "improvement"),
        "restore_best": Key("bool", True,
                            help="put the parameters of the best epoch back when training ends"),
    },
    "reference": {
        "sklearn": Key("bool", False,
                       help="also fit scikit-learn's LogisticRegression (no hidden layers) or "
                            "MLPClassifier on the same split and record its test metrics"),
    },
}

# Help texts of options that named sections take from a class's constructor.
OPTION_HELP = {
    "loss.weight": "class weights: 'balanced' (n_samples / (n_classes * class count), from "
                   "the training split) or a list of one non-negative number per class",
    "optimizer.max_grad_norm": "clip the global norm of all gradients to this before each "
                               "update; unset turns clipping off",
    "optimizer.betas": "Adam's decay rates [beta1, beta2] of the moment estimates",
    "optimizer.eps": "Adam's term added to the denominator",
    "optimizer.amsgrad": "Adam's AMSGrad variant: divide by the largest second moment so far",
    "optimizer.decoupled_weight_decay": "Adam: shrink the weights apart from the gradient "
                                        "(AdamW) instead of adding an L2 gradient",
    "schedule.step_size": "step: epochs between two decays",
    "schedule.gamma": "step and exponential: factor applied at each decay",
    "schedule.T_max": "cosine: epochs from the first lr to eta_min; unset is the number "
                      "of epochs",
    "schedule.eta_min": "cosine: the lowest lr",
    "schedule.monitor": "reduce_on_plateau: metric to watch",
    "schedule.factor": "reduce_on_plateau: factor applied to the lr at a plateau",
    "schedule.patience": "reduce_on_plateau: bad epochs allowed before the lr drops",
    "schedule.threshold": "reduce_on_plateau: smallest relative (rel) or absolute (abs) "
                          "gain that counts",
    "schedule.threshold_mode": "reduce_on_plateau: rel or abs",
    "schedule.cooldown": "reduce_on_plateau: epochs after a drop during which bad epochs "
                         "are not counted",
    "schedule.min_lr": "reduce_on_plateau: the lr never drops below this",
}


def describe_schema():
    """Yield (dotted key, kind, default, help) for every fixed key, for docs and help."""
    def walk(table, prefix):
        for name, spec in table.items():
            path = f"{prefix}{name}"
            if isinstance(spec, dict):
                yield from walk(spec, path + ".")
            else:
                yield path, spec.kind, spec.default, spec.help
    yield from walk(SCHEMA, "")


# Reading and overriding


def read_config_file(path):
    """Parse the TOML file at ``path``; a missing file or a syntax error is a ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found; check the path "
                          "(shipped configs are in configs/)") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file; pass a TOML file "
                          "such as configs/mlp_digits.toml") from None
    except (PermissionError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the config file: {error}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}; fix the syntax on that line") from None


_BARE_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def parse_override(text):
    """Split ``key.path=value`` into (["key", "path"], value), reading value as TOML.

    A bare word that is not valid TOML, such as ``float32``, is taken as a string.
    """
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key.path=value, e.g. --set optimizer.lr=0.05")
    path, raw = text.split("=", 1)
    keys = path.strip().split(".")
    if not all(keys):
        raise ConfigError(f"--set {text!r}: the key path {path!r} is empty or has an empty part")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        if not _BARE_WORD.match(raw):
            raise ConfigError(
                f"--set {path}={raw}: the value is not valid TOML; write numbers with a digit "
                "before the point (0.5, not .5), lists as [64, 32], and quote strings that "
                "are more than one word") from None
        value = raw
    return keys, value


def apply_overrides(raw, overrides):
    """Return a copy of the raw config with each ``--set`` override applied."""
    config = copy.deepcopy(raw)
    for text in overrides:
        keys, value = parse_override(text)
        _check_override_path(keys, text)
        table = config
        for key in keys[:-1]:
            table = table.setdefault(key, {})
            if not isinstance(table, dict):
                prefix = ".".join(keys[:keys.index(key) + 1])
                raise ConfigError(f"--set {text}: {prefix} is a value, not a table; set it "
                                  f"with --set {prefix}=VALUE")
        table[keys[-1]] = value
    return config


def remove_keys(raw, unsets):
    """Return a copy of the raw config without the dotted keys in ``unsets``.

    This is how a key that the file sets can go back to its default, or be dropped
    when it does not apply, e.g. momentum after --set optimizer.name=adam.
    """
    config = copy.deepcopy(raw)
    for dotted in unsets:
        keys = dotted.split(".")
        table = config
        for key in keys[:-1]:
            table = table.get(key) if isinstance(table, dict) else None
            if not isinstance(table, dict):
                break
        if not isinstance(table, dict) or keys[-1] not in table:
            raise ConfigError(f"--unset {dotted}: the config does not set {dotted!r}, so there "
                              "is nothing to remove; check the key path")
        del table[keys[-1]]
    return config


def _check_override_path(keys, text):
    spec = SCHEMA
    for depth, key in enumerate(keys):
        if not isinstance(spec, dict):
            return
        if key not in spec:
            # Loss and optimizer options depend on the chosen class, so resolve_config
            # checks them against its constructor.
            if depth == 1 and keys[0] in NAMED_SECTIONS:
                return
            dotted = ".".join(keys[:depth + 1])
            hint = did_you_mean(key, spec)
            if not hint:
                hint = f"; valid keys here: {', '.join(spec)}"
            raise ConfigError(f"--set {text}: unknown config key {dotted!r}{hint}")
        spec = spec[key]
        if isinstance(spec, Key) and spec.kind == "table":
            return


# Resolving


def resolve_config(raw, source="config", base_dir=None):
    """Check the raw config against the schema and return it with every default filled in.

    ``source`` names the file in messages. ``base_dir`` anchors relative plugin
    paths (default: the current directory), which become absolute in the result.
    The plugins are imported before anything else is checked, so the classes they
    register can be named. Raises ConfigError on the first problem.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a config must be a TOML table, got {type(raw).__name__}")

    resolved = _resolve_table(raw, SCHEMA, source, prefix="",
                              skip={"loss", "data", "optimizer", "schedule"})
    resolved["plugins"] = resolve_plugins(resolved["plugins"], source, base_dir)
    resolved["model"]["layers"] = resolve_layers(resolved["model"], source,
                                                 SCHEMA["model"]["activation"].default)
    resolved["data"] = _resolve_data(raw.get("data", {}), source)
    resolved["loss"] = _resolve_named(raw.get("loss", {}), "loss", source)
    resolved["optimizer"] = _resolve_named(raw.get("optimizer", {}), "optimizer", source)
    resolved["schedule"] = _resolve_named(raw.get("schedule", {}), "schedule", source)
    _check_conflicts(resolved, source)
    return resolved


def load_config(path, overrides=(), unsets=()):
    """Read the config file at ``path``, remove ``unsets``, apply ``overrides`` and resolve it.

    With overrides or unsets, messages name the source as "<path> with --set/--unset",
    since the offending value may come from the command line.
    """
    raw = read_config_file(path)
    raw = remove_keys(raw, unsets)
    raw = apply_overrides(raw, overrides)
    source = f"{path} with --set/--unset" if overrides or unsets else str(path)
    resolved = resolve_config(raw, source=source, base_dir=Path(path).parent)
    if not resolved["name"]:
        resolved["name"] = Path(path).stem
    return resolved


def _resolve_table(raw, schema, source, prefix, skip=()):
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.')} must be a table "
                          f"([{prefix.rstrip('.')}]), got {raw!r}")
    for key in raw:
        if key not in schema:
            raise ConfigError(f"{source}: unknown key {prefix + key!r}{did_you_mean(key, schema)}")

    resolved = {}
    for key, spec in schema.items():
        if key in skip:
            continue
        if isinstance(spec, dict):
            resolved[key] = _resolve_table(raw.get(key, {}), spec, source, prefix + key + ".")
        elif key in raw:
            resolved[key] = _check_value(raw[key], spec, source, prefix + key)
        else:
            resolved[key] = copy.deepcopy(spec.default)
    return resolved


def _check_value(value, spec, source, dotted):
    value = check_type(value, spec.kind, source, dotted)
    if spec.check is not None:
        expected = spec.check(value)
        if expected is not None:
            raise ConfigError(f"{source}: {dotted} = {format_value(value)} is invalid; "
                              f"expected {expected}")
    return value


def _resolve_data(raw, source):
    from minilearn import data

    resolved = _resolve_table(raw, SCHEMA["data"], source, "data.")
    name = resolved["name"]
    if name not in data.dataset_names():
        raise ConfigError(f"{source}: data.name = {name!r} is not a known dataset; "
                          f"expected one of {', '.join(data.dataset_names())}")

    allowed = data.dataset_options(name)
    options = dict(allowed)
    for key, value in resolved["options"].items():
        if key not in allowed:
            valid = ", ".join(allowed) if allowed else "none"
            raise ConfigError(f"{source}: unknown key 'data.options.{key}' for dataset {name!r} "
                              f"(its options: {valid}){did_you_mean(key, allowed)}")
        options[key] = value
    resolved["options"] = options

    if resolved["val_fraction"] + resolved["test_fraction"] >= 1:
        raise ConfigError(
            f"{source}: data.val_fraction = {resolved['val_fraction']} and data.test_fraction = "
            f"{resolved['test_fraction']} leave no training set; make their sum well below 1")
    return resolved


def _registry(section):
    from minilearn.registry import LOSSES, OPTIMIZERS
    from minilearn.schedules import SCHEDULES

    # Importing the modules registers their classes.
    import minilearn.losses  # noqa: F401
    import minilearn.optim  # noqa: F401

    return {"loss": LOSSES, "optimizer": OPTIMIZERS, "schedule": SCHEDULES}[section]


def _resolve_named(raw, section, source):
    """Resolve a ``[loss]`` or ``[optimizer]`` table: a registered name and its options.

    The options are the keyword arguments of the named class. A value is type-checked
    against the default's type, and the class itself checks the rest when it is built.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {section} must be a table ([{section}]), got {raw!r}")
    registry = _registry(section)
    fixed = SCHEMA[section]
    name = raw.get("name", fixed["name"].default)
    if not isinstance(name, str) or name not in registry:
        raise ConfigError(f"{source}: {section}.name = {format_value(name)} is not a known "
                          f"{section}; expected one of {', '.join(registry)}")

    options = constructor_options(registry.get(name))
    resolved = {"name": name}
    for key, value in raw.items():
        if key == "name":
            continue
        if key not in options:
            valid = ", ".join(options) if options else "none"
            raise ConfigError(f"{source}: unknown key '{section}.{key}' for {section} {name!r} "
                              f"(its options: {valid}){did_you_mean(key, options)}; remove it "
                              f"from the config or with --unset {section}.{key}")
        if key in fixed:
            value = _check_value(value, fixed[key], source, f"{section}.{key}")
        elif options[key] is not None and options[key] is not REQUIRED:
            value = check_type(value, kind_of(options[key]), source, f"{section}.{key}")
        if section == "loss" and key == "weight" and isinstance(value, str) and value != BALANCED:
            raise ConfigError(f"{source}: loss.weight = {format_value(value)} is invalid; expected "
                              f"{BALANCED!r} or a list of one non-negative number per class")
        resolved[key] = value
    for key, default in options.items():
        if key in resolved:
            continue
        # A fixed default, such as optimizer.lr = 0.1, fills in only what the class
        # leaves without one, so Adam keeps its own lr of 0.001.
        if default is REQUIRED and key in fixed:
            resolved[key] = copy.deepcopy(fixed[key].default)
        elif default is REQUIRED:
            raise ConfigError(f"{source}: {section}.{key} is missing; {section} {name!r} needs it")
        elif default is not None:
            # TOML has no tuples, so a tuple default such as Adam's betas is kept as a list.
            resolved[key] = list(default) if isinstance(default, tuple) else default

    try:
        build_from_config(_without_balanced_weight(resolved), section)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{source}: {_option_message(error, section, resolved)}") from None
    return resolved


# Sections whose keys are a registered class's name and constructor options.
NAMED_SECTIONS = ("loss", "optimizer", "schedule")


def _option_message(error, section, resolved):
    """Name the config key that a constructor's error message is about, when it names one."""
    message = " ".join(str(error).split())
    for key, value in resolved.items():
        if key != "name" and re.search(rf"\b{re.escape(key)}\b", message):
            return f"{section}.{key} = {format_value(value)} is invalid: {message}"
    return f"invalid [{section}] options: {message}"


def build_from_config(section_config, section):
    """Build the loss or optimizer that a resolved ``[loss]`` or ``[optimizer]`` table describes."""
    options = {key: value for key, value in section_config.items() if key != "name"}
    return _registry(section).get(section_config["name"])(**options)


def make_loss_from_config(loss_config, labels=None, n_classes=None):
    """Build the loss that a resolved ``[loss]`` table describes.

    ``labels`` (N,) are the training split's class indices and ``n_classes`` the
    number of classes K. They are needed for ``weight = "balanced"``, and with
    them a list of weights is checked to have K entries.
    """
    weight = loss_config.get("weight")
    if weight is not None and n_classes is not None:
        weight = class_weights(weight, labels, n_classes)
        loss_config = dict(loss_config, weight=weight)
    elif weight == BALANCED:
        raise ValueError("loss.weight = 'balanced' needs the training labels; pass labels "
                         "and n_classes to make_loss_from_config")
    return build_from_config(loss_config, "loss")


def class_weights(weight, labels, n_classes):
    """Return the class weights (K,) as a list of floats, from ``"balanced"`` or a list.

    "balanced" gives class k the weight N / (K * n_k), where n_k counts the
    labels (N,) of class k, as scikit-learn's ``class_weight="balanced"`` does. A
    class absent from the labels would get an infinite weight, so it raises.
    """
    import numpy as np

    if weight != BALANCED:
        if len(weight) != n_classes:
            raise ValueError(f"loss.weight has {len(weight)} entries but the data has "
                             f"{n_classes} classes; give one weight per class or use "
                             f"{BALANCED!r}")
        return [float(value) for value in weight]

    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=n_classes)
    if (counts == 0).any():
        missing = int(np.flatnonzero(counts == 0)[0])
        raise ValueError(f"loss.weight = 'balanced' needs every class in the training split, "
                         f"but class {missing} has no sample; lower the held-out fractions or "
                         "give the weights as a list")
    return (len(labels) / (n_classes * counts)).tolist()


def _without_balanced_weight(section_config):
    """Return the section without a "balanced" weight, which needs the training labels to build."""
    if section_config.get("weight") == BALANCED:
        return {key: value for key, value in section_config.items() if key != "weight"}
    return section_config


def _check_conflicts(config, source):
    _check_output_conflict(config, source)
    _check_monitor_conflicts(config, source)


def _check_monitor_conflicts(config, source):
    """Reject a validation metric to watch when no validation split is held out."""
    if config["data"]["val_fraction"] > 0:
        return
    watchers = []
    if config["early_stopping"]["enabled"]:
        watchers.append(("early_stopping.monitor", config["early_stopping"]["monitor"]))
    if "monitor" in config["schedule"]:
        watchers.append(("schedule.monitor", config["schedule"]["monitor"]))
    for key, monitor in watchers:
        if monitor.startswith("val_"):
            raise ConfigError(f"{source}: {key} = {monitor!r} needs a validation split, but "
                              f"data.val_fraction = 0; raise data.val_fraction or watch "
                              f"'train_loss'")


def _check_output_conflict(config, source):
    expects = getattr(_registry("loss").get(config["loss"]["name"]), "expects", "any")
    output = config["model"]["output"]
    produced = OUTPUT_KINDS[output]
    if expects != "any" and expects != produced:
        wanted = next(name for name, kind in OUTPUT_KINDS.items() if kind == expects)
        raise ConfigError(
            f"{source}: loss {config['loss']['name']!r} takes {expects} but model.output = "
            f"{output!r} gives {produced}; set model.output = {wanted!r}")


# Writing


def to_toml(config):
    """Render a resolved config as TOML text that ``tomllib`` reads back to the same dict."""
    lines = []
    _emit_table(config, [], lines)
    return "\n".join(lines).strip() + "\n"


def _emit_table(table, path, lines):
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    if path and (scalars or not tables):
        lines.append("")
        lines.append(f"[{'.'.join(path)}]")
    for key, value in scalars.items():
        lines.append(f"{key} = {to_toml_value(value)}")
    for key, value in tables.items():
        _emit_table(value, path + [key], lines)
