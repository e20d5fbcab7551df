"""The config error, type check and message helpers that ``config`` and ``layer_tables`` share.

``check_type`` checks a value against a kind such as "int" or "int_list", and
``constructor_options`` lists the options of a class's constructor, which is how
the loss, optimizer, schedule and layer tables get their keys. The message
helpers format a value as it is written in TOML and suggest a close valid key.
"""

import difflib
import inspect
import math


class ConfigError(ValueError):
    """A config that cannot be used. The message is one line, ready for the user."""


# The default that ``constructor_options`` gives an option the caller must set.
REQUIRED = object()


def constructor_options(cls):
    """Return the keyword options of a class's constructor with their defaults, in order.

    An option without a default maps to ``REQUIRED``.
    """
    signature = inspect.signature(cls.__init__)
    options = {}
    for name, parameter in signature.parameters.items():
        if name == "self" or parameter.kind in (inspect.Parameter.VAR_KEYWORD,
                                                 inspect.Parameter.VAR_POSITIONAL):
            continue
        empty = parameter.default is inspect.Parameter.empty
        options[name] = REQUIRED if empty else parameter.default
    return options


def kind_of(default):
    """Return the config kind ("bool", "int", "float", "str" or "any") of a constructor default."""
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, str):
        return "str"
    return "any"


_KIND_NAMES = {"int": "an integer", "float": "a number", "bool": "true or false",
               "str": "a string", "int_list": "a list of integers", "table": "a table",
               "str_list": "a list of strings", "table_list": "a list of tables",
               "any": "any value"}


def check_type(value, kind, source, dotted):
    """Return ``value`` if it is of ``kind``, as a float for "float", else raise ConfigError.

    The message names the key ``dotted`` in the file ``source``. A float that is
    not finite is rejected too.
    """
    def wrong(hint=""):
        return ConfigError(f"{source}: {dotted} = {format_value(value)} has type "
                           f"{_toml_type(value)}; expected {_KIND_NAMES[kind]}{hint}")

    if kind == "int":
        if isinstance(value, float) and value.is_integer():
            raise wrong(f"; write it as {int(value)} without a decimal point or exponent")
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong()
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            hint = "; remove the quotes" if isinstance(value, str) and _is_number(value) else ""
            raise wrong(hint)
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{source}: {dotted} = {format_value(value)} is not a finite "
                              "number; use a finite value")
    elif kind == "bool" and not isinstance(value, bool):
        raise wrong()
    elif kind == "str" and not isinstance(value, str):
        raise wrong()
    elif kind == "table" and not isinstance(value, dict):
        raise wrong()
    elif kind == "any":
        return value
    elif kind == "int_list":
        if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int)
                                              for v in value):
            raise wrong(", e.g. [128] or [64, 32]")
    elif kind == "str_list":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise wrong(', e.g. ["my_layers.py"]')
    elif kind == "table_list":
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise wrong(', e.g. [[model.layers]] tables or [{ type = "relu" }]')
    return value


# Message helpers


def did_you_mean(key, valid):
    """Return "; did you mean 'name'?" for the name in ``valid`` closest to ``key``, or ""."""
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    if not close:
        # Catch abbreviations and extensions that difflib scores low, e.g. lrate for lr.
        close = [name for name in valid if len(name) >= 2 and
                 (key.startswith(name) or name.startswith(key))][:1]
    return f"; did you mean {close[0]!r}?" if close else ""


def format_value(value):
    """Format ``value`` for a message: in TOML syntax for booleans, numbers and lists, else repr."""
    if isinstance(value, (bool, int, float, list)):
        try:
            return to_toml_value(value)
        except TypeError:
            pass
    return repr(value)


def to_toml_value(value):
    """Render ``value`` as a TOML value, with a dict as an inline table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(to_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        # An inline table, as one entry of model.layers is written.
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{key} = {to_toml_value(item)}"
                                for key, item in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} value {value!r} to TOML")


def _toml_type(value):
    return {bool: "boolean", int: "integer", float: "float", str: "string",
            list: "array", dict: "table"}.get(type(value), type(value).__name__)


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True
