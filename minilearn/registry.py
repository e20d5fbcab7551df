"""Name registries of layers, losses and optimizers, so configs can refer to them by name.

A class registers with a decorator, e.g. ``@LAYERS.register("leaky_relu")``, and a
config then names it (``type = "leaky_relu"``) with its constructor options. This
module imports nothing from minilearn, so every other module may import it.
"""

import os
import sys


class Registry:
    """A mapping from names to classes of one kind (``"layer"``, ``"loss"``, ...)."""

    def __init__(self, kind):
        self.kind = kind
        self._classes = {}

    def register(self, name):
        """Return a class decorator that registers the class under ``name``.

        Registering a different class under a taken name raises ValueError, so a
        plugin cannot silently replace a built-in. Re-registering the same class
        (e.g. when a module is imported twice) is allowed, and so is the same class
        definition from the same file imported under another module name, as when
        a plugin file is loaded by path and also imported by its name.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")

        def decorator(cls):
            existing = self._classes.get(name)
            if existing is not None and not _same_definition(existing, cls):
                raise ValueError(f"{self.kind} name {name!r} is already registered to "
                                 f"{_qualified(existing)}; choose another name")
            self._classes[name] = cls
            cls.registered_name = name
            return cls

        return decorator

    def unregister(self, name):
        """Remove ``name`` and return its class, e.g. to undo a test's registration.

        Raises KeyError for a name that is not registered.
        """
        if name not in self._classes:
            raise KeyError(f"{self.kind} {name!r} is not registered")
        return self._classes.pop(name)

    def get(self, name):
        """Return the class registered under ``name``, or raise ValueError listing the names."""
        try:
            return self._classes[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.kind} {name!r}; expected one of "
                             f"{', '.join(self._classes)}") from None

    def names(self):
        """Return the registered names in registration order."""
        return list(self._classes)

    def __contains__(self, name):
        return name in self._classes

    def __iter__(self):
        return iter(self._classes)

    def __len__(self):
        return len(self._classes)

    def items(self):
        return self._classes.items()

    def __getitem__(self, name):
        return self.get(name)


def _qualified(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def _same_definition(first, second):
    """Return True when two classes come from one definition: same module, or same file and name."""
    if _qualified(first) == _qualified(second):
        return True
    first_file, second_file = _source_file(first), _source_file(second)
    return (first.__qualname__ == second.__qualname__ and first_file is not None
            and first_file == second_file)


def _source_file(cls):
    """Return the resolved path of the file that defines ``cls``, or None when it has none."""
    module_file = getattr(sys.modules.get(cls.__module__), "__file__", None)
    return None if module_file is None else os.path.realpath(module_file)


LAYERS = Registry("layer")
LOSSES = Registry("loss")
OPTIMIZERS = Registry("optimizer")
