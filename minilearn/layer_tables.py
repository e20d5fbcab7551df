"""The checks of a config's ``[[model.layers]]`` tables and plugins, and the layer arguments.

``resolve_layers`` checks each table's type and options against the registered
layer's constructor and builds the layer once, so a bad value fails when the
config is read. ``layer_arguments`` returns the constructor arguments that the
model builder passes, with the widths, ``rng`` and ``dtype`` it fills in.
``resolve_plugins`` imports the config's plugins so their classes can be named.
"""

import re

from minilearn.config_checks import (
    REQUIRED,
    ConfigError,
    check_type,
    constructor_options,
    did_you_mean,
    format_value,
    kind_of,
)


def resolve_plugins(plugins, source, base_dir):
    """Import each plugin and return their absolute paths (module names stay as they are)."""
    from minilearn.plugins import PluginError, load_plugin, resolve_plugin

    resolved = []
    for index, spec in enumerate(plugins):
        try:
            path = resolve_plugin(spec, base_dir)
            load_plugin(path)
        except PluginError as error:
            raise ConfigError(f"{source}: plugins[{index}]: {error}") from None
        resolved.append(path)
    return resolved


# Constructor options that the model builder sets, so a layer table may not:
# the generator comes from the seed and the dtype from model.dtype.
BUILDER_OPTIONS = {"rng": "the seed", "dtype": "model.dtype"}
# Width options that the builder fills with the previous layer's output width.
WIDTH_OPTIONS = ("in_features", "num_features")
# The option that sizes a layer's output. The last layer that takes it may leave it
# out, and the builder then gives it the number of classes.
OUTPUT_WIDTH_OPTION = "out_features"


def _layer_registry():
    from minilearn.registry import LAYERS

    import minilearn.layers  # noqa: F401 - importing it registers the built-in layers

    return LAYERS


def resolve_layers(model, source, default_activation):
    """Check every ``[[model.layers]]`` table and return them with type-checked options.

    Each table is checked against its layer class's constructor and then built
    once with placeholder widths, so an invalid value fails here, naming its key,
    before any data is loaded. ``default_activation`` is the schema's default of
    ``model.activation``, the only value allowed beside ``model.layers``.
    """
    tables = model["layers"]
    if not tables:
        return []
    if model["hidden"]:
        raise ConfigError(f"{source}: model.layers and model.hidden are alternatives; remove "
                          "model.hidden and list every layer in model.layers")
    if model["activation"] != default_activation:
        raise ConfigError(
            f"{source}: model.activation = {model['activation']!r} applies only to "
            f"model.hidden; with model.layers add a table such as "
            f"{{ type = \"{model['activation']}\" }} after each linear layer instead")

    resolved = [_resolve_layer(table, index, source) for index, table in enumerate(tables)]
    _check_output_widths(resolved, source)
    _check_last_layer(resolved, source)
    return resolved


def _resolve_layer(table, index, source):
    where = f"model.layers[{index}]"
    registry = _layer_registry()
    layer_type = table.get("type")
    if layer_type is None:
        raise ConfigError(f"{source}: {where} has no type; add e.g. type = \"linear\" "
                          f"(registered layers: {', '.join(registry)})")
    if not isinstance(layer_type, str) or layer_type not in registry:
        hint = did_you_mean(layer_type, registry) if isinstance(layer_type, str) else ""
        raise ConfigError(f"{source}: {where}.type = {format_value(layer_type)} is not a known "
                          f"layer{hint}; expected one of {', '.join(registry)}, or list the "
                          "plugin that registers it in plugins")

    options = constructor_options(registry.get(layer_type))
    resolved = {"type": layer_type}
    for key, value in table.items():
        if key == "type":
            continue
        if key in BUILDER_OPTIONS and key in options:
            raise ConfigError(f"{source}: {where}.{key} cannot be set in a config, because it "
                              f"comes from {BUILDER_OPTIONS[key]}; remove it")
        if key not in options:
            settable = [name for name in options if name not in BUILDER_OPTIONS]
            raise ConfigError(f"{source}: unknown key '{where}.{key}' for layer {layer_type!r} "
                              f"(its options: {', '.join(settable) or 'none'})"
                              f"{did_you_mean(key, settable)}")
        default = options[key]
        if default is not None and default is not REQUIRED:
            value = check_type(value, kind_of(default), source, f"{where}.{key}")
        resolved[key] = value

    inferred = set(BUILDER_OPTIONS) | set(WIDTH_OPTIONS) | {OUTPUT_WIDTH_OPTION}
    for key, default in options.items():
        if default is REQUIRED and key not in resolved and key not in inferred:
            raise ConfigError(f"{source}: {where}.{key} is missing; layer {layer_type!r} needs it")

    _try_layer(resolved, where, source)
    return resolved


