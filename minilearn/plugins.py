"""Plugins: user modules imported so that the layers, losses and optimizers they register exist.

A plugin is either a Python file (a name ending in ``.py`` or containing a path
separator) or the dotted name of an importable module. A file is imported under a
private module name derived from its absolute path, so the same file loaded twice,
e.g. once from a config and once from ``--plugin``, runs once and registers its
classes once. Relative file paths are resolved against ``base_dir``, which a config
sets to its own directory.
"""

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path

# Absolute path of each file plugin imported in this process -> its module.
_LOADED_FILES = {}

_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class PluginError(ValueError):
    """A plugin that cannot be found or imported. The message is one line, ready for the user."""


def is_plugin_file(spec):
    """Return True when ``spec`` names a file rather than an importable module."""
    separators = {"/", os.sep, os.altsep} - {None}
    return spec.endswith(".py") or any(separator in spec for separator in separators)


def resolve_plugin(spec, base_dir=None):
    """Return the absolute path of a file plugin, or a module name unchanged.

    ``base_dir`` (default: the current directory) anchors relative file paths.
    Raises PluginError for an empty name, a module name that is not dotted
    identifiers, or a file that does not exist.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise PluginError(f"a plugin must be a file path or a module name, got {spec!r}")
    spec = spec.strip()
    if not is_plugin_file(spec):
        if not _MODULE_NAME.match(spec):
            raise PluginError(f"plugin {spec!r} is neither a .py file nor a module name such as "
                              "'my_package.layers'")
        return spec

    path = Path(spec).expanduser()
    if not path.is_absolute():
        path = Path(base_dir if base_dir is not None else Path.cwd()) / path
    path = path.resolve()
    if not path.is_file():
        raise PluginError(f"plugin file {spec!r} not found at {path}; relative paths are read "
                          "from the config file's directory (or the current one on the "
                          "command line)")
    return str(path)


def load_plugin(spec, base_dir=None):
    """Import the plugin ``spec`` (a file or a module name) and return its module.

    Importing runs the module's registration decorators. A file that was already
    loaded is not run again. An exception raised while importing becomes a
    PluginError naming the plugin and the original error, which stays attached as
    its cause.
    """
    resolved = resolve_plugin(spec, base_dir)
    if not is_plugin_file(resolved):
        return _import_module(resolved)
    return _import_file(Path(resolved))


def load_plugins(specs, base_dir=None):
    """Load each plugin of ``specs`` in order and return their modules."""
    return [load_plugin(spec, base_dir) for spec in specs]


def _import_module(name):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and (name == error.name or name.startswith(error.name + ".")):
            raise PluginError(f"plugin module {name!r} not found; install it or give the path "
                              "of a .py file instead") from error
        raise _failed(name, error) from error
    except Exception as error:  # noqa: BLE001 - any import failure is reported as the plugin's
        raise _failed(name, error) from error


def _import_file(path):
    key = str(path)
    module = _LOADED_FILES.get(key) or _imported_from(path)
    if module is not None:
        _LOADED_FILES[key] = module
        return module

    module_name = _module_name_for(path)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin file {key!r} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)

    # Registered in sys.modules first, as a normal import does, so that pickling and
    # dataclasses inside the plugin can find their module.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # noqa: BLE001 - any import failure is reported as the plugin's
        del sys.modules[module_name]
        raise _failed(key, error) from error

    _LOADED_FILES[key] = module
    return module


def _imported_from(path):
    """Return a module already imported from the file ``path``, e.g. by ``import swish``, or None."""
    for module in list(sys.modules.values()):
        module_file = getattr(module, "__file__", None)
        if module_file is not None and os.path.realpath(module_file) == str(path):
            return module
    return None


def _module_name_for(path):
    """Return a module name unique to the file's absolute path, e.g. ``minilearn_plugin_swish_1a2b3c4d``."""
    digest = hashlib.sha1(str(path).encode("utf-8")).hexdigest()[:8]
    stem = re.sub(r"\W", "_", path.stem)
    return f"minilearn_plugin_{stem}_{digest}"


def _failed(name, error):
    message = " ".join(str(error).split())
    return PluginError(f"plugin {name!r} failed to import: {type(error).__name__}: {message}")