def _try_layer(table, where, source):
    """Build the layer once with placeholder widths, turning its errors into ConfigError."""
    import numpy as np

    cls = _layer_registry().get(table["type"])
    width = next((table[key] for key in WIDTH_OPTIONS if key in table), 2)
    arguments = layer_arguments(cls, table, width=width, dtype=np.float64,
                                rng=np.random.default_rng(0), out_features=2)
    try:
        cls(**arguments)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{source}: {_layer_option_message(error, where, table)}") from None


def _layer_option_message(error, where, table):
    """Name the key of a layer table that a constructor's error message is about, if it names one."""
    message = " ".join(str(error).split())
    for key, value in table.items():
        if key != "type" and re.search(rf"\b{re.escape(key)}\b", message):
            return f"{where}.{key} = {format_value(value)} is invalid: {message}"
    return f"{where} (layer {table['type']!r}) is invalid: {message}"


def _takes_output_width(table):
    cls = _layer_registry().get(table["type"])
    return OUTPUT_WIDTH_OPTION in constructor_options(cls)


def _check_output_widths(tables, source):
    """Require out_features on every sized layer but the last, which may take the class count."""
    sized = [index for index, table in enumerate(tables) if _takes_output_width(table)]
    for index in sized[:-1]:
        if OUTPUT_WIDTH_OPTION not in tables[index]:
            raise ConfigError(
                f"{source}: model.layers[{index}].{OUTPUT_WIDTH_OPTION} is missing; only the "
                f"last {tables[index]['type']} layer may leave it out, and it then gets the "
                "number of classes")


def _check_last_layer(tables, source):
    """Reject a softmax at the end of the list, because model.output sets what the model emits."""
    from minilearn.layers import LogSoftmax, Softmax

    last = tables[-1]
    cls = _layer_registry().get(last["type"])
    for output, output_class in (("softmax", Softmax), ("log_softmax", LogSoftmax)):
        if issubclass(cls, output_class):
            raise ConfigError(
                f"{source}: model.layers ends with a {last['type']} layer; remove it and set "
                f"model.output = {output!r}, which the loss's expected input is checked against")


def layer_arguments(cls, table, *, width, dtype, rng, out_features=None, init=None):
    """Return the constructor arguments of the layer that a ``[[model.layers]]`` table describes.

    The table's options are used as they are. A width option (``in_features``,
    ``num_features``) that the table leaves out gets ``width``, the previous
    layer's output width, and a missing ``out_features`` gets ``out_features``
    when that is not None. ``rng`` and ``dtype`` go to constructors that take
    them, and ``init`` to one that takes it when the table does not set it.
    """
    parameters = constructor_options(cls)
    arguments = {key: value for key, value in table.items() if key != "type"}
    for key in WIDTH_OPTIONS:
        if key in parameters and key not in arguments:
            arguments[key] = width
    if OUTPUT_WIDTH_OPTION in parameters and OUTPUT_WIDTH_OPTION not in arguments \
            and out_features is not None:
        arguments[OUTPUT_WIDTH_OPTION] = out_features
    if "rng" in parameters:
        arguments["rng"] = rng
    if "dtype" in parameters:
        arguments["dtype"] = dtype
    if init is not None and "init" in parameters and "init" not in arguments:
        arguments["init"] = init
    return arguments
